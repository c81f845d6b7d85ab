"""Process-wide resources of the dashboard: settings, the one engine, and TTL-cached reads.

Every page reads through :func:`load`, so a refresh every few seconds from many browser tabs costs one query per
TTL, and the cache is bounded (``max_entries``) so memory stays flat over hours.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import streamlit as st
from sqlalchemy.engine import Engine

from monitor.core.db import make_engine, require_migrated
from monitor.core.errors import FinpulseError
from monitor.core.logs import setup_logging
from monitor.core.settings import Settings, get_settings, mask_url

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Reads are cached this long; short enough that the live refresh shows new rows within a couple of seconds.
CACHE_TTL_S = 2.0


def settings() -> Settings:
    """The settings, or a readable error on the page (and a stop) when the environment is invalid."""
    try:
        return get_settings()
    except FinpulseError as error:
        st.error(f"finpulse cannot start: {error}")
        st.stop()
        raise  # unreachable: st.stop() raises; keeps the type checker satisfied


@st.cache_resource(show_spinner=False)
def _configure_logging(level: str) -> bool:
    # Once per server process: `streamlit run` leaves the root logger bare, so without this the dashboard's own
    # log lines (logins, acknowledgements, promotions) would be lost. A host that configured logging already
    # (a test runner driving AppTest) keeps its own set-up.
    if logging.getLogger().handlers:
        return False
    setup_logging(level)
    return True


def configure_logging() -> None:
    _configure_logging(settings().log_level)


@st.cache_resource(show_spinner=False)
def _engine(url: str) -> Engine:
    engine = make_engine(url)
    require_migrated(engine)
    log.info("dashboard connected to %s", mask_url(engine.url.render_as_string(hide_password=True)))
    return engine


def engine() -> Engine:
    """The one engine of this process (per database URL), checked to be migrated."""
    url = settings().database_url
    try:
        return _engine(url)
    except FinpulseError as error:
        st.error(str(error))
        st.stop()
        raise


@st.cache_data(ttl=CACHE_TTL_S, max_entries=128, show_spinner=False)
def _cached(url: str, module: str, name: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...]) -> Any:
    fn = getattr(importlib.import_module(module), name)
    return fn(_engine(url), *args, **dict(kwargs))


def load(fn: Callable[Concatenate[Engine, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call the module-level read ``fn(engine, *args)`` through the short-TTL cache (keyed by its name)."""
    engine()  # surfaces a missing migration on the page before any query runs
    key = (fn.__module__, fn.__qualname__)
    result: T = _cached(settings().database_url, *key, args, tuple(sorted(kwargs.items())))
    return result


def invalidate() -> None:
    """Drop cached reads after a write so the page shows its own change at once."""
    _cached.clear()
