"""The online half of ``finpulse data fetch``: upstream files from GitHub at pinned commits, then converted.

Single files come from ``raw.githubusercontent.com/<repo>/<commit>/<path>``; the StockNet stream is built from the
repository archive at its commit (``codeload.github.com/<repo>/tar.gz/<commit>``, its 29,250 raw tweet files in one
download). Every result is checked against its pin by :mod:`finetune.data.fetch` before it is kept.

This path could not be exercised against GitHub where it was written (no internet there): the tests run it against
a local HTTP server that serves the canonical upstream files under the same URL layout, which covers the requests,
the SEntFiN conversion and the checks, but not GitHub itself nor the FiNER-ORD and StockNet conversions.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import httpx

from finetune.data.convert import CONVERTERS, stocknet_stream
from finetune.data.public import PublicFile
from monitor.core.errors import DataError

log = logging.getLogger(__name__)

RAW_BASE = "https://raw.githubusercontent.com"
ARCHIVE_BASE = "https://codeload.github.com"
_HINT = "check the network or proxy (HTTPS_PROXY), or install from a local copy with --from DIR"


class GitHubDownloader:
    """Downloads (and converts) each :class:`PublicFile`; an upstream input used twice is downloaded once."""

    def __init__(self, work_dir: Path, raw_base: str = RAW_BASE, archive_base: str = ARCHIVE_BASE,
                 timeout_s: float = 60.0) -> None:
        self.work_dir = work_dir
        self.raw_base = raw_base.rstrip("/")
        self.archive_base = archive_base.rstrip("/")
        self.timeout = httpx.Timeout(timeout_s)
        self._cache: dict[str, bytes] = {}

    def content(self, item: PublicFile) -> bytes:
        if item.convert == "stocknet_stream":
            return self._from_archive(item)
        raw = self._get(f"{self.raw_base}/{item.repo}/{item.revision}/{item.path}")
        return CONVERTERS[item.convert](raw) if item.convert else raw

    def _get(self, url: str) -> bytes:
        if url not in self._cache:
            log.info("GET %s", url)
            try:
                response = httpx.get(url, timeout=self.timeout, follow_redirects=True)
            except httpx.HTTPError as error:
                raise DataError(f"{url}: download failed ({type(error).__name__}: {error}); {_HINT}") from None
            if response.status_code != 200:
                raise DataError(f"{url}: HTTP {response.status_code}; {_HINT}")
            self._cache[url] = response.content
        return self._cache[url]

    def _from_archive(self, item: PublicFile) -> bytes:
        url = f"{self.archive_base}/{item.repo}/tar.gz/{item.revision}"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".archive-", suffix=".tar.gz", dir=self.work_dir)
        archive = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                log.info("GET %s (the repository archive: a few hundred MB)", url)
                try:
                    with httpx.stream("GET", url, timeout=self.timeout, follow_redirects=True) as response:
                        if response.status_code != 200:
                            raise DataError(f"{url}: HTTP {response.status_code}; {_HINT}")
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
                except httpx.HTTPError as error:
                    raise DataError(f"{url}: download failed ({type(error).__name__}: {error}); {_HINT}") from None
            return stocknet_stream(archive)
        finally:
            archive.unlink(missing_ok=True)
