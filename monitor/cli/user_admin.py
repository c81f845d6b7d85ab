"""The account changes behind ``finpulse users``: each checks ``manage_accounts``, refuses to leave no enabled admin,
and adds its audit row (never a password or a hash) in the caller's transaction.

Loaded only inside the ``finpulse users`` commands, so it may import the database layer at module level.
"""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, col, select

from monitor.core import audit
from monitor.core.accounts import Principal, check_role, count_admins, find, hash_password, require
from monitor.core.errors import ConfigError
from schemas.accounts import Account
from schemas.types import utcnow

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


def _shown(account: Account) -> dict[str, Any]:
    return {"name": account.name, "role": account.role, "disabled": account.disabled}


def _account(session: Session, name: str) -> Account:
    account = find(session, name)
    if account is None:
        raise ConfigError(f"no account named {name!r}; `finpulse users list` shows them")
    return account


def _keep_an_admin(session: Session, account: Account, change: str) -> None:
    if account.role == "admin" and not account.disabled and count_admins(session) <= 1:
        raise ConfigError(f"cannot {change} {account.name}: it is the last enabled admin; "
                          "add another admin first (`finpulse users add NAME --role admin`)")


def _save(session: Session, by: Principal, action: str, account: Account, before: dict[str, Any] | None,
          after: dict[str, Any]) -> Account:
    account.updated_at = utcnow()
    session.add(account)
    session.flush()
    audit.record(session, by, action, f"account {account.name}", before, after)
    return account


def create(session: Session, name: str, role: str, password: str, *, by: Principal) -> Account:
    require(by, "manage_accounts")
    if not NAME.fullmatch(name):
        raise ConfigError(f"invalid account name {name!r}: use 1-100 letters, digits, '.', '_', '@' or '-', "
                          "starting with a letter or digit")
    checked = check_role(role)
    if find(session, name) is not None:
        raise ConfigError(f"an account named {name!r} exists; choose another name or `finpulse users reset-password`")
    account = Account(name=name, role=checked, password_hash=hash_password(password))
    return _save(session, by, "account.create", account, None, _shown(account))


def set_role(session: Session, name: str, role: str, *, by: Principal) -> Account:
    require(by, "manage_accounts")
    checked = check_role(role)
    account = _account(session, name)
    if checked != "admin":
        _keep_an_admin(session, account, f"make a {checked} of")
    before = _shown(account)
    account.role = checked
    return _save(session, by, "account.set_role", account, before, _shown(account))


def set_disabled(session: Session, name: str, disabled: bool, *, by: Principal) -> Account:
    require(by, "manage_accounts")
    account = _account(session, name)
    if disabled:
        _keep_an_admin(session, account, "disable")
    before = _shown(account)
    account.disabled = disabled
    return _save(session, by, "account.disable" if disabled else "account.enable", account, before, _shown(account))


def reset_password(session: Session, name: str, password: str, *, by: Principal) -> Account:
    require(by, "manage_accounts")
    account = _account(session, name)
    before = {"password_changed_at": account.password_changed_at}
    account.password_hash, account.password_changed_at = hash_password(password), utcnow()
    return _save(session, by, "account.reset_password", account, before,
                 {"password_changed_at": account.password_changed_at})


def accounts(session: Session) -> list[Account]:
    return list(session.exec(select(Account).order_by(col(Account.name))).all())
