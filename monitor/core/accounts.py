"""Accounts, roles and logins: the one place that decides who may do what.

Every write of the dashboard and the CLI calls :func:`require` with the acting :class:`Principal` at the point of
writing (not only when drawing a button), and records ``principal.name``, never a typed name.

Logins are throttled in the database, so a new browser session starts where the last one stopped: failures are
counted per ``account:<name>`` and per ``client:<address>``; from ``FINPULSE_LOGIN_MAX_FAILURES`` on, each
further failure locks that key for ``FINPULSE_LOGIN_LOCKOUT_S * 2**(failures - max)`` seconds (at most a day).
A wrong name and a wrong password get the same answer, and an unknown name costs a bcrypt check too, so neither
the message nor the time tells which names exist.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

import bcrypt
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from monitor.core.db import session_scope
from monitor.core.errors import ConfigError, FinpulseError
from monitor.core.settings import Settings
from schemas.accounts import ROLES, Account, LoginThrottle
from schemas.types import utcnow

log = logging.getLogger(__name__)

Role = Literal["viewer", "analyst", "admin"]
Source = Literal["dashboard", "cli", "scheduler"]
Action = Literal["label", "acknowledge", "silence", "edit_rules", "promote", "rollback", "approve",
                 "manage_accounts"]
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset(),
    "analyst": frozenset({"label", "acknowledge", "silence"}),
    "admin": frozenset({"label", "acknowledge", "silence", "edit_rules", "promote", "rollback", "approve",
                        "manage_accounts"}),
}
BCRYPT_MAX_BYTES = 72  # bcrypt reads at most 72 bytes; bcrypt>=5 refuses longer input instead of truncating
LOCKOUT_MAX = timedelta(days=1)
LOGIN_REFUSED = "Wrong name or password."
# A real hash of a random password, checked when the name is unknown so that a miss costs as long as a hit.
_DUMMY_HASH = bcrypt.hashpw(b"finpulse-no-such-account", bcrypt.gensalt()).decode("ascii")


class PermissionDenied(FinpulseError):
    """The acting account's role does not allow the change."""


class LoginRefused(FinpulseError):
    """Wrong name or password, a disabled account, or a lock-out; the message is safe to show."""


@dataclass(frozen=True)
class Principal:
    """Who is acting: an account (dashboard), the OS user or ``--actor`` (CLI), or the scheduler."""

    name: str
    role: Role
    source: Source


def may(principal: Principal | None, action: Action) -> bool:
    return principal is not None and action in PERMISSIONS.get(principal.role, frozenset())


def require(principal: Principal | None, action: Action) -> Principal:
    """The principal, when its role allows ``action``; else :class:`PermissionDenied` naming the role needed."""
    if principal is None:
        raise PermissionDenied(f"{action.replace('_', ' ')} needs a signed-in account; log in first")
    if not may(principal, action):
        needed = next(role for role in ROLES if action in PERMISSIONS[role])
        raise PermissionDenied(f"{principal.name} is a {principal.role}; {action.replace('_', ' ')} needs the "
                               f"{needed} role (an admin can change it with `finpulse users set-role`)")
    return principal


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return cast(Role, role)


def hash_password(password: str) -> str:
    raw = password.encode("utf-8")
    if not raw:
        raise ConfigError("the password is empty; type at least one character")
    if len(raw) > BCRYPT_MAX_BYTES:
        raise ConfigError(f"the password is {len(raw)} bytes but bcrypt accepts at most {BCRYPT_MAX_BYTES}; "
                          "choose a shorter one")
    return bcrypt.hashpw(raw, bcrypt.gensalt()).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    raw = password.encode("utf-8")
    if not raw or len(raw) > BCRYPT_MAX_BYTES:
        return False
    try:
        return bcrypt.checkpw(raw, password_hash.encode("ascii"))
    except ValueError:  # a malformed hash never matches
        return False


def find(session: Session, name: str) -> Account | None:
    return session.exec(select(Account).where(col(Account.name) == name)).first()


def _locked(session: Session, keys: list[str], now: datetime) -> datetime | None:
    rows = session.exec(select(LoginThrottle).where(col(LoginThrottle.key).in_(keys))).all()
    until = [row.locked_until for row in rows if row.locked_until is not None and row.locked_until > now]
    return max(until) if until else None


def _fail(session: Session, keys: list[str], now: datetime, settings: Settings) -> None:
    for key in keys:
        row = session.get(LoginThrottle, key) or LoginThrottle(key=key)
        row.failures += 1
        row.last_failure_at = now
        over = row.failures - settings.login_max_failures
        if over >= 0:
            row.locked_until = now + min(LOCKOUT_MAX, timedelta(seconds=settings.login_lockout_s * 2 ** min(over, 20)))
        session.add(row)


def authenticate(engine: Engine, name: str, password: str, client: str, settings: Settings) -> Principal:
    """The principal for a correct name and password; :class:`LoginRefused` otherwise (counted in the database)."""
    keys = [f"account:{name[:200]}", f"client:{client[:200]}"]
    now = utcnow()
    with session_scope(engine) as session:
        until = _locked(session, keys, now)
        if until is not None:
            log.warning("login refused for %r from %s: locked out until %s", name[:100], client, f"{until:%H:%M:%S}")
            raise LoginRefused(f"Too many failed logins. Try again after {until:%Y-%m-%d %H:%M:%S} UTC.")
        account = find(session, name)
        ok = verify_password(password, account.password_hash if account else _DUMMY_HASH)
        if account is None or not ok or account.disabled:
            _fail(session, keys, now, settings)
            log.warning("login refused for %r from %s", name[:100], client)
        else:
            row = session.get(LoginThrottle, keys[0])
            if row is not None:
                session.delete(row)
            log.info("login of %s (%s) from %s", account.name, account.role, client)
            return Principal(account.name, check_role(account.role), "dashboard")
    raise LoginRefused(LOGIN_REFUSED)


def count_admins(session: Session) -> int:
    return len(session.exec(select(Account).where(col(Account.role) == "admin",
                                                  col(Account.disabled).is_(False))).all())


BOOTSTRAP_ADMIN = "admin"
BOOTSTRAP_DEPRECATED = ("FINPULSE_DASHBOARD_PASSWORD_HASH (one shared password) is deprecated: create accounts with "
                        "`finpulse users add NAME --role admin` and unset FINPULSE_DASHBOARD_PASSWORD_HASH")


def authenticate_bootstrap(engine: Engine, password: str, client: str, settings: Settings) -> Principal:
    """The deprecated bootstrap admin: name ``admin`` with the password of FINPULSE_DASHBOARD_PASSWORD_HASH,
    throttled in the database exactly as :func:`authenticate` (keys ``account:admin`` and ``client:<address>``).
    The caller uses it only while no account named ``admin`` exists; such an account replaces it."""
    keys = [f"account:{BOOTSTRAP_ADMIN}", f"client:{client[:200]}"]
    secret = settings.dashboard_password_hash.get_secret_value() if settings.dashboard_password_hash else ""
    now = utcnow()
    with session_scope(engine) as session:
        until = _locked(session, keys, now)
        if until is not None:
            log.warning("login refused for %r from %s: locked out until %s", BOOTSTRAP_ADMIN, client,
                        f"{until:%H:%M:%S}")
            raise LoginRefused(f"Too many failed logins. Try again after {until:%Y-%m-%d %H:%M:%S} UTC.")
        if verify_password(password, secret or _DUMMY_HASH) and secret:
            row = session.get(LoginThrottle, keys[0])
            if row is not None:
                session.delete(row)
            log.warning("login of the bootstrap admin from %s; %s", client, BOOTSTRAP_DEPRECATED)
            return Principal(BOOTSTRAP_ADMIN, "admin", "dashboard")
        _fail(session, keys, now, settings)
        log.warning("login refused for %r from %s", BOOTSTRAP_ADMIN, client)
    raise LoginRefused(LOGIN_REFUSED)
