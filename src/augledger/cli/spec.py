"""``augledger spec ...``: validate, fingerprint, resolve, compare and describe specs."""

from __future__ import annotations

import json
from typing import Any

import typer

from augledger.cli._app import JsonOpt, SpecArg, app, compile_spec_file, console, handle_errors

spec_app = typer.Typer(no_args_is_help=True, help="Validate, fingerprint and compare pipeline specs.")
app.add_typer(spec_app, name="spec")


@spec_app.command("validate")
@handle_errors
def spec_validate(spec: SpecArg, as_json: JsonOpt = False) -> None:
    """Check a spec: schema, allowed ops, param names and values. Exit 1 if invalid."""
    pipe = compile_spec_file(spec, allow_retired=True)
    if as_json:
        typer.echo(json.dumps({"valid": True, "name": pipe.name, "fingerprint": pipe.fingerprint}))
    else:
        n_ops = len(pipe.resolved_spec["ops"])
        console.print(f"[green]valid[/] {spec}: {pipe.name!r}, {n_ops} top-level ops, {pipe.fingerprint}")


@spec_app.command("hash")
@handle_errors
def spec_hash(spec: SpecArg) -> None:
    """Print the fingerprint: SHA-256 of the resolved spec (the pipeline's version)."""
    typer.echo(compile_spec_file(spec, allow_retired=True).fingerprint)


@spec_app.command("resolve")
@handle_errors
def spec_resolve(spec: SpecArg) -> None:
    """Print the resolved spec (every default filled in) as JSON: exactly what is fingerprinted."""
    typer.echo(json.dumps(compile_spec_file(spec, allow_retired=True).resolved_spec, indent=2, sort_keys=True))


@spec_app.command("diff")
@handle_errors
def spec_diff(a: SpecArg, b: SpecArg, as_json: JsonOpt = False) -> None:
    """Param-level diff of two resolved specs.

    Exit 0 if the resolved specs are identical, 1 if anything differs (name, description and seed
    included); the last line says whether the differences change the fingerprint.
    """
    pa, pb = compile_spec_file(a, allow_retired=True), compile_spec_file(b, allow_retired=True)
    print_diff(pa.resolved_spec, pb.resolved_spec, pa.fingerprint, pb.fingerprint, as_json=as_json)


def print_diff(a: dict[str, Any], b: dict[str, Any], fa: str, fb: str, *, as_json: bool) -> None:
    """Print the param-level differences of two resolved specs; exit 1 if there are any."""
    from augledger.spec import UNHASHED_FIELDS, diff_resolved

    changes = diff_resolved(a, b)
    if as_json:
        typer.echo(json.dumps({
            "same_fingerprint": fa == fb,
            "changes": [{"location": loc, "a": x, "b": y} for loc, x, y in changes],
        }))
    else:
        for loc, x, y in changes:
            label = " (not fingerprinted)" if loc.split(".")[0] in UNHASHED_FIELDS else ""
            console.print(f"{loc}{label}: [red]{json.dumps(x)}[/] -> [green]{json.dumps(y)}[/]", highlight=False)
        verdict = "same fingerprint" if fa == fb else "different fingerprints"
        console.print(f"{len(changes)} difference(s); {verdict}: {fa[:19]}… vs {fb[:19]}…")
    if changes:
        raise typer.Exit(1)


@spec_app.command("schema")
@handle_errors
def spec_schema() -> None:
    """Print the JSON Schema of a spec (for editor completion and validation)."""
    from augledger.ops.registry import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))
