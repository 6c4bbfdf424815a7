"""Typer application: argument parsing, one API call per command, rendering, exit codes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from augledger.errors import AugLedgerError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reproducible, versioned data augmentation: validate specs, materialise and verify datasets.",
)
spec_app = typer.Typer(no_args_is_help=True, help="Validate, fingerprint and compare pipeline specs.")
app.add_typer(spec_app, name="spec")

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

SpecArg = Annotated[Path, typer.Argument(metavar="SPEC", help="Pipeline spec (.yaml, .yml or .json).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def handle_errors(func: F) -> F:
    """Turn augledger errors into a one-paragraph message on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AugLedgerError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _compile(path: Path) -> Any:
    import augledger

    return augledger.compile(augledger.load_spec(path))


@spec_app.command("validate")
@handle_errors
def spec_validate(spec: SpecArg, as_json: JsonOpt = False) -> None:
    """Check a spec: schema, allowed ops, param names and values. Exit 1 if invalid."""
    pipe = _compile(spec)
    if as_json:
        typer.echo(json.dumps({"valid": True, "name": pipe.name, "fingerprint": pipe.fingerprint}))
    else:
        n_ops = len(pipe.resolved_spec["ops"])
        console.print(f"[green]valid[/] {spec}: {pipe.name!r}, {n_ops} top-level ops, {pipe.fingerprint}")


@spec_app.command("hash")
@handle_errors
def spec_hash(spec: SpecArg) -> None:
    """Print the fingerprint: SHA-256 of the resolved spec (the pipeline's version)."""
    typer.echo(_compile(spec).fingerprint)


@spec_app.command("resolve")
@handle_errors
def spec_resolve(spec: SpecArg) -> None:
    """Print the resolved spec (every default filled in) as JSON: exactly what is fingerprinted."""
    typer.echo(json.dumps(_compile(spec).resolved_spec, indent=2, sort_keys=True))


@spec_app.command("diff")
@handle_errors
def spec_diff(a: SpecArg, b: SpecArg, as_json: JsonOpt = False) -> None:
    """Param-level diff of two resolved specs.

    Exit 0 if the resolved specs are identical, 1 if anything differs (name, description and seed
    included); the last line says whether the differences change the fingerprint.
    """
    from augledger.spec import UNHASHED_FIELDS, diff_resolved

    pa, pb = _compile(a), _compile(b)
    changes = diff_resolved(pa.resolved_spec, pb.resolved_spec)
    if as_json:
        typer.echo(json.dumps({
            "same_fingerprint": pa.fingerprint == pb.fingerprint,
            "changes": [{"location": loc, "a": x, "b": y} for loc, x, y in changes],
        }))
    else:
        for loc, x, y in changes:
            label = " (not fingerprinted)" if loc.split(".")[0] in UNHASHED_FIELDS else ""
            console.print(f"{loc}{label}: [red]{json.dumps(x)}[/] -> [green]{json.dumps(y)}[/]", highlight=False)
        verdict = "same fingerprint" if pa.fingerprint == pb.fingerprint else "different fingerprints"
        console.print(f"{len(changes)} difference(s); {verdict}: {pa.fingerprint[:19]}… vs {pb.fingerprint[:19]}…")
    if changes:
        raise typer.Exit(1)


@spec_app.command("schema")
def spec_schema() -> None:
    """Print the JSON Schema of a spec (for editor completion and validation)."""
    from augledger.spec import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))


@app.command("preview")
@handle_errors
def preview(
    spec: SpecArg,
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="An image file to augment.", show_default=False)],
    n: Annotated[int, typer.Option("-n", min=1, max=256, help="Number of variants (epochs 0..n-1).")] = 16,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the contact sheet (.png or .jpg).")] = Path("grid.png"),
    key: Annotated[str | None, typer.Option(help="Sample key (default: the file name).")] = None,
    tile: Annotated[int, typer.Option(min=32, max=1024, help="Tile size in pixels.")] = 192,
) -> None:
    """Write a contact sheet of the original and N deterministic variants, labelled by epoch."""
    from augledger.report.grid import preview_grid
    from augledger.run.imageio import Quarantined, encode_image, read_image

    fmt = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg"}.get(out.suffix.lower())
    if fmt is None:
        raise typer.BadParameter(f"must end in .png, .jpg or .jpeg; got {out.name!r}", param_hint="-o")
    pipe = _compile(spec)
    try:
        decoded = read_image(str(image))
    except FileNotFoundError:
        raise AugLedgerError(f"image {str(image)!r} does not exist") from None
    except Quarantined as exc:
        raise AugLedgerError(f"cannot use {str(image)!r} ({exc.reason}): {exc}") from None
    grid = preview_grid(pipe, {"image": decoded.image}, key=key or image.name, n=n, tile=tile)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_image(grid, fmt))
    console.print(f"wrote {out} ({n} variants of {image.name}, pipeline {pipe.fingerprint[:19]}…)")


# -- the main job ------------------------------------------------------------------------------------

ledger_app = typer.Typer(no_args_is_help=True, help="Read ledgers.")
app.add_typer(ledger_app, name="ledger")


class _Progress:
    """A rich progress bar (rate, ETA) on a terminal; a log line every 10 s (or 10%) otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._start = 0.0
        self._first = -1
        self._last = 0.0
        self._last_fraction = 0.0

    def __enter__(self) -> _Progress:
        import time

        self._start = time.monotonic()
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[progress.percentage]{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err_console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=None, rate="")
        return self

    def __call__(self, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if self._first < 0:
            self._first = done  # outputs a resumed run found complete do not count toward the rate
        elapsed = now - self._start
        rate = (done - self._first) / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, rate=f"{rate:.1f}/s")
            return
        fraction = done / total if total else 1.0
        if now - self._last >= 10 or fraction - self._last_fraction >= 0.1 or done == total:
            self._last, self._last_fraction = now, fraction
            eta = f", ETA {(total - done) / rate:.0f}s" if rate > 0 and done < total else ""
            err_console.print(f"{self.label}: {done}/{total} outputs ({100 * fraction:.0f}%), {rate:.1f}/s{eta}",
                              highlight=False)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@app.command("run")
@handle_errors
def run(
    spec: SpecArg,
    source: Annotated[Path, typer.Option("--source", help="Folder of images (keys are paths relative to it).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (new, empty, or one to resume).")],
    copies: Annotated[int, typer.Option(min=1, help="Augmented copies per image (copy c uses epoch c).")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; outputs do not depend on it.")] = 1,
    include_original: Annotated[bool, typer.Option("--include-original", help="Also store each source file unchanged.")] = False,
    fmt: Annotated[str, typer.Option("--format", help="folder or webdataset (tar shards).")] = "folder",
    image_format: Annotated[str, typer.Option(help="Encoding of augmented images: png or jpg.")] = "png",
    annotations: Annotated[Path | None, typer.Option(help="CSV/JSONL of labels, bboxes, keypoints, masks.")] = None,
    max_pixels: Annotated[int, typer.Option(min=1, help="Refuse larger images (decompression bombs).")] = 178_956_970,
    shard_size: Annotated[int, typer.Option(min=1, help="Samples per webdataset shard.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Materialise an augmented dataset with a manifest and a Parquet ledger.

    Exit codes: 0 all outputs written; 3 finished, but some samples were quarantined (listed, with
    reasons, in the summary, manifest.json and the ledger); 1 the run could not start or failed.
    A killed run resumes when started again with the same command.
    """
    from augledger.run.materialize import RunOptions, materialize

    if fmt not in ("folder", "webdataset"):
        raise typer.BadParameter(f"must be 'folder' or 'webdataset'; got {fmt!r}", param_hint="--format")
    if image_format not in ("png", "jpg"):
        raise typer.BadParameter(f"must be 'png' or 'jpg'; got {image_format!r}", param_hint="--image-format")
    pipe = _compile(spec)
    options = RunOptions(
        copies=copies, workers=workers, include_original=include_original, format=fmt,  # type: ignore[arg-type]
        image_format=image_format, max_pixels=max_pixels, shard_max_count=shard_size,  # type: ignore[arg-type]
    )
    with _Progress(f"augmenting {pipe.fingerprint[7:19]}") as progress:
        result = materialize(pipe, source, out, options=options, annotations=annotations, progress=progress,
                             command=["augledger", *sys.argv[1:]])
    m = result.manifest
    if as_json:
        typer.echo(json.dumps({**{k: m[k] for k in ("fingerprint", "seed", "counts", "quarantined", "seconds")},
                               "reused": result.reused}))
    else:
        c = m["counts"]
        console.print(f"[bold]{out}[/]: {c['ok']} outputs from {m['source']['images']} images in {m['seconds']:.1f}s, "
                      f"pipeline {m['fingerprint'][:19]}…, seed {m['seed']}", highlight=False)
        if result.reused:
            console.print(f"resumed: {result.reused} output(s) were already complete and verified; "
                          f"{c['outputs'] - result.reused} made now", highlight=False)
        if result.quarantined:
            console.print(f"[yellow]{c['quarantined_keys']} sample(s) quarantined[/] ({c['quarantined']} outputs):")
            seen = set()
            for q in result.quarantined:
                if q["key"] not in seen:
                    seen.add(q["key"])
                    console.print(f"  {escape(q['key'])}: {escape(q['error'])}", highlight=False)
    raise typer.Exit(result.exit_code)


@app.command("verify")
@handle_errors
def verify_cmd(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Output folder of `augledger run`.", show_default=False)],
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="Check N outputs (deterministic spread).")] = None,
    source: Annotated[Path | None, typer.Option(help="Source folder, if it moved since the run.")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Annotations file, if it moved since the run.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-derive outputs from the source and the ledger and compare digests. Exit 0 only if all match."""
    from augledger.run.verify import verify

    report = verify(out, sample=sample, source=source, annotations=annotations)
    if as_json:
        typer.echo(json.dumps({"ok": report.ok, "checked": report.checked, "env_differences": report.env_differences,
                               "problems": [p.__dict__ for p in report.problems]}))
    else:
        if report.env_differences:
            err_console.print(f"[yellow]warning:[/] environment differs from the run's: {report.env_differences}; "
                              "outputs are byte-identical only under the same environment stamp", highlight=False)
        for p in report.problems:
            console.print(f"[red]MISMATCH[/] {escape(p.key)} copy {p.epoch}: {escape(p.message)}", highlight=False)
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
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the reproduced file here.")] = None,
    source: Annotated[Path | None, typer.Option(help="Source folder, if it moved since the run.")] = None,
    annotations: Annotated[Path | None, typer.Option(help="Annotations file, if it moved since the run.")] = None,
) -> None:
    """Reproduce one output byte for byte from the source and print the params it received."""
    from augledger.run.verify import replay_output

    encoded, row, ops = replay_output(out, key, copy, source=source, annotations=annotations)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(encoded)
    typer.echo(json.dumps({"key": key, "copy": copy, "seed": row["seed"], "output_digest": row["output_digest"],
                           "written_to": str(output) if output else None, "ops": ops}, indent=2))


@ledger_app.command("show")
@handle_errors
def ledger_show(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Output folder, online ledger folder or ledger .parquet file.", show_default=False)],
    key: Annotated[str | None, typer.Argument(metavar="KEY", help="Only this sample key.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show at most.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Print ledger rows readably (or as JSON lines)."""
    from rich.table import Table

    from augledger.ledger import read_ledger

    ledger = read_ledger(path)
    rows = ledger.find(key) if key is not None else ledger.rows()[:limit]
    if key is not None and not rows:
        from augledger.errors import LedgerError

        raise LedgerError(f"no rows for key {key!r} in this ledger; keys are paths relative to the source "
                          "(list them with `augledger ledger show` without a key)")
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, sort_keys=True))
        return
    console.print(f"ledger of {ledger.fingerprint[:19]}… ({ledger.header.get('kind', '?')}, seed "
                  f"{ledger.header.get('seed')}): {len(rows)} of {len(ledger)} rows shown", highlight=False)
    # Offline runs index outputs by copy; an online ledger by training epoch (the same seeding input).
    table = Table("key", "epoch" if ledger.header.get("kind") == "online" else "copy", "status", "ops / error",
                  show_lines=False)
    for row in rows:
        if row["status"] == "ok":
            ops = json.loads(row["ops"] or "[]")
            detail = ", ".join(
                op["op"].split(".")[-1] + "(" + ", ".join(f"{k}={_short(v)}" for k, v in op["params"].items()) + ")"
                for op in ops
            ) or "(none applied)"
        else:
            detail = str(row["error"])
        table.add_row(escape(row["key"]), str(row["epoch"]), row["status"], escape(detail))
    console.print(table)
    if key is None and len(ledger) > limit:
        console.print(f"… {len(ledger) - limit} more rows (--limit, or pass a KEY)")


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
