"""The dashboard's login: named accounts (:mod:`monitor.core.accounts`), one signed-in Principal per browser session.

Modes: ``FINPULSE_DASHBOARD_AUTH_DISABLED`` -> read-only use without a login (no principal, so every write is
refused); otherwise every page needs a login with an account from the database, or (deprecated) the bootstrap admin
``admin`` with the password of ``FINPULSE_DASHBOARD_PASSWORD_HASH``. Failed logins are counted in the database
(per account and per client address), so a new browser session does not start from zero. A login ends
``FINPULSE_DASHBOARD_SESSION_IDLE_S`` after the last activity and ``FINPULSE_DASHBOARD_SESSION_MAX_S`` after it
began; both are checked on every rerun and again at every write (:func:`acting`).
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import streamlit as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from dashboards import state
from dashboards.state import settings
from monitor.alerts.durations import duration_text
from monitor.core import accounts
from monitor.core.accounts import (
    BOOTSTRAP_ADMIN,
    BOOTSTRAP_DEPRECATED,
    Action,
    LoginRefused,
    PermissionDenied,
    Principal,
    hash_password,
    verify_password,
)
from monitor.core.settings import Settings
from schemas.accounts import Account

__all__ = ["hash_password", "verify_password"]  # `finpulse dashboard hash-password` and older callers

log = logging.getLogger(__name__)

PRINCIPAL_KEY = "finpulse_principal"
LOGIN_AT_KEY = "finpulse_login_at"
SEEN_AT_KEY = "finpulse_seen_at"
BOOTSTRAP_KEY = "finpulse_bootstrap_login"
ENDED_KEY = "finpulse_session_ended"
FULL_RUN_KEY = "finpulse_full_run"  # set while a whole-app rerun (not a fragment's timed rerun) is under way
SETUP_HELP = (
    "No account exists yet. Create the first admin with `finpulse users add NAME --role admin` (it prompts for "
    "the password), or set `FINPULSE_DASHBOARD_AUTH_DISABLED=true` for local, read-only use."
)
READ_ONLY = ("Read-only: FINPULSE_DASHBOARD_AUTH_DISABLED is set, so nobody is signed in and every change (labels, "
             "acknowledgements, silences, rules, models) is refused. Unset it and log in with an account to make "
             "changes.")

Mode = Literal["login", "read_only"]


def mode(settings: Settings) -> Mode:
    return "read_only" if settings.dashboard_auth_disabled else "login"


def bootstrap_enabled(settings: Settings) -> bool:
    return settings.dashboard_password_hash is not None and bool(settings.dashboard_password_hash.get_secret_value())


def client_address() -> str:
    """The browser's address as Streamlit sees it (``local`` on localhost): the per-client throttling key."""
    try:
        address = st.context.ip_address
    except (AttributeError, RuntimeError):  # no client context (a bare script run)
        address = None
    return address if isinstance(address, str) and address else "local"  # AppTest's context is a mock object


def sign_in(engine: Engine, name: str, password: str, client: str, settings: Settings) -> Principal:
    """An account's principal, or the bootstrap admin while no account named ``admin`` exists; LoginRefused else."""
    if name == BOOTSTRAP_ADMIN and bootstrap_enabled(settings):
        with Session(engine) as session:
            replaced = accounts.find(session, BOOTSTRAP_ADMIN) is not None
        if not replaced:
            return accounts.authenticate_bootstrap(engine, password, client, settings)
    return accounts.authenticate(engine, name, password, client, settings)


def _accounts_exist(engine: Engine) -> bool:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Account)
                                .where(col(Account.disabled).is_(False))).one()) > 0


def _span(seconds: float) -> str:
    return duration_text(max(1, round(seconds)))


def _expiry(settings: Settings) -> str | None:
    """Why this session's login has ended, or None while it holds."""
    now = time.time()
    login_at = float(st.session_state.get(LOGIN_AT_KEY) or 0.0)
    seen_at = float(st.session_state.get(SEEN_AT_KEY) or 0.0)
    if now - login_at > settings.dashboard_session_max_s:
        return (f"Your session ended {_span(settings.dashboard_session_max_s)} after you logged in "
                "(FINPULSE_DASHBOARD_SESSION_MAX_S). Log in again.")
    if now - seen_at > settings.dashboard_session_idle_s:
        return (f"You were logged out after {_span(settings.dashboard_session_idle_s)} without activity "
                "(FINPULSE_DASHBOARD_SESSION_IDLE_S). Log in again.")
    return None


def principal() -> Principal | None:
    """The signed-in account of this browser session; None when nobody is, auth is disabled or the login expired."""
    found = st.session_state.get(PRINCIPAL_KEY)
    current = settings()
    if not isinstance(found, Principal) or mode(current) == "read_only" or _expiry(current) is not None:
        return None
    return found


def acting() -> Principal | None:
    """:func:`principal`, counting this (a click that writes) as activity."""
    found = principal()
    if found is not None:
        st.session_state[SEEN_AT_KEY] = time.time()
    return found


def refresh(settings: Settings) -> Principal | None:
    """Once per full rerun (the caller calls :func:`end_full_run` when it ends): end an expired login (the login
    page says why) or count the rerun as activity."""
    st.session_state[FULL_RUN_KEY] = True
    if st.session_state.get(PRINCIPAL_KEY) is None:
        return None
    reason = "Auth is disabled: this dashboard is read-only." if mode(settings) == "read_only" else _expiry(settings)
    if reason is not None:
        log.info("dashboard session of %s ended: %s", getattr(st.session_state.get(PRINCIPAL_KEY), "name", "?"),
                 reason)
        logout(reason)
        return None
    st.session_state[SEEN_AT_KEY] = time.time()
    return principal()


def logout(message: str | None = None) -> None:
    for key in (PRINCIPAL_KEY, LOGIN_AT_KEY, SEEN_AT_KEY, BOOTSTRAP_KEY):
        st.session_state.pop(key, None)
    if message:
        st.session_state[ENDED_KEY] = message


def end_full_run() -> None:
    st.session_state[FULL_RUN_KEY] = False


def guard_fragment() -> None:
    """Call first in a live fragment: on its timed reruns (which are no activity), an expired login reruns the
    whole app, which logs out, instead of refreshing data for a session that has ended. A full rerun has just
    checked the login (:func:`refresh`), so the fragment's first drawing within it is left alone."""
    if st.session_state.get(FULL_RUN_KEY):
        return
    if st.session_state.get(PRINCIPAL_KEY) is not None and _expiry(settings()) is not None:
        st.rerun(scope="app")


def may(action: Action) -> bool:
    return accounts.may(principal(), action)


def why_not(action: Action) -> str | None:
    """None when the signed-in account may do ``action``; else one line saying why not (shown instead of controls)."""
    if mode(settings()) == "read_only":
        return READ_ONLY
    try:
        accounts.require(principal(), action)
    except PermissionDenied as denied:
        return f"Read-only for you: {denied}."
    return None


def is_admin(found: Principal | None) -> bool:
    return found is not None and found.role == "admin"


def login_form(settings: Settings) -> None:
    """Name and password; submit with Enter. A refusal is shown as the core words it (one message for a wrong name
    or password; the lock-out names its end)."""
    engine = state.engine()
    if bootstrap_enabled(settings) and not _accounts_exist(engine):
        st.session_state.setdefault("login_name", BOOTSTRAP_ADMIN)  # the only way in yet
    with st.form("login", enter_to_submit=True):
        name = st.text_input("Name", key="login_name", max_chars=100, autocomplete="username")
        password = st.text_input("Password", type="password", key="login_password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    try:
        found = sign_in(engine, (name or "").strip(), password or "", client_address(), settings)
    except LoginRefused as refused:
        st.error(str(refused))
        return
    now = time.time()
    st.session_state.update({PRINCIPAL_KEY: found, LOGIN_AT_KEY: now, SEEN_AT_KEY: now,
                             BOOTSTRAP_KEY: found.name == BOOTSTRAP_ADMIN and _bootstrap_only(engine)})
    st.session_state.pop(ENDED_KEY, None)
    st.rerun()


def _bootstrap_only(engine: Engine) -> bool:
    with Session(engine) as session:
        return accounts.find(session, BOOTSTRAP_ADMIN) is None


def login_page() -> None:
    """The only page a visitor sees before logging in."""
    current = settings()
    st.title("finpulse")
    ended = st.session_state.get(ENDED_KEY)
    if ended:
        st.info(ended)
    if not bootstrap_enabled(current) and not _accounts_exist(state.engine()):
        st.warning(SETUP_HELP)
        return
    st.caption("Financial-news sentiment and risk monitor. Log in with your account.")
    login_form(current)


def sidebar(settings: Settings) -> None:
    """Who is signed in (and the role), log out; the read-only note; the bootstrap admin's deprecation warning."""
    with st.sidebar:
        found = principal()
        if mode(settings) == "read_only":
            st.caption(READ_ONLY)
        elif found is not None:
            st.caption(f"Signed in as **{found.name}** ({found.role}).")
            if st.button("Log out", key="logout"):
                log.info("dashboard logout of %s", found.name)
                logout("You logged out.")
                st.rerun()
    if found is not None and st.session_state.get(BOOTSTRAP_KEY):
        st.warning(f"You are signed in as the bootstrap admin. {BOOTSTRAP_DEPRECATED}.", icon=":material/warning:")
