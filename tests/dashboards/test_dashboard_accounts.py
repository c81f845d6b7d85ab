"""Roles on the dashboard, enforced where it writes: what each role is offered, a forged write refused server-side,
the signed-in account recorded in the label row and the audit trail, four eyes on a retrained candidate.

Accounts are made directly in the database (tests/dashboards/kit.py): vic (viewer), ann (analyst), root (admin).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, func, select
from streamlit.testing.v1 import AppTest

from dashboards.auth import LOGIN_AT_KEY, PRINCIPAL_KEY, SEEN_AT_KEY
from dashboards.queries import audit as audit_queries
from monitor.core import db
from monitor.core.accounts import Principal
from schemas.alerts import Alert, AlertRule, AlertSilence
from schemas.registry import LabelledNews, ModelVersion
from tests.dashboard_seed import Seeded
from tests.dashboards.kit import add_accounts, audit_rows, button, field, fresh_login, labels, run_app, texts

WRITE_BUTTONS = {"Acknowledge", "Silence", "Save rule", "Delete rule", "Negative", "Neutral", "Positive", "Skip",
                 "Promote", "Roll back", "Approve"}


def forge_every_write() -> None:
    """A page script that calls each of the dashboard's write paths with whoever is in session state."""
    import streamlit as st

    from dashboards import actions
    from dashboards.queries import training
    from dashboards.state import engine
    from monitor.core.errors import FinpulseError

    rule = {"name": "forged", "entity": "*", "metric": "mean_sentiment", "comparator": "<", "threshold": "-0.5",
            "window_s": 900, "pending_s": 0, "repeat_interval_s": 0, "severity": "info", "channels": ""}
    writes = {
        "acknowledge": lambda: actions.acknowledge(1),
        "silence": lambda: actions.silence(1, "TICKER:TSLA", actions.SILENCE_SCOPES[0], "1h", "forged"),
        "add rule": lambda: actions.save_rule(None, rule),
        "update rule": lambda: actions.save_rule(1, {**rule, "name": "tsla-negative"}),
        "delete rule": lambda: actions.delete_rule(1, "tsla-negative"),
        "label": lambda: actions.label(training.labelling_queue(engine(), 7, 1, 2000)[0], "negative", []),
        "promote": lambda: actions.promote("v3"),
        "rollback": actions.rollback,
        "approve": lambda: actions.approve("v3"),
    }
    for name, write in writes.items():
        try:
            write()
        except FinpulseError as error:
            st.error(f"{name}: {error}")
        else:
            st.success(f"{name}: written")


def forged(principal: Principal | None) -> AppTest:
    at = AppTest.from_function(forge_every_write, default_timeout=60)
    if principal is not None:
        at.session_state[PRINCIPAL_KEY] = principal
        at.session_state[LOGIN_AT_KEY] = at.session_state[SEEN_AT_KEY] = time.time()
    return at.run()


def assert_nothing_written(url: str, seeded: Seeded) -> None:
    engine = db.make_engine(url)
    with Session(engine) as session:
        assert session.exec(select(Alert).where(col(Alert.acked_at).is_not(None))).first() is None
        assert session.exec(select(func.count()).select_from(AlertSilence)).one() == 0
        assert sorted(session.exec(select(AlertRule.name)).all()) == ["tsla-negative", "volume-spike"]
        assert session.get_one(AlertRule, 1).threshold == -0.3
        assert len(session.exec(select(LabelledNews)).all()) == len(seeded.labelled_ids)
        assert session.exec(select(ModelVersion.version).where(ModelVersion.status == "champion")).one() == "v2"
    engine.dispose()
    assert audit_rows(url) == []


def test_a_viewer_is_offered_no_write_and_a_forged_one_is_refused(env: Any, own: tuple[str, Seeded]) -> None:
    url, seeded = own
    env(url, auth="accounts")
    for page, why in [("alerts", "vic is a viewer; acknowledge needs the analyst role"),
                      ("labelling", "label needs the analyst role"), ("models", "promote needs the admin role")]:
        at = fresh_login("vic", page=page)
        assert not labels(at) & WRITE_BUTTONS, page
        assert why in texts(at, "caption"), page
    at = forged(Principal("vic", "viewer", "dashboard"))
    refused = [e.value for e in at.error]
    assert len(refused) == 9 and not at.success, refused
    assert all("vic is a viewer" in line for line in refused)
    assert_nothing_written(url, seeded)
    at = forged(Principal("ann", "analyst", "dashboard"))  # an analyst may not touch rules or models
    assert {e.value.split(":")[0] for e in at.error} == {"add rule", "update rule", "delete rule", "promote",
                                                        "rollback", "approve"}


def test_auth_disabled_is_read_only_even_with_a_forged_admin(env: Any, own: tuple[str, Seeded]) -> None:
    url, seeded = own
    env(url, auth="disabled")
    for page in ("alerts", "labelling", "models"):
        at = run_app(page)
        assert not labels(at) & WRITE_BUTTONS, page
        assert "Read-only: FINPULSE_DASHBOARD_AUTH_DISABLED is set" in texts(at, "caption"), page
    at = forged(Principal("root", "admin", "dashboard"))  # session state cannot sign anyone in in this mode
    assert len(at.error) == 9 and all("needs a signed-in account" in e.value for e in at.error)
    assert_nothing_written(url, seeded)


def test_an_analyst_labels_and_acknowledges_as_the_account(env: Any, own: tuple[str, Seeded]) -> None:
    url, _ = own
    env(url, auth="accounts")
    at = fresh_login("ann", page="labelling")
    assert "Labels are saved as **ann** (analyst)" in texts(at, "caption")
    button(at, "Positive").click().run()
    assert not at.error and at.success[0].value.startswith("Saved label")
    engine = db.make_engine(url)
    with Session(engine) as session:
        row = session.exec(select(LabelledNews).order_by(col(LabelledNews.id).desc())).first()
    engine.dispose()
    assert row is not None and (row.labelled_by, row.labeller_role, row.sentiment) == ("ann", "analyst", "positive")
    [event] = audit_rows(url)
    assert (event.actor, event.role, event.source, event.action) == ("ann", "analyst", "dashboard", "label.create")
    assert event.after is not None and event.after["news_id"] == row.news_id and event.before is None


def test_an_admin_edits_a_rule_and_the_audit_page_shows_before_and_after(env: Any, own: tuple[str, Seeded]) -> None:
    url, _ = own
    env(url, auth="accounts")
    at = fresh_login("root", page="alerts")
    field(at, "Rule to edit").set_value("tsla-negative").run()
    field(at, "Threshold").input("-0.5")
    button(at, "Save rule").click().run()
    assert not at.error and not at.exception
    [event] = audit_rows(url)
    assert (event.actor, event.role, event.action) == ("root", "admin", "rule.update")
    assert event.before is not None and event.after is not None
    assert (event.before["threshold"], event.after["threshold"]) == (-0.3, -0.5)
    assert event.before["name"] == event.after["name"] == "tsla-negative"
    run_app("audit", at)
    table = at.dataframe[0].value
    assert table["actor"].tolist() == ["root"] and table["role"].tolist() == ["admin"]
    assert table["change"].item() == "threshold: -0.3 → -0.5"
    assert "threshold: -0.3 → -0.5" in texts(at, "code")
    download = at.get("download_button")[0]
    assert download.proto.label == "Download (jsonl)"
    engine = db.make_engine(url)
    [line] = audit_queries.export(audit_queries.events(engine, 10)).splitlines()  # what the download holds
    engine.dispose()
    exported = json.loads(line)
    assert (exported["actor"], exported["before"]["threshold"], exported["after"]["threshold"]) == ("root", -0.3, -0.5)
    field(at, "Action").set_value("rule.update").run()
    assert len(at.dataframe[0].value) == 1


def test_the_audit_page_refuses_a_non_admin(env: Any, shared: tuple[str, Seeded]) -> None:
    env(shared[0], auth="accounts")
    at = fresh_login("ann")
    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not even listed for an analyst
        at.switch_page("views/audit.py")


def test_four_eyes_the_last_labeller_cannot_approve_another_admin_can(env: Any, own: tuple[str, Seeded],
                                                                      tiny_model_dir: Path,
                                                                      monkeypatch: Any) -> None:
    url, _ = own
    engine = db.make_engine(url)
    with Session(engine) as session:
        v3 = session.exec(select(ModelVersion).where(ModelVersion.version == "v3")).one()
        v3.path, v3.awaiting_approval = str(tiny_model_dir), True
        newest = session.exec(select(LabelledNews).order_by(col(LabelledNews.id).desc())).first()
        assert newest is not None and newest.id == v3.trained_until_label_id
        newest.labelled_by, newest.labeller_role = "root", "admin"
        session.add_all([v3, newest])
        session.commit()
    add_accounts(url, {"rita": "admin"})
    monkeypatch.setenv("FINPULSE_DEVICE", "cpu")
    env(url, auth="accounts")
    at = fresh_login("ann", page="models")
    assert any(s.value == "Awaiting approval (1)" for s in at.subheader)
    assert "Approve" not in labels(at) and "approve needs the admin role" in texts(at, "caption")
    errors = {}
    for name in ("root", "rita"):
        at = fresh_login(name, page="models")
        field(at, "Version to approve").set_value("v3")
        field(at, "I checked its gate decision and approve serving it").check()
        button(at, "Approve").click().run()
        errors[name] = texts(at, "error")
    assert "root labelled the newest data v3 was trained on" in errors["root"] and "four eyes" in errors["root"]
    assert errors["rita"] == ""
    with Session(engine) as session:
        v3 = session.exec(select(ModelVersion).where(ModelVersion.version == "v3")).one()
    engine.dispose()
    assert (v3.status, v3.approved_by, v3.awaiting_approval) == ("champion", "rita", False)
    table = at.dataframe[0].value
    assert table.loc[table["version"] == "v3", "approved by"].item().startswith("rita at ")
    [event] = audit_rows(url)
    assert (event.actor, event.action, event.target) == ("rita", "model.approve", "model v3")
    assert json.dumps(event.after).count("rita") >= 1
