"""The deployment files (docker/) as data: compose, the Dockerfile's stages, .dockerignore, shared by the tests."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from monitor.cli.config import env_name
from monitor.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILES = [DOCKER / "compose.yaml", DOCKER / "compose.gpu.yaml"]
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
ENV_EXAMPLE = DOCKER / ".env.example"
VENV_BIN = Path(sys.executable).parent
SETTINGS_VARS = {env_name(name) for name in Settings.model_fields}
# compose.yaml points the first two at its own kafka and postgres and makes retraining wait for an admin's approval
# (four eyes in production); every other ${FINPULSE_X:-default} repeats the code's default.
COMPOSE_OVERRIDES = {"FINPULSE_KAFKA_BOOTSTRAP", "FINPULSE_DATABASE_URL", "FINPULSE_RETRAIN_PROMOTION"}
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


def compose() -> dict[str, Any]:
    return load_yaml(DOCKER / "compose.yaml")


def is_finpulse_service(service: dict[str, Any]) -> bool:
    return bool(service.get("build", {}).get("dockerfile") == "docker/Dockerfile")


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on", {})
    return {name: {"condition": "service_started"} for name in deps} if isinstance(deps, list) else deps


def strings_in(node: object) -> Iterator[str]:
    """Every string in a parsed YAML document (keys and values; comments are gone)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings_in(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)
    elif isinstance(node, str):
        yield node


def clean_env() -> dict[str, str]:
    """This process's environment without FINPULSE_* (a developer's settings must not decide a test)."""
    return {key: value for key, value in os.environ.items() if not key.startswith("FINPULSE_")}


# --- Dockerfile parsing ----------------------------------------------------------------------------------------
def stages() -> dict[str, list[dict[str, Any]]]:
    """Stage name -> its instructions (FROM first); the stage before the first FROM is named ``<global>``."""
    result: dict[str, list[dict[str, Any]]] = {"<global>": []}
    current = "<global>"
    for instruction in DockerfileParser(path=str(DOCKERFILE)).structure:
        if instruction["instruction"] == "COMMENT":
            continue
        if instruction["instruction"] == "FROM":
            words = instruction["value"].split()
            current = words[2].lower() if len(words) == 3 and words[1].lower() == "as" else f"<stage {len(result)}>"
            result[current] = []
        result[current].append(instruction)
    return result


def args_of(stage: list[dict[str, Any]]) -> dict[str, str]:
    return dict(i["value"].partition("=")[::2] for i in stage if i["instruction"] == "ARG")


def final_stage_name(model_dir: str) -> str:
    """Resolve the last FROM as BuildKit does for ``${VAR:+word}`` (word when VAR is set and not empty)."""
    base = list(stages().values())[-1][0]["value"].split()[0]
    return re.sub(r"\$\{MODEL_DIR:\+([^}]*)\}", lambda m: m.group(1) if model_dir else "", base)


def stage_chain(name: str) -> list[str]:
    """The stage and the stages it derives from, nearest first."""
    all_stages, chain = stages(), [name]
    while (parent := all_stages[chain[-1]][0]["value"].split()[0].lower()) in all_stages:
        chain.append(parent)
    return chain


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``**`` spans folders, ``*`` and ``?`` stay within one."""
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token) or (
            token if token.startswith("[") else re.escape(token))
    return re.compile(regex)


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a folder above it decides; ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    verdict = False
    for pattern in patterns:
        regex = pattern_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            verdict = not pattern.startswith("!")
    return verdict


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
