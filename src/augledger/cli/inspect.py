"""``augledger preview | verify | replay | ledger show``: look at what a pipeline does and did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, SpecArg, app, compile_spec_file, console, err_console, handle_errors
from augledger.errors import LedgerError

ledger_app = typer.Typer(no_args_is_help=True, help="Read ledgers.")
app.add_typer(ledger_app, name="ledger")

SourceOpt = Annotated[Path | None, typer.Option(help="Source folder (or JSON Lines/CSV file), if it moved since the run.", show_default=False)]
AnnotationsOpt = Annotated[Path | None, typer.Option(help="Annotations file, if it moved since the run.", show_default=False)]
MasksOpt = Annotated[Path | None, typer.Option(help="Masks folder, if it moved since the run.", show_default=False)]


def _warn_env(differences: str) -> None:
    if differences:
        err_console.print(f"[yellow]warning:[/] environment differs from the run's: {differences}; "
                          "outputs are byte-identical only under the same environment stamp", highlight=False)


@app.command("preview")
@handle_errors
def preview(
    spec: SpecArg,
    image: Annotated[Path, typer.Argument(metavar="FILE", help="A sample to augment: an image, or for other modalities a .wav/.flac, .txt, or .csv/.parquet table.", show_default=False)],
    n: Annotated[int, typer.Option("-n", min=1, max=256, help="Number of variants (epochs 0..n-1).")] = 16,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Where to write the contact sheet (.png or .jpg; default grid.png); for text, a Markdown table (.md; default: plain text to stdout).", show_default=False)] = None,
    source: Annotated[Path | None, typer.Option(help="The --source of a run: the key is FILE's path relative to it, so epoch c shows the run's copy c.", show_default=False)] = None,
    key: Annotated[str | None, typer.Option(help="The sample key to seed with (default: the path relative to --source, else the file name).", show_default=False)] = None,
    tile: Annotated[int, typer.Option(min=32, max=1024, help="Tile size in pixels.")] = 192,
) -> None:
    """Write a contact sheet of the original and N deterministic variants, labelled by epoch."""
    from augledger.io.image import encode_image, read_image_file
    from augledger.report.grid import preview_grid

    if key is None:
        if source is not None:
            try:
                key = image.resolve().relative_to(source.resolve()).as_posix()
            except ValueError:
                raise typer.BadParameter(f"{str(image)!r} is not inside --source {str(source)!r}", param_hint="IMAGE") from None
        else:
            key = image.name
    pipe = compile_spec_file(spec)
    if pipe.modality == "tabular":  # per-column distributions before and after (report/tabular.py)
        from augledger.report.tabular import preview_table_file

        typer.echo(preview_table_file(pipe, image, out=out), nl=False)
        return
    if pipe.modality == "text":  # a before/after table (report/text.py)
        from augledger.report.text import preview_text_file

        typer.echo(preview_text_file(pipe, image, key=key, n=n, out=out), nl=False)
        return
    if pipe.modality == "audio":  # waveform and spectrogram rows (report/audio.py)
        from augledger.report.audio import preview_audio_file

        console.print(preview_audio_file(pipe, image, key=key, n=n, out=out or Path("grid.png")), highlight=False)
        return
    out = out or Path("grid.png")
    fmt = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}.get(out.suffix.lower())
    if fmt is None:
        raise typer.BadParameter(f"must end in .png, .jpg or .jpeg; got {out.name!r}", param_hint="-o")
    decoded = read_image_file(image)
    grid = preview_grid(pipe, {"image": decoded}, key=key, n=n, tile=tile)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_image(grid, fmt))
    console.print(f"wrote {out} ({n} variants of key {key!r}, pipeline {pipe.fingerprint[:19]}…)", highlight=False)


@app.command("verify")
@handle_errors
def verify_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder of `augledger run` (or an online ledger).", show_default=False)],
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="Re-derive N outputs (deterministic spread).")] = None,
    source: SourceOpt = None,
    annotations: AnnotationsOpt = None,
    masks: MasksOpt = None,
    public_key: Annotated[Path | None, typer.Option("--public-key", metavar="PUB", help="Also require OUT/manifest.sig, made by this key's private key (see `augledger sign`); a missing or bad signature fails.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a dataset against its ledger and re-derive outputs from the source. Exit 0 only if all match.

    With --public-key, first check the manifest's signature (exit 1 if it is missing or does not verify).
    """
    from augledger.run.signing import SIGNATURE, verify_signature
    from augledger.run.verify import verify

    signed = verify_signature(out, public_key) if public_key is not None else None
    report = verify(out, sample=sample, source=source, annotations=annotations, masks=masks)
    if as_json:
        signature = {"public_key_sha256": signed.public_key_sha256, "manifest_sha256": signed.manifest_sha256} if signed else None
        typer.echo(json.dumps({"ok": report.ok, "checked": report.checked, "env_differences": report.env_differences,
                               "problems": [p.__dict__ for p in report.problems], "signature": signature}))
    else:
        _warn_env(report.env_differences)
        if signed is not None:
            console.print(f"signature: manifest.json signed by key {signed.public_key_sha256}", highlight=False)
        elif (out / SIGNATURE).is_file():
            console.print(f"note: {SIGNATURE} not checked (pass --public-key PUB to check it)", highlight=False)
        for p in report.problems:
            where = "" if p.key == "*" else f"{escape(p.key)} copy {p.epoch}: "
            console.print(f"[red]MISMATCH[/] {where}{escape(p.message)}", highlight=False)
        verdict = "[green]verified[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        console.print(f"{verdict}: {report.checked} output(s) checked against {report.fingerprint[:19]}…")
    if not report.ok:
        raise typer.Exit(1)


@app.command("replay")
@handle_errors
def replay_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder of `augledger run`.", show_default=False)],
    key: Annotated[str, typer.Argument(metavar="KEY", help="Sample key (path relative to the source).", show_default=False)],
    copy: Annotated[int, typer.Option("--copy", "--epoch", help="Copy index (-1: the original).")] = 0,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the reproduced file here (its mask, if any, beside it as <name>.mask.png).")] = None,
    source: SourceOpt = None,
    annotations: AnnotationsOpt = None,
    masks: MasksOpt = None,
) -> None:
    """Reproduce one output byte for byte from the source and print the params it received."""
    from augledger.run.manifest import read_manifest
    from augledger.run.verify import replay_output

    if read_manifest(out).get("modality") == "tabular":  # one row of a table, re-made with the whole table
        from augledger.run.table_verify import replay_table_row

        stored = replay_table_row(out, key, copy, source=source)
        typer.echo(json.dumps({"key": key, "copy": copy, "matches": True, "row": stored}, indent=2, default=str))
        return

    replayed = replay_output(out, key, copy, source=source, annotations=annotations, masks=masks)
    _warn_env(replayed.env_differences)
    row = replayed.row
    if not replayed.stored_matches:
        err_console.print(f"[yellow]warning:[/] the file stored in the folder ({escape(str(row['output_path']))}) no longer "
                          "matches the ledger; the reproduction does (run `augledger verify`)", highlight=False)
    written = []
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(replayed.data)
        written.append(str(output))
        if replayed.mask is not None:
            mask_file = output.with_name(output.stem + ".mask.png")
            mask_file.write_bytes(replayed.mask)
            written.append(str(mask_file))
    typer.echo(json.dumps({"key": key, "copy": copy, "seed": row["seed"], "output_digest": row["output_digest"],
                           "fingerprint": row.get("fingerprint"), "variant": row.get("variant"),
                           "stored_matches": replayed.stored_matches, "written_to": written or None,
                           "ops": replayed.ops}, indent=2))


@ledger_app.command("show")
@handle_errors
def ledger_show(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Output folder, online ledger folder or ledger .parquet file.", show_default=False)],
    key: Annotated[str | None, typer.Argument(metavar="KEY", help="Only this sample key.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show at most.")] = 50,
    variant: Annotated[str | None, typer.Option("--variant", help="Only rows of this variant (runs with --variant).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print ledger rows readably (or as JSON lines, ``ops`` and ``targets`` as JSON)."""
    from rich.table import Table

    from augledger.ledger.parquet import read_ledger

    ledger = read_ledger(path)
    rows = ledger.find(key) if key is not None else ledger.rows()
    names = sorted({str(r["variant"]) for r in (ledger.rows() if key is not None else rows) if r.get("variant")})
    if variant is not None:
        if variant not in names:
            raise LedgerError(f"no variant {variant!r} in this ledger; its variants: {', '.join(names) or 'none'}")
        rows = [r for r in rows if r.get("variant") == variant]
    total = len(rows) if variant is not None else len(ledger)
    rows = rows if key is not None else rows[:limit]
    if key is not None and not rows:
        raise LedgerError(f"no rows for key {key!r} in this ledger; keys are paths relative to the source "
                          "(list them with `augledger ledger show` without a key)")
    if as_json:
        for row in rows:
            decoded = {**row, **{c: json.loads(row[c]) if row[c] is not None else None for c in ("ops", "targets")}}
            typer.echo(json.dumps(decoded, sort_keys=True))
        return
    console.print(f"ledger of {ledger.fingerprint[:19]}… ({ledger.header.get('kind', '?')}, seed "
                  f"{ledger.header.get('seed')}): {len(rows)} of {total} rows shown", highlight=False)
    # Offline runs index outputs by copy; an online ledger by training epoch (the same seeding input).
    columns = ["key", "epoch" if ledger.header.get("kind") == "online" else "copy", *(["variant"] if names else []),
               "status", "ops / error"]
    table = Table(*columns, show_lines=False)
    for row in rows:
        if row["status"] == "ok":
            ops = json.loads(row["ops"] or "[]")
            detail = ", ".join(
                op["op"].split(".")[-1] + "(" + ", ".join(f"{k}={_short(v)}" for k, v in op["params"].items()) + ")"
                for op in ops
            ) or "(none applied)"
        else:
            detail = str(row["error"])
        cells = [escape(row["key"]), str(row["epoch"]), *([escape(str(row.get("variant") or "-"))] if names else []),
                 row["status"], escape(detail)]
        table.add_row(*cells)
    console.print(table)
    if key is None and total > limit:
        console.print(f"… {total - limit} more rows (--limit, or pass a KEY)")


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict) and "array" in value:
        return "array" + "x".join(str(s) for s in value["array"]["shape"])
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    return str(value)
