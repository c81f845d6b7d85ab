"""The dashboard's password gate: a bcrypt hash from settings, login state per browser session.

Modes: a hash is set -> everything needs a login; ``dashboard_auth_disabled`` -> read-only use without a login
(changes such as rule edits and model promotion still need one); neither -> the page explains how to set a hash.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import bcrypt
import streamlit as st

from dashboards.state import settings
from monitor.core.errors import ConfigError
from monitor.core.settings import Settings

log = logging.getLogger(__name__)

SESSION_KEY = "finpulse_logged_in"
USER_KEY = "finpulse_user"
FAILED_LOGIN_DELAY_S = 1.0
BCRYPT_MAX_BYTES = 72  # bcrypt reads at most 72 bytes; bcrypt>=5 refuses longer input instead of truncating
SETUP_HELP = (
    "The dashboard needs a password. Create a hash with `finpulse dashboard hash-password` and set it as "
    "`FINPULSE_DASHBOARD_PASSWORD_HASH` (environment or .env), or set `FINPULSE_DASHBOARD_AUTH_DISABLED=true` "
    "for local, read-only use."
)

Mode = Literal["password", "open", "unconfigured"]


def hash_password(password: str) -> str:
    """A bcrypt hash for ``password`` (what FINPULSE_DASHBOARD_PASSWORD_HASH expects)."""
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
    except ValueError:  # a malformed hash in settings never matches; the login page says so below
        log.warning("FINPULSE_DASHBOARD_PASSWORD_HASH is not a bcrypt hash")
        return False


def mode(settings: Settings) -> Mode:
    if settings.dashboard_password_hash is not None and settings.dashboard_password_hash.get_secret_value():
        return "open" if settings.dashboard_auth_disabled else "password"
    return "open" if settings.dashboard_auth_disabled else "unconfigured"


def logged_in() -> bool:
    return bool(st.session_state.get(SESSION_KEY, False))


def can_change(settings: Settings) -> bool:
    """Whether this session may edit alert rules and promote or roll back models: only after a password login."""
    return settings.dashboard_password_hash is not None and logged_in()


def can_view(settings: Settings) -> bool:
    return mode(settings) == "open" or (mode(settings) == "password" and logged_in())


def login_form(settings: Settings, key: str = "login") -> None:
    """Password form; submit with Enter. A wrong password leaves the session logged out."""
    if settings.dashboard_password_hash is None:
        st.info(SETUP_HELP)
        return
    with st.form(key, enter_to_submit=True):
        password = st.text_input("Password", type="password", key=f"{key}_password", autocomplete="current-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        if verify_password(password or "", settings.dashboard_password_hash.get_secret_value()):
            st.session_state[SESSION_KEY] = True
            log.info("dashboard login succeeded")
            st.rerun()
        else:
            log.warning("dashboard login refused: wrong password")
            time.sleep(FAILED_LOGIN_DELAY_S)  # slows guessing down; bcrypt's cost does the rest
            st.error("Wrong password.")


def login_page() -> None:
    """The only page a visitor sees before logging in (or when no password is configured)."""
    current = settings()
    st.title("finpulse")
    if mode(current) == "unconfigured":
        st.warning(SETUP_HELP)
        return
    st.caption("Financial-news sentiment and risk monitor. Log in to continue.")
    login_form(current)


def user_name() -> str:
    """The name this session signs labels, acknowledgements and silences with."""
    return str(st.session_state.get(USER_KEY) or "analyst").strip()[:200] or "analyst"


def sidebar(settings: Settings) -> None:
    """The user's name, log out, and (no-password mode) an optional login that unlocks rule and model changes."""
    with st.sidebar:
        st.session_state.setdefault(USER_KEY, "analyst")
        st.text_input("Your name", key=USER_KEY, max_chars=200,
                      help="Recorded with the labels, acknowledgements and silences you make.")
        if logged_in():
            if st.button("Log out", key="logout"):
                st.session_state[SESSION_KEY] = False
                st.rerun()
        elif mode(settings) == "open":
            st.caption("No login (FINPULSE_DASHBOARD_AUTH_DISABLED): rule edits and model changes need one.")
            if settings.dashboard_password_hash is not None:
                with st.expander("Log in to make changes"):
                    login_form(settings, key="sidebar_login")


def refuse_change_message() -> str:
    return ("Refused: changing rules and models needs a password login. Set FINPULSE_DASHBOARD_PASSWORD_HASH "
            "(`finpulse dashboard hash-password`) and log in.")
