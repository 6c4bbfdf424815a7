"""The tabular branch of ``augledger run`` (``modality: tabular``): one table in, one Parquet table out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from augledger.cli._app import console

__all__ = ["run_tabular"]


def run_tabular(pipe: Any, source: Path, out: Path, *, key_field: str | None, label_field: str | None, copies: int,
                as_json: bool) -> None:
    """Run :func:`augledger.run.table.run_table` and print its summary."""
    from augledger.run.table import run_table

    if key_field is None:
        raise typer.BadParameter("a tabular run needs the column of each row's key: --key-field id", param_hint="--key-field")
    result = run_table(pipe, source, out, key_field=key_field, label_field=label_field, copies=copies,
                       command=["augledger", *sys.argv[1:]])
    m = result.manifest
    if as_json:
        typer.echo(json.dumps({k: m[k] for k in ("fingerprint", "seed", "counts", "quarantined")} | {"seconds": result.run["seconds"]}))
        return
    c = m["counts"]
    console.print(f"[bold]{escape(str(out))}[/]: {c['outputs']} rows ({c['original']} original, {c['augmented']} augmented, "
                  f"{c['synthetic']} synthetic) from {m['source']['rows']} source rows in {result.run['seconds']:.1f}s, "
                  f"pipeline {m['fingerprint'][:19]}…, seed {m['seed']}", highlight=False)
    for name, counts in c["classes"].items():
        console.print(f"  classes {name}: " + ", ".join(f"{escape(k)}={v}" for k, v in counts.items()), highlight=False)
