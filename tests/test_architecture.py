"""The architecture holds: the import-linter layers, no import cycles, documented lazy imports, small modules.

The layers live in pyproject.toml (``[tool.importlinter]``); README "Architecture" draws them.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "finetune", "monitor", "dashboards")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
MAX_LINES = 300


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so that grimp analyses the packages under ``root`` rather than the installed (editable) ones.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def modules() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (REPO / package).rglob("*.py")
                  if "versions" not in path.parts)


def test_the_layer_contract_is_kept() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_import_against_the_layers_breaks_the_contract(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    sink = tmp_path / "monitor" / "stream" / "sink.py"
    sink.write_text(sink.read_text(encoding="utf-8") + "\nfrom monitor.bench.probe import rss_kib  # noqa\n",
                    encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "monitor.stream is not allowed to import monitor.bench" in result.stdout
    assert "monitor.stream.sink -> monitor.bench.probe" in result.stdout


def import_cycles(*packages: str) -> list[str]:
    """Each module import that the imported module leads back from, as ``a -> b -> ... -> a``."""
    graph = grimp.build_graph(*packages, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" -> ".join((module, *back)))
    return cycles


def test_no_module_import_cycles() -> None:
    cycles = import_cycles(*PACKAGES)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_check_sees_a_cycle_hidden_in_a_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from cyclic import b\n")
    (package / "b.py").write_text("def f():\n    from cyclic import a  # lazy: dodging a cycle is still a cycle\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("cyclic") == ["cyclic.a -> cyclic.b -> cyclic.a", "cyclic.b -> cyclic.a -> cyclic.b"]


def function_level_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, source)`` of each import of a finpulse package inside a function (TYPE_CHECKING blocks aside)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and (inner.module or "").split(".")[0] in PACKAGES:
                found.append((inner.lineno, "\n".join(lines[inner.lineno - 1:inner.end_lineno])))
            elif isinstance(inner, ast.Import) and any(a.name.split(".")[0] in PACKAGES for a in inner.names):
                found.append((inner.lineno, lines[inner.lineno - 1]))
    return found


def test_function_level_imports_are_documented_lazy_imports() -> None:
    # Allowed only to keep start-up fast (`finpulse --help`, the CLI's command modules) or to defer torch and
    # streamlit, and then marked `# lazy: <why>`; never to dodge an import cycle (the test above would see it).
    undocumented = [f"{path.relative_to(REPO)}:{line}: {text.strip()}" for path in modules()
                    for line, text in function_level_imports(path) if "# lazy:" not in text]
    assert not undocumented, "function-level imports without a `# lazy: <why>` comment:\n" + "\n".join(undocumented)


def test_the_lazy_import_check_sees_an_undocumented_one(tmp_path: Path) -> None:
    module = tmp_path / "example.py"
    module.write_text("def f():\n    from monitor.core import db\n    from monitor.core import logs  # lazy: x\n",
                      encoding="utf-8")
    assert [line for line, text in function_level_imports(module) if "# lazy:" not in text] == [2]


@pytest.mark.parametrize("folder", [*PACKAGES, "tests"])
def test_no_module_is_over_300_lines(folder: str) -> None:
    long = {str(path.relative_to(REPO)): n for path in sorted((REPO / folder).rglob("*.py"))
            if "versions" not in path.parts and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by role): {long}"


def test_every_subpackage_says_what_it_is_for_and_what_it_may_import() -> None:
    missing = []
    for init in sorted(path for package in PACKAGES for path in (REPO / package).rglob("__init__.py")):
        if "pages" in init.parts or "migrations" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        if "import" not in doc.lower():
            missing.append(str(init.relative_to(REPO)))
    assert not missing, f"__init__.py without a docstring naming what the room may import: {missing}"
