"""The Models page shows each version's test sets (``metrics.tests``, as ``finpulse train --test-data`` records
them): a compact column in the registry table and a per-set table in the version's expander (Streamlit AppTest,
seeded SQLite database)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from dashboards.model_tests import heldout_summary, heldout_table
from finetune.metrics import classification, ner_scores
from monitor.core import db
from schemas.registry import ModelVersion
from tests.dashboard_seed import Seeded
from tests.dashboards.kit import run_app

GOLD = ["negative", "neutral", "positive", "positive", "neutral"]
PREDICTED = ["negative", "neutral", "neutral", "positive", "neutral"]


def recorded_tests() -> dict[str, Any]:
    """Two test sets shaped as finetune.testsets records them, numbers from the real metric functions."""
    sentiment = classification(GOLD, PREDICTED)
    ner = ner_scores([["B-ORG", "O", "B-PER"]], [["B-ORG", "O", "O"]])
    base = {"engine": "torch", "precision": "fp32", "max_length": 128}
    return {
        "tfns_valid": {**base, "spec": "tfns=var/data/tfns/sent_valid.csv", "examples": 5, "sentiment": sentiment,
                       "onnx": {"precision": "int8", "sentiment": sentiment}},
        "finer_ord_valid": {**base, "spec": "conll=var/data/finer_ord/finer_ord_validation.conll", "examples": 1,
                            "ner": ner},
    }


def test_summary_and_table_of_recorded_test_sets() -> None:
    tests = recorded_tests()
    macro = tests["tfns_valid"]["sentiment"]["macro_f1"]
    ner = tests["finer_ord_valid"]["ner"]["f1"]
    assert heldout_summary({"tests": tests}) == f"tfns_valid sent {macro:.3f} · finer_ord_valid NER {ner:.3f}"
    assert heldout_summary({"validation": {}}) == "-" and heldout_table(None) is None
    table = heldout_table({"tests": tests})
    assert table is not None
    assert list(table["test set"]) == ["tfns_valid", "finer_ord_valid"]
    first = table.iloc[0]
    assert (first["recall negative"], first["recall neutral"], first["recall positive"]) == (1.0, 1.0, 0.5)
    assert first["ONNX served"] == f"int8: sent {macro:.3f}" and table.iloc[1]["ONNX served"] == "-"


def test_models_page_shows_each_versions_test_sets(env: Any, own: tuple[str, Seeded], tmp_path: Path) -> None:
    url, _ = own
    engine = db.make_engine(url)
    with Session(engine) as session:
        row = session.exec(select(ModelVersion).where(col(ModelVersion.version) == "v2")).one()
        row.metrics = {**(row.metrics or {}), "tests": recorded_tests()}
        session.add(row)
        session.commit()
    engine.dispose()
    env(url)
    at = run_app("models")
    table = at.dataframe[0].value
    summary = heldout_summary({"tests": recorded_tests()})
    assert table.loc[table["version"] == "v2", "test sets"].item() == summary
    assert table.loc[table["version"] == "v1", "test sets"].item() == "-"
    assert not [c for c in table.columns if c.startswith("tests.")]  # nested numbers stay out of the columns
    v2 = next(e for e in at.expander if e.label.startswith("v2 ·"))
    assert "**Test sets** (held out from training, scored with the saved model)" in [m.value for m in v2.markdown]
    shown = v2.dataframe[0].value
    assert list(shown["test set"]) == ["tfns_valid", "finer_ord_valid"]
    assert shown.iloc[0]["recall positive"] == 0.5 and shown.iloc[1]["NER F1"] == round(
        recorded_tests()["finer_ord_valid"]["ner"]["f1"], 4)
    v1 = next(e for e in at.expander if e.label.startswith("v1 ·"))
    assert not v1.dataframe  # no test sets recorded: no table
