"""``finpulse data fetch``: the public training and evaluation data sets, pinned and checksummed, in one folder.

Imports only typer at module level; the fetch logic (:mod:`finetune.data.fetch`) loads inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(help="Public data sets: fetch them with pinned revisions and SHA-256 checks.",
                       no_args_is_help=True)


@data_app.command("fetch")
def fetch_command(
    dest: Annotated[Path, typer.Option(help="Data directory to fill (laid out like ../shared/data).")]
    = Path("var/data"),
    source: Annotated[Path | None, typer.Option("--from", help="Take the files from this local copy (laid out "
                                                 "like ../shared/data) instead of downloading them.")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Only these data sets (repeat or comma-separate): tfns, "
                                                  "sentfin, sec_ner, finer_ord, stocknet_stream.")] = None,
) -> None:
    """Install TFNS, SEntFiN, SEC NER, FiNER-ORD and the StockNet stream into DEST with a manifest.json.

    Every file is checked against a SHA-256 pinned in finetune/data/public.py; a file that differs is refused and
    not kept. Files already in DEST with the pinned digest are only re-verified. Without --from, downloads from
    GitHub at pinned commits. FiNER-ORD is CC BY-NC 4.0 (non-commercial use only); see the manifest's licenses.
    """
    from finetune.data.fetch import fetch  # lazy: startup

    result = fetch(dest, source=source, only=only or ())
    for item in result.installed:
        typer.echo(f"{item.status:8}  {item.file.name:45}  {item.size:>11,} B  sha256 {item.sha256[:16]}")
    if result.manifest is not None:
        typer.echo(f"manifest: {result.manifest} ({len(result.installed)} files checked in this run)")
    for line in result.refused:
        typer.echo(f"error: {line}", err=True)
    if result.refused:
        raise typer.Exit(2)
