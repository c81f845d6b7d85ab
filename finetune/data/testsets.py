"""Named test sets recorded with the model: ``--test-data NAME=KIND=PATH[?opt=value&...]``.

The part after ``NAME=`` is a ``--data`` source (:mod:`finetune.data.sources`), e.g.
``tfns_valid=tfns=../shared/data/tfns/sent_valid.csv`` or
``'sentfin_doc=sentfin=FILE?part=heldout&heldout=0.2&seed=0&doc=true'``. The name keys the set's metrics in
``metrics.json`` (``tests``), the model card and the dashboard, so it is short and stable: a letter or digit, then
letters, digits, ``_``, ``-`` or ``.``. Test texts (and their near-duplicates) are removed from the training data as
``--exclude-data`` removes them. Light on purpose (no torch): :mod:`finetune.args` checks the syntax at parse time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from finetune.data.sources import ColumnDefaults, DataSpec, load_sources
from finetune.examples import Example
from monitor.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EXAMPLE = "tfns_valid=tfns=../shared/data/tfns/sent_valid.csv"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class NamedSpec:
    name: str
    data: DataSpec

    def __str__(self) -> str:
        return f"{self.name}={self.data}"


@dataclass
class EvalSet:
    """A loaded test set: its name, the source it came from and its labelled examples."""

    name: str
    spec: str
    examples: list[Example] = field(default_factory=list)


def parse_named_spec(text: str) -> NamedSpec:
    """``NAME=KIND=PATH[?...]`` -> :class:`NamedSpec`; anything else is a one-line ConfigError with an example."""
    name, sep, rest = text.partition("=")
    usage = f"expected NAME=KIND=PATH[?opt=value&...], e.g. {EXAMPLE}"
    if not sep or not _NAME_RE.fullmatch(name.strip()):
        raise ConfigError(f"--test-data {text!r}: {usage}")
    try:
        data = DataSpec.parse(rest)
    except DataError as error:
        raise ConfigError(f"--test-data {text!r}: {usage} ({error})") from None
    if data.kind == "text":
        raise ConfigError(f"--test-data {text!r}: text= sources are unlabelled and cannot be scored; use a labelled "
                          "kind (tfns, csv, jsonl, conll, finpulse, sentfin, db)")
    return NamedSpec(name.strip(), data)


def parse_named_specs(texts: Sequence[str]) -> list[NamedSpec]:
    specs = [parse_named_spec(text) for text in texts]
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"--test-data: the name(s) {repeated} are used twice; give every test set its own name")
    return specs


def load_test_sets(texts: Sequence[str], defaults: ColumnDefaults | None = None) -> list[EvalSet]:
    """Read every named test set (in the order given)."""
    out = []
    for spec in parse_named_specs(texts):
        examples = load_sources([spec.data], defaults or ColumnDefaults())
        out.append(EvalSet(spec.name, str(spec.data), examples))
        log.info("test set %s: %d examples", spec.name, len(examples))
    return out
