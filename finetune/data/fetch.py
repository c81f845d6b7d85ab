"""``finpulse data fetch``: install the public data sets into a data directory, checked against pinned SHA-256s.

Each file of :data:`finetune.data.public.PUBLIC_FILES` comes from a local copy laid out like ``../shared/data``
(``source=DIR``, ``--from``) or from GitHub at its pinned commit (:mod:`finetune.data.download`). A file whose
SHA-256 differs from its pin is refused: it is never written under its name, and the refusal is one line naming
the file, both digests and the fix. Writes are atomic (a temporary file in the same folder, then a rename), so an
interrupted fetch leaves no half file behind. A file already in place with the pinned digest is kept as it is, so
fetching into a complete directory only re-verifies it. ``manifest.json`` lists every verified file with its
source, revision, SHA-256, size and license.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from finetune.data.public import DATASETS, PUBLIC_FILES, PublicFile
from monitor.core.errors import ConfigError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


class Downloader(Protocol):
    def content(self, item: PublicFile) -> bytes: ...


@dataclass
class Installed:
    file: PublicFile
    status: str  # "fetched" (written now) or "verified" (already in place with the pinned digest)
    sha256: str
    size: int


@dataclass
class FetchResult:
    dest: Path
    installed: list[Installed] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # one line each: the file, both digests, the fix
    manifest: Path | None = None


class _Mismatch(Exception):
    def __init__(self, sha256: str) -> None:
        super().__init__(sha256)
        self.sha256 = sha256


def select(only: Sequence[str] = (), files: Sequence[PublicFile] = PUBLIC_FILES) -> list[PublicFile]:
    """The files of the named data sets (all when ``only`` is empty)."""
    known = tuple(dict.fromkeys(f.dataset for f in files)) or DATASETS
    wanted = [name.strip() for item in only for name in item.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(f"--only {','.join(unknown)}: unknown data set; expected one of {', '.join(known)}")
    return [f for f in files if not wanted or f.dataset in wanted]


def fetch(dest: Path, *, source: Path | None = None, only: Sequence[str] = (),
          files: Sequence[PublicFile] = PUBLIC_FILES, downloader: Downloader | None = None) -> FetchResult:
    """Install the selected files into ``dest`` from ``source`` (a local copy) or ``downloader`` (default:
    GitHub), then write ``dest/manifest.json``. Refusals are returned, not raised, so one bad file does not stop
    the others; the caller reports them and fails."""
    if source is not None and not source.is_dir():
        raise ConfigError(f"--from {source}: not a directory; expected a copy laid out like ../shared/data "
                          f"({', '.join(DATASETS)})")
    result = FetchResult(dest)
    for item in select(only, files):
        target = dest / item.name
        if target.is_file():
            found, size = _digest_file(target)
            if found == item.sha256:
                result.installed.append(Installed(item, "verified", found, size))
                continue
            log.warning("%s: SHA-256 %s differs from the pin %s; fetching it again", target, found, item.sha256)
        try:
            found, size = _install(item, target, source, downloader, dest)
        except _Mismatch as mismatch:
            origin = source / item.name if source is not None else item.source
            fix = (f"restore an unmodified copy at {origin} or fetch without --from (downloads from {item.repo})"
                   if source is not None else "the upstream file or its conversion changed (pins in "
                   "finetune/data/public.py); install a verified copy with --from DIR")
            result.refused.append(f"{item.name}: SHA-256 {mismatch.sha256} (from {origin}) is not the pinned "
                                  f"{item.sha256}; the file was not kept; fix: {fix}")
            continue
        except FileNotFoundError:
            result.refused.append(f"{source / item.name if source else item.name}: not found; --from expects a copy "
                                  f"laid out like ../shared/data; fix: add the file, or leave its data set out with "
                                  f"--only {','.join(d for d in DATASETS if d != item.dataset)}")
            continue
        result.installed.append(Installed(item, "fetched", found, size))
    result.manifest = write_manifest(dest, files)
    return result


def _install(item: PublicFile, target: Path, source: Path | None, downloader: Downloader | None,
             dest: Path) -> tuple[str, int]:
    if source is not None:
        return _atomic_write(target, _read_chunks(source / item.name), item.sha256)
    if downloader is None:
        from finetune.data.download import GitHubDownloader  # lazy: httpx only on the online path

        downloader = GitHubDownloader(work_dir=dest)
    return _atomic_write(target, [downloader.content(item)], item.sha256)


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:  # FileNotFoundError when absent: reported as a missing file
        while chunk := handle.read(_CHUNK):
            yield chunk


def _atomic_write(target: Path, chunks: Iterable[bytes], expected: str) -> tuple[str, int]:
    """Write to a temporary file beside ``target``, hashing as it goes; rename it into place only when the digest
    is the pinned one, else delete it and raise :class:`_Mismatch`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    temporary = Path(name)
    digest, size = hashlib.sha256(), 0
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise _Mismatch(digest.hexdigest())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; data files are plain readable files
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return digest.hexdigest(), size


def _digest_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in _read_chunks(path):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def write_manifest(dest: Path, files: Sequence[PublicFile] = PUBLIC_FILES) -> Path:
    """``dest/manifest.json``: every known file present in ``dest`` with its pinned digest (data sets fetched
    earlier stay listed). Rewritten only when its content changes, so a re-verifying fetch writes nothing."""
    entries = []
    for item in files:
        path = dest / item.name
        if path.is_file():
            found, size = _digest_file(path)
            if found == item.sha256:
                entries.append(item.manifest_entry(found, size))
    text = json.dumps({"format": 1, "written_by": "finpulse data fetch", "files": entries}, indent=2) + "\n"
    manifest = dest / MANIFEST
    if not manifest.is_file() or manifest.read_text(encoding="utf-8") != text:
        _atomic_text(manifest, text)
    return manifest


def _atomic_text(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    _atomic_write(target, [data], hashlib.sha256(data).hexdigest())
