"""Roles and logins: the permission table, and a lock-out that lives in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time

import pytest
from sqlmodel import Session

from monitor.core import db
from monitor.core.accounts import (
    LOGIN_REFUSED,
    LoginRefused,
    PermissionDenied,
    Principal,
    authenticate,
    hash_password,
    may,
    require,
)
from monitor.core.settings import load_settings
from schemas.accounts import Account


def test_each_role_may_do_what_it_says_and_no_more() -> None:
    viewer, analyst, admin = (Principal("v", "viewer", "dashboard"), Principal("a", "analyst", "dashboard"),
                              Principal("root", "admin", "cli"))
    assert not any(may(viewer, action) for action in ("label", "acknowledge", "silence", "edit_rules", "promote"))
    assert all(may(analyst, action) for action in ("label", "acknowledge", "silence"))
    assert not any(may(analyst, action) for action in ("edit_rules", "promote", "rollback", "approve",
                                                        "manage_accounts"))
    assert all(may(admin, action) for action in ("label", "edit_rules", "promote", "approve", "manage_accounts"))
    assert require(admin, "promote") is admin
    with pytest.raises(PermissionDenied, match="a viewer; label needs the analyst role"):
        require(viewer, "label")
    with pytest.raises(PermissionDenied, match="needs a signed-in account"):
        require(None, "acknowledge")


def test_lock_out_counts_in_the_database_and_grows(db_url: str) -> None:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    settings = load_settings(database_url=db_url, login_max_failures=3, login_lockout_s=1.0)
    with Session(engine) as session:
        session.add(Account(name="ann", role="analyst", password_hash=hash_password("right")))
        session.add(Account(name="old", role="admin", password_hash=hash_password("right"), disabled=True))
        session.commit()
    assert authenticate(engine, "ann", "right", "10.0.0.1", settings) == Principal("ann", "analyst", "dashboard")
    for name in ("ann", "nobody", "old"):  # a wrong password, an unknown name, a disabled account: one answer
        with pytest.raises(LoginRefused) as refused:
            authenticate(engine, name, "wrong" if name == "ann" else "right", f"10.0.0.{ord(name[0])}", settings)
        assert str(refused.value) == LOGIN_REFUSED
    for _ in range(2):  # ann's 2nd and 3rd failure (a new client each time: the account key still counts)
        with pytest.raises(LoginRefused):
            authenticate(engine, "ann", "wrong", f"10.9.9.{_}", settings)
    with pytest.raises(LoginRefused, match="Too many failed logins"):  # locked, even with the right password
        authenticate(engine, "ann", "right", "10.0.0.1", settings)
    time.sleep(1.1)  # the first lock-out is login_lockout_s
    assert authenticate(engine, "ann", "right", "10.0.0.1", settings).name == "ann"  # success resets the count
    engine.dispose()


def test_one_client_guessing_many_names_is_locked_out(db_url: str) -> None:
    db.upgrade(db_url)
    engine = db.make_engine(db_url)
    settings = load_settings(database_url=db_url, login_max_failures=3, login_lockout_s=60.0)
    with Session(engine) as session:
        session.add(Account(name="bob", role="viewer", password_hash=hash_password("right")))
        session.commit()
    for guess in ("alice", "carol", "dave"):
        with pytest.raises(LoginRefused):
            authenticate(engine, guess, "x", "192.0.2.7", settings)
    with pytest.raises(LoginRefused, match="Too many"):
        authenticate(engine, "bob", "right", "192.0.2.7", settings)
    assert authenticate(engine, "bob", "right", "192.0.2.8", settings).name == "bob"  # another client may
    engine.dispose()
