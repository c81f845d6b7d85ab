"""The README stays true: every setting is documented and every command it shows exists."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.core.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields
               if f"`{ENV_PREFIX}{name.upper()}`" not in README]
    assert missing == []


def test_every_setting_named_in_the_readme_exists() -> None:
    named = set(re.findall(r"FINPULSE_[A-Z0-9_]+", README))
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    # FINPULSE_NOTIFY_<NAME> is a family of per-channel variables; FINPULSE_TEST_PG_URL is read by the tests.
    extra = {n for n in named - known if not n.startswith("FINPULSE_NOTIFY_") and n != "FINPULSE_TEST_PG_URL"}
    assert extra == set()


def _readme_commands() -> set[tuple[str, ...]]:
    """(subcommand, [subsubcommand]) of every `finpulse ...` shown in a code block or inline code."""
    found: set[tuple[str, ...]] = set()
    inline = re.findall(r"`((?:\S*/)?finpulse [^`\n]*)`", README)
    for snippet in inline + re.findall(r"```bash\n(.*?)```", README, re.S):
        for raw in snippet.replace("\\\n", " ").splitlines():
            line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
            for match in re.finditer(r"(?:^|[\s/])finpulse((?: [a-z][a-z-]*)+)", line):
                words = match.group(1).split()
                found.add(tuple(words[:2]))
    return found


@pytest.mark.parametrize("words", sorted(_readme_commands()))
def test_readme_command_exists(words: tuple[str, ...]) -> None:
    finpulse = Path(sys.executable).parent / "finpulse"
    result = subprocess.run([str(finpulse), *words[:1], "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"`finpulse {words[0]}` from README: {result.stderr[-300:]}"
    if len(words) > 1 and "Commands" in result.stdout:
        group = subprocess.run([str(finpulse), *words, "--help"], capture_output=True, text=True, timeout=60)
        assert group.returncode == 0, f"`finpulse {shlex.join(words)}` from README: {group.stderr[-300:]}"
