"""The dashboard's pages under Streamlit's AppTest, against a seeded SQLite database (real tables, real signals).

Read-only tests share one seeded database; tests that write (labels, acks, rules, promotion) get their own. Roles,
sessions and the audit trail: test_dashboard_accounts.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from dashboards.auth import hash_password, verify_password
from dashboards.formatting import escape_markdown
from monitor.core import db
from monitor.core.errors import ConfigError
from monitor.core.settings import load_settings
from schemas.alerts import Alert, AlertRule, AlertSilence
from schemas.registry import LabelledNews, ModelVersion
from tests.dashboard_seed import Seeded, seed
from tests.dashboards.kit import PASSWORD, button, field, fresh_login, login, metrics, run_app, texts


def test_login_refuses_a_wrong_password_and_admits_the_right_one(env: Any, shared: tuple[str, Seeded]) -> None:
    env(shared[0], auth="accounts")
    at = run_app()
    assert not at.metric and at.text_input(key="login_password").label == "Password"
    assert at.text_input(key="login_name").label == "Name"
    login(at, "ann", "wrong password")
    assert [e.value for e in at.error] == ["Wrong name or password."]
    assert not at.metric
    login(at, "ann")
    assert not at.error
    assert metrics(at)["Active alerts"][0] == str(shared[1].firing)
    assert "Signed in as **ann** (analyst)" in texts(at, "caption")


def test_without_accounts_or_a_password_hash_the_page_says_how_to_add_an_admin(env: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    db.upgrade(url)
    env(url, auth="accounts")
    at = run_app()
    assert not at.metric and not at.text_input
    assert "finpulse users add NAME --role admin" in at.warning[0].value
    assert "FINPULSE_DASHBOARD_AUTH_DISABLED" in at.warning[0].value


def test_overview_tiles_charts_and_movers_show_the_seeded_data(env: Any, shared: tuple[str, Seeded]) -> None:
    env(shared[0])
    at = run_app()
    tiles = metrics(at)
    assert tiles["Stories / min (scored, last 5 min)"][0] == "1.4"  # 7 stories scored in the last 5 minutes
    # The stale consumer and the other group's live one are left out; the one on another topic counts.
    assert tiles["Consumer lag"] == ("55", "3 consumers reporting")
    assert tiles["Active alerts"] == ("1", "1 pending")
    assert tiles["Model serving"][0] == "v2"
    assert tiles["Last story scored"][0].endswith("ago")
    assert len(at.get("vega_lite_chart")) == 2  # market trend + heat map
    by_z = at.dataframe[0].value
    assert "tsla" in by_z.iloc[0]["entity"].lower()  # Tesla's recall is the largest |z-score|


def test_entity_page_finds_an_entity_and_shows_its_alerts_and_headlines(env: Any, shared: tuple[str, Seeded]) -> None:
    env(shared[0])
    at = run_app("entity")
    at.text_input(key="entity_search").input("tsla").run()
    assert at.selectbox(key="entity_pick").value == "TICKER:TSLA"
    assert metrics(at)["Alerts in window"][0] == "2"  # one firing, one resolved in the last 6 h
    assert len(at.get("vega_lite_chart")) == 1
    headlines = [m.value for m in at.markdown]
    assert any(":red-background[Tesla] recalls" in text for text in headlines)
    assert at.query_params.get("entity") == "TICKER:TSLA"


def test_alerts_page_lists_alerts_and_acknowledges_and_silences(env: Any, own: tuple[str, Seeded]) -> None:
    url, _ = own
    env(url, auth="accounts")
    at = fresh_login("ann", page="alerts")
    shown = texts(at, "markdown")
    assert "tsla\\-negative" in shown and "volume\\-spike" in shown  # firing and pending
    assert any("Tesla recalls" in m.value for m in at.markdown)  # evidence headlines
    assert [t.label for t in at.tabs] == ["Firing (1)", "Pending (1)", "Resolved, last 24 h (2)"]
    # Why each alert fired (and resolved), in words: the evaluator's explanation, else the bare condition.
    assert f"**{escape_markdown('4 stories in 15m averaging -0.90')}**" in shown
    assert (f"**Fired:** {escape_markdown('3 stories in 15m averaging -0.50')}  \n"
            f"**Resolved:** {escape_markdown('4 stories in 15m averaging +0.10')}") in shown
    assert (f"**Fired:** {escape_markdown('volume_ratio +4.20 vs threshold +3')}  \n"
            f"**Resolved:** {escape_markdown('volume_ratio back at +1.10')}") in shown
    assert "volume_surprise +7.20 > +6; fires after holding 10m with at least 5 stories per window" in texts(
        at, "caption")
    button(at, "Acknowledge").click().run()
    assert not at.exception
    field(at, "For").input("2h")
    button(at, "Silence").click().run()
    assert not at.exception and not at.error
    with Session(db.make_engine(url)) as session:
        alert = session.exec(select(Alert).where(Alert.status == "firing")).one()
        assert alert.acked_by == "ann" and alert.acked_at is not None
        silence = session.exec(select(AlertSilence)).one()
        assert silence.rule_id == alert.rule_id and silence.entity == "TICKER:TSLA" and silence.created_by == "ann"
    # An analyst: the rule editor is not offered (the rules are still listed), and the page says why.
    assert "edit rules needs the admin role" in texts(at, "caption")
    assert not any(b.label == "Save rule" for b in at.button)
    table = at.dataframe[0].value
    assert table["name"].tolist() == ["tsla-negative", "volume-spike"]
    assert table["min stories"].tolist() == [3, 5] and table["no-data windows"].tolist() == [2, 3]


def test_rule_editor_rejects_a_bad_rule_and_saves_a_good_one(env: Any, own: tuple[str, Seeded]) -> None:
    url, _ = own
    env(url, auth="password")  # the bootstrap admin of FINPULSE_DASHBOARD_PASSWORD_HASH
    at = fresh_login("admin", PASSWORD, page="alerts")
    metric = field(at, "Metric")
    assert metric.options[:3] == ["volume_surprise", "sentiment_z", "sentiment_shrunk"]
    for words in ("how unlikely this many stories are for this entity: 6 means p < 1e-6",
                  "how many standard errors the window's mean sentiment is from the entity's normal",
                  "pulled toward the entity's normal when there are few stories", "thresholds 0 to ∞"):
        assert words in metric.help
    field(at, "Name").input("aapl negative!")
    field(at, "Entity").input("AAPL")
    field(at, "Threshold").input("-0.5")
    button(at, "Save rule").click().run()
    assert "invalid alert rule: name" in at.error[0].value
    field(at, "Name").input("aapl-negative")
    field(at, "Metric").set_value("negative_share")
    field(at, "Threshold").input("1.5")
    button(at, "Save rule").click().run()
    assert "negative_share lies in [0, 1]" in at.error[0].value
    field(at, "Metric").set_value("sentiment_z")
    field(at, "Threshold").input("-3")
    field(at, "Minimum stories").input("0")
    button(at, "Save rule").click().run()
    assert at.error[0].value.startswith("invalid alert rule: min_stories: Input should be greater than or equal to 1")
    field(at, "Minimum stories").input("5")
    field(at, "No-data windows before resolving").input("4")
    field(at, "Window").input("30m")
    field(at, "Channels").input("ops, Risk-Desk")
    button(at, "Save rule").click().run()
    assert not at.error and not at.exception
    with Session(db.make_engine(url)) as session:
        rule = session.exec(select(AlertRule).where(AlertRule.name == "aapl-negative")).one()
    assert (rule.entity, rule.metric, rule.threshold, rule.window_s) == ("TICKER:AAPL", "sentiment_z", -3, 1800)
    assert (rule.min_stories, rule.no_data_windows) == (5, 4)
    assert rule.channels == ["ops", "risk-desk"]
    table = at.dataframe[0].value
    row = table[table["name"] == "aapl-negative"].iloc[0]
    assert (row["condition"], row["min stories"], row["no-data windows"]) == ("sentiment_z < -3", 5, 4)
    # Read back into the editor: the form shows what was stored, and saving it unchanged changes nothing.
    field(at, "Rule to edit").set_value("aapl-negative").run()
    shown = {label: field(at, label).value for label in ("Metric", "Threshold", "Minimum stories",
                                                          "No-data windows before resolving", "Window")}
    assert shown == {"Metric": "sentiment_z", "Threshold": "-3", "Minimum stories": "5",
                     "No-data windows before resolving": "4", "Window": "30m"}
    button(at, "Save rule").click().run()
    assert not at.error
    with Session(db.make_engine(url)) as session:
        again = session.exec(select(AlertRule).where(AlertRule.name == "aapl-negative")).one()
    assert again.model_dump(exclude={"updated_at"}) == rule.model_dump(exclude={"updated_at"})


def test_a_label_saved_in_the_labelling_page_lands_in_the_table(env: Any, own: tuple[str, Seeded]) -> None:
    url, seeded = own
    env(url, auth="accounts")
    at = fresh_login("ann", page="labelling")
    assert metrics(at)["Labels awaiting the next retraining"][0] == str(seeded.awaiting_labels)
    headline = at.markdown[0].value
    with Session(db.make_engine(url)) as session:
        labelled = set(session.exec(select(LabelledNews.news_id)).all())
    button(at, "Skip").click().run()
    assert at.markdown[0].value != headline  # the next story
    button(at, "Negative").click().run()
    assert not at.exception and not at.error
    assert at.success[0].value.startswith("Saved label")
    assert metrics(at)["Labels awaiting the next retraining"][0] == str(seeded.awaiting_labels + 1)
    with Session(db.make_engine(url)) as session:
        row = session.exec(select(LabelledNews).order_by(col(LabelledNews.id).desc())).first()
    assert row is not None and row.news_id not in labelled
    assert row.sentiment == "negative" and (row.labelled_by, row.labeller_role) == ("ann", "analyst")
    assert row.entities and all(row.text[e["start"]:e["end"]] == e["text"] for e in row.entities)
    assert {"start", "end", "type", "text", "sentiment"} == set(row.entities[0])


def test_models_page_shows_gates_and_promotes_and_rolls_back(env: Any, own: tuple[str, Seeded],
                                                             tiny_model_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = own
    engine = db.make_engine(url)
    with Session(engine) as session:  # promotion and rollback test-load the model: give them a real one
        for row in session.exec(select(ModelVersion).where(col(ModelVersion.version).in_(["v2", "v3"]))):
            row.path = str(tiny_model_dir)
            session.add(row)
        session.commit()
    monkeypatch.setenv("FINPULSE_DEVICE", "cpu")
    env(url)
    at = run_app("models")
    table = at.dataframe[0].value
    assert list(table["version"]) == ["v3", "v2", "v1"]
    assert table.loc[table["version"] == "v2", "status"].item() == "★ champion"
    assert "reject" in table.loc[table["version"] == "v3", "gate"].item()
    assert table.loc[table["version"] == "v2", "sentiment.macro_f1"].item() == 0.78
    assert "ner.f1" in table and "steps" not in table and "sentiment.per_class.negative.f1" not in table
    assert table.loc[table["version"] == "v2", "ONNX"].item().startswith("int8 served")
    assert table.loc[table["version"] == "v1", "ONNX"].item() == \
        "fp32 served — int8 loses sentiment_macro_f1 0.0120 (more than 0.005)"
    assert "Read-only: FINPULSE_DASHBOARD_AUTH_DISABLED" in texts(at, "caption")  # no login: no promotion
    assert not any(b.label == "Promote" for b in at.button)
    env(url, auth="password")
    at = fresh_login("admin", PASSWORD, page="models")
    field(at, "Version to promote").set_value("v3")
    field(at, "Serve this version instead of the current champion").check()
    button(at, "Promote").click().run()
    assert not at.error and not at.exception
    with Session(engine) as session:
        assert session.exec(select(ModelVersion.version).where(ModelVersion.status == "champion")).one() == "v3"
    field(at, "Roll back the champion").check()
    button(at, "Roll back").click().run()
    assert not at.error
    with Session(engine) as session:
        assert session.exec(select(ModelVersion.version).where(ModelVersion.status == "champion")).one() == "v2"
    engine.dispose()


def test_password_hash_round_trip_and_limits() -> None:
    hashed = hash_password("s3cret")
    assert verify_password("s3cret", hashed) and not verify_password("s3cret!", hashed)
    assert not verify_password("s3cret", "not-a-bcrypt-hash")
    with pytest.raises(ConfigError, match="at most 72"):
        hash_password("x" * 73)


def test_queries_on_sqlite_and_postgresql(db_url: str) -> None:
    """The read queries (no Streamlit) give the seeded numbers on both databases."""
    from dashboards.queries import alerts as alert_queries
    from dashboards.queries import training as training_queries
    from dashboards.queries import trends

    settings = load_settings(database_url=db_url)
    seeded = seed(db_url, settings)
    engine = db.make_engine(db_url)
    try:
        tiles = trends.tiles(engine)
        assert (tiles.last_5min, tiles.firing, tiles.pending) == (seeded.recent_scored, 1, 1)
        # The consumers' queries: tests/dashboards/test_overview_consumers.py.
        assert (tiles.serving_version, tiles.champion_version) == ("v2", "v2")
        trend = trends.market_trend(engine, 7, settings.signal_bucket_s)  # the seed spans 6 h
        assert trend["count"].sum() == len(seeded.news_ids)
        heat = trends.heatmap(engine, 6, settings.signal_bucket_s, 3)
        assert heat["entity"].nunique() == 3
        by_z, by_volume = trends.top_movers(engine, settings.signal_bucket_s, 12, 5)
        every_z, every_volume = trends.top_movers(engine, settings.signal_bucket_s, 12, 1000)
        busiest = int(max(every_z["count"].max(), every_volume["count"].max()))
        few, few_volume = trends.top_movers(engine, settings.signal_bucket_s, 12, 5, min_stories=busiest)
        assert not few.empty and (few["count"] >= busiest).all() and (few_volume["count"] >= busiest).all()
        none, none_volume = trends.top_movers(engine, settings.signal_bucket_s, 12, 5, min_stories=busiest + 1)
        assert none.empty and none_volume.empty
        assert "tsla" in by_z.iloc[0]["entity"].lower() and not by_volume.empty
        assert trends.search_entities(engine, "tsl", 7, 10) == ["TICKER:TSLA"]
        assert trends.search_entities(engine, "%", 7, 10) == []  # LIKE wildcards are escaped
        entity = trends.entity_trend(engine, "TICKER:TSLA", 6, settings.signal_bucket_s, 7)
        assert entity["baseline_std"].dropna().ge(0.05).all() and entity["baseline_mean"].notna().any()
        assert len(trends.entity_alerts(engine, "TICKER:TSLA", 6)) == 2
        assert trends.entity_headlines(engine, "TICKER:TSLA", 3)[0].headline.startswith("Tesla recalls")
        [firing] = alert_queries.alerts(engine, "firing", 24, 10)
        assert (firing.rule_name, firing.explanation, firing.resolved_explanation) == (
            "tsla-negative", "4 stories in 15m averaging -0.90", None)
        resolved = alert_queries.alerts(engine, "resolved", 24, 10)
        assert [(a.explanation, a.resolved_explanation) for a in resolved] == [
            ("3 stories in 15m averaging -0.50", "4 stories in 15m averaging +0.10"),
            ("volume_ratio +4.20 vs threshold +3", "volume_ratio back at +1.10"),  # written before explanations
        ]
        assert [(p.entity, p.min_stories) for p in alert_queries.pending(engine, 10)] == [("TICKER:MSFT", 5)]
        assert {r["name"] for r in alert_queries.rules(engine)} == {"tsla-negative", "volume-spike"}
        queue = training_queries.labelling_queue(engine, 7, 5, settings.body_max_chars)
        assert [item.confidence for item in queue] == sorted(item.confidence for item in queue)
        assert not {item.news_id for item in queue} & seeded.labelled_ids
        assert training_queries.queue_size(engine, 7) == len(seeded.news_ids) - len(seeded.labelled_ids)
        assert training_queries.labels_awaiting(engine).count == seeded.awaiting_labels
        assert [v["version"] for v in training_queries.model_versions(engine)] == ["v3", "v2", "v1"]
    finally:
        engine.dispose()
