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

SpecArg = Annotated[Path, typer.Argument(help="Pipeline spec (.yaml, .yml or .json).", show_default=False)]
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
    """Param-level diff of two resolved specs. Exit 0 if they mean the same, 1 if they differ."""
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
    image: Annotated[Path, typer.Argument(help="An image file to augment.", show_default=False)],
    n: Annotated[int, typer.Option("-n", min=1, max=256, help="Number of variants (epochs 0..n-1).")] = 16,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the PNG contact sheet.")] = Path("grid.png"),
    key: Annotated[str | None, typer.Option(help="Sample key (default: the file name).")] = None,
    tile: Annotated[int, typer.Option(min=32, max=1024, help="Tile size in pixels.")] = 192,
) -> None:
    """Write a contact sheet of the original and N deterministic variants, labelled by epoch."""
    from augledger.report.grid import preview_grid
    from augledger.run.imageio import Quarantined, encode_image, read_image

    pipe = _compile(spec)
    try:
        decoded = read_image(str(image))
    except FileNotFoundError:
        raise AugLedgerError(f"image {str(image)!r} does not exist") from None
    except Quarantined as exc:
        raise AugLedgerError(f"cannot use {str(image)!r} ({exc.reason}): {exc}") from None
    grid = preview_grid(pipe, {"image": decoded.image}, key=key or image.name, n=n, tile=tile)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(encode_image(grid, "png"))
    console.print(f"wrote {out} ({n} variants of {image.name}, pipeline {pipe.fingerprint[:19]}…)")
