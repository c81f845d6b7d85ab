"""Helpers of the dashboard's AppTest tests: a seeded database, accounts made directly in it, log in, find widgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bcrypt
from sqlmodel import Session, col, select
from streamlit.testing.v1 import AppTest

from monitor.core import db
from monitor.core.accounts import hash_password
from monitor.core.settings import load_settings
from schemas.accounts import Account, AuditEvent
from tests.dashboard_seed import Seeded, seed

APP = Path(__file__).resolve().parents[2] / "dashboards" / "app.py"
PASSWORD = "correct horse"
# Few bcrypt rounds keep the test fast; the dashboard verifies any cost the hash names.
PASSWORD_HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
ACCOUNT_PASSWORD = "s3cret pass"
ACCOUNTS = {"vic": "viewer", "ann": "analyst", "root": "admin"}


def seeded_db(path: Path, accounts: dict[str, str] | None = None) -> tuple[str, Seeded]:
    url = f"sqlite:///{path}"
    db.upgrade(url)
    seeded = seed(url, load_settings(database_url=url))
    add_accounts(url, accounts or {})
    return url, seeded


def add_accounts(url: str, accounts: dict[str, str]) -> None:
    """Account rows straight into the database (name -> role), all with ACCOUNT_PASSWORD."""
    if not accounts:
        return
    hashed = hash_password(ACCOUNT_PASSWORD)
    engine = db.make_engine(url)
    with Session(engine) as session:
        session.add_all([Account(name=name, role=role, password_hash=hashed) for name, role in accounts.items()])
        session.commit()
    engine.dispose()


def audit_rows(url: str) -> list[AuditEvent]:
    engine = db.make_engine(url)
    with Session(engine) as session:
        rows = list(session.exec(select(AuditEvent).order_by(col(AuditEvent.id))).all())
    engine.dispose()
    return rows


def run_app(page: str | None = None, at: AppTest | None = None) -> AppTest:
    at = at or AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def login(at: AppTest, name: str, password: str = ACCOUNT_PASSWORD) -> AppTest:
    at.text_input(key="login_name").input(name)
    at.text_input(key="login_password").input(password)
    button(at, "Log in").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def fresh_login(name: str, password: str = ACCOUNT_PASSWORD, page: str | None = None) -> AppTest:
    """A new browser session (a fresh AppTest) that logs in, optionally on ``page``."""
    at = login(run_app(), name, password)
    return run_app(page, at) if page else at


def metrics(at: AppTest) -> dict[str, tuple[str, str]]:
    return {m.label: (m.value, m.delta) for m in at.metric}


def labels(at: AppTest) -> set[str]:
    return {b.label for b in at.button}


def button(at: AppTest, label: str) -> Any:
    return next(b for b in at.button if b.label == label)


def field(at: AppTest, label: str) -> Any:
    return next(w for w in [*at.text_input, *at.selectbox, *at.checkbox] if w.label == label)


def texts(at: AppTest, kind: str) -> str:
    """Every element of one kind (caption, warning, info, error, markdown) as one string, sidebar included."""
    return " | ".join(str(element.value) for element in at.get(kind))
