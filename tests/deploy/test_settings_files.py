"""compose, docker/.env.example and the Settings class agree; secrets stay masked."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from monitor.cli.config import COMPOSE_VARIABLES, env_name, env_value, render_effective, render_env_example
from monitor.core.settings import Settings, load_settings
from tests.deploy.files import (
    COMPOSE_FILES,
    COMPOSE_OVERRIDES,
    DOCKERFILE,
    ENV_EXAMPLE,
    INTERPOLATION,
    SETTINGS_VARS,
    VENV_BIN,
    clean_env,
    load_yaml,
    strings_in,
)


# --- settings: compose, .env.example and Settings agree ----------------------------------------------------------
def test_every_finpulse_variable_in_the_deployment_files_is_a_setting() -> None:
    for path in [*COMPOSE_FILES, ENV_EXAMPLE, DOCKERFILE]:
        found = set(re.findall(r"\bFINPULSE_[A-Z0-9_]+", path.read_text(encoding="utf-8")))
        unknown = found - SETTINGS_VARS
        assert not unknown, f"{path.name} uses FINPULSE_ variables unknown to monitor/core/settings.py: {unknown}"


def test_env_example_is_generated_from_settings_and_lists_every_setting() -> None:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert text == render_env_example(), \
        "docker/.env.example is stale: run `finpulse config env-example --output docker/.env.example`"
    listed = re.findall(r"^# (FINPULSE_[A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert sorted(listed) == sorted(SETTINGS_VARS) and len(listed) == len(set(listed))
    for name, field in Settings.model_fields.items():
        block = text.split(f"# {env_name(name)}=")[0].rstrip().rsplit("\n\n", 1)[-1]
        assert (field.description or "").split()[0] in block, f"{env_name(name)} lacks its description"


def test_env_example_secrets_are_empty() -> None:
    secrets = [name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)]
    assert {"kafka_sasl_password", "notify_urls", "dashboard_password_hash"} <= set(secrets)
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name in secrets:
        assert re.search(rf"^# {env_name(name)}=$", text, flags=re.MULTILINE), f"{env_name(name)} is not empty"
    assert re.search(r"^POSTGRES_PASSWORD=$", text, flags=re.MULTILINE)


def test_env_example_uncommented_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every template line, uncommented as is (empty ones too), parses back to the defaults."""
    for key in list(os.environ):
        if key.startswith("FINPULSE_"):
            monkeypatch.delenv(key)
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    env_file = tmp_path / ".env"
    env_file.write_text("\n".join(line[2:] for line in lines if line.startswith("# FINPULSE_")) + "\n")
    assert Settings(_env_file=env_file).model_dump() == Settings(_env_file=None).model_dump()


def test_config_commands_write_the_template_and_show_settings_with_secrets_masked(tmp_path: Path) -> None:
    output = tmp_path / "env.example"
    env = {**clean_env(), "FINPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FINPULSE_KAFKA_SASL_MECHANISM": "PLAIN",
           "FINPULSE_KAFKA_SASL_PASSWORD": "hunter2", "FINPULSE_NOTIFY_URLS": '["json://alerts.example/hook"]'}
    finpulse = str(VENV_BIN / "finpulse")
    written = subprocess.run([finpulse, "config", "env-example", "--output", str(output)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert written.returncode == 0, written.stderr
    assert output.read_text(encoding="utf-8") == render_env_example()
    shown = subprocess.run([finpulse, "config", "show"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "hunter2" not in shown.stdout and "alerts.example" not in shown.stdout
    lines = shown.stdout.splitlines()
    assert "FINPULSE_KAFKA_SASL_PASSWORD='**********'" in lines and "FINPULSE_NOTIFY_URLS='**********'" in lines
    assert "FINPULSE_KAFKA_SECURITY_PROTOCOL=SASL_SSL" in lines
    assert sorted(line.split("=", 1)[0] for line in lines) == sorted(SETTINGS_VARS)


def test_effective_settings_hide_the_database_password_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("FINPULSE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("FINPULSE_RETRAIN_CRON", "*/5 * * * *")
    monkeypatch.setenv("FINPULSE_DATABASE_URL", "postgresql://finpulse:s3cret@db/finpulse")
    settings = load_settings()
    text = render_effective(settings)
    assert "s3cret" not in text and "FINPULSE_DATABASE_URL=postgresql+psycopg://finpulse:***@db/finpulse" in text
    env_file = tmp_path / ".env"
    env_file.write_text(text, encoding="utf-8")
    for key in ("FINPULSE_RETRAIN_CRON", "FINPULSE_DATABASE_URL"):
        monkeypatch.delenv(key)
    read_back = Settings(_env_file=env_file).model_dump()
    assert read_back.pop("database_url") == "postgresql+psycopg://finpulse:***@db/finpulse"
    assert read_back == settings.model_dump(exclude={"database_url"})


def test_compose_interpolation_variables_are_known_and_defaults_match_settings() -> None:
    compose_vars = {name for name, *_ in COMPOSE_VARIABLES}
    required = {name for name, _, _, is_required in COMPOSE_VARIABLES if is_required}
    seen: set[str] = set()
    for path in COMPOSE_FILES:
        for name, operator, default in INTERPOLATION.findall("\n".join(strings_in(load_yaml(path)))):
            seen.add(name)
            assert name in SETTINGS_VARS | compose_vars, f"{path.name}: ${{{name}}} is neither a setting nor in " \
                                                         "monitor.cli.config.COMPOSE_VARIABLES"
            if operator.endswith("?"):
                assert name in required, f"{path.name}: {name} is required but not marked so in the template"
            if name in SETTINGS_VARS and name not in COMPOSE_OVERRIDES and operator == ":-":
                field = Settings.model_fields[name.removeprefix("FINPULSE_").lower()]
                expected = env_value(field.get_default(call_default_factory=True)).strip("'")
                assert default == expected, f"{path.name}: ${{{name}:-{default}}} differs from the default {expected}"
    assert compose_vars <= seen, f"template lists compose variables no compose file uses: {compose_vars - seen}"
