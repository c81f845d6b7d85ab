"""docker/compose.yaml: structure, healthchecks, volumes, and every service command a real finpulse command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from monitor.cli import healthcheck
from tests.deploy.files import DOCKER, VENV_BIN, clean_env, compose, depends_on, is_finpulse_service, load_yaml, stages


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
        # Four eyes in production: retraining (the scheduler, or `finpulse retrain` in any service) never promotes
        # on its own unless docker/.env says FINPULSE_RETRAIN_PROMOTION=auto.
        assert env["FINPULSE_RETRAIN_PROMOTION"] == "${FINPULSE_RETRAIN_PROMOTION:-approve}", name


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
