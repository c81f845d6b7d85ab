"""The promotion gate: compare a retrained candidate with the champion on the same data (MLflow-style thresholds).

Promote only if both hold, on document-sentiment macro-F1:

* **gold set** (all gold labels): ``candidate >= champion - tolerance`` (it may not get worse by more than the
  tolerance on the fixed yardstick);
* **new labels** (the gold part of the labels added since the champion was trained):
  ``candidate >= champion + min_improvement`` (it must get better where the world moved).

The decision, the reason in words and every number go into ``model_version.gate``; the dashboard shows
``decision`` and ``reason``.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.types import utcnow

log = logging.getLogger(__name__)

EPS = 1e-9  # F1 values computed from the same counts compare exactly; this only absorbs float rounding


def decide(*, gold_candidate: float | None, gold_champion: float | None, gold_n: int,
           new_candidate: float | None, new_champion: float | None, new_n: int,
           tolerance: float, min_improvement: float, champion_version: str,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The gate JSON (``decision`` is ``promoted`` or ``rejected``)."""
    reasons: list[str] = []
    gold_ok = gold_candidate is not None and gold_champion is not None
    if not gold_ok:
        reasons.append("the gold set has no sentiment labels to compare on")
    else:
        assert gold_candidate is not None and gold_champion is not None  # nosec B101 # narrows: gold_ok said so
        gold_ok = gold_candidate >= gold_champion - tolerance - EPS
        reasons.append(f"gold macro-F1 {gold_candidate:.4f} vs champion {gold_champion:.4f} "
                       f"({gold_candidate - gold_champion:+.4f}; {'within' if gold_ok else 'beyond'} "
                       f"tolerance {tolerance:g}, n={gold_n})")
    new_ok = new_candidate is not None and new_champion is not None
    if not new_ok:
        reasons.append("no gold labels among the new labels to compare on; label more "
                       "(FINPULSE_RETRAIN_GOLD_FRACTION of them become gold)")
    else:
        assert new_candidate is not None and new_champion is not None  # nosec B101 # narrows: new_ok said so
        new_ok = new_candidate >= new_champion + min_improvement - EPS
        reasons.append(f"new-labels macro-F1 {new_candidate:.4f} vs champion {new_champion:.4f} "
                       f"({new_candidate - new_champion:+.4f}; {'meets' if new_ok else 'misses'} "
                       f"min improvement {min_improvement:g}, n={new_n})")
    promoted = bool(gold_ok and new_ok)

    def side(candidate: float | None, champion: float | None, n: int, passed: bool, **limits: float) -> dict[str, Any]:
        delta = None if candidate is None or champion is None else candidate - champion
        return {"n": n, "candidate": candidate, "champion": champion, "delta": delta, "passed": passed, **limits}

    return {
        "decision": "promoted" if promoted else "rejected",
        "reason": "; ".join(reasons),
        "metric": "sentiment macro_f1",
        "champion_version": champion_version,
        "gold": side(gold_candidate, gold_champion, gold_n, bool(gold_ok), tolerance=tolerance),
        "new_labels": side(new_candidate, new_champion, new_n, bool(new_ok), min_improvement=min_improvement),
        "evaluated_at": utcnow().isoformat(),
        **(extra or {}),
    }
