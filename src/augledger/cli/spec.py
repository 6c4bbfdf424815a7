"""``augledger spec ...``: validate, fingerprint, resolve, compare and describe specs."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, SpecArg, app, compile_spec_file, console, err_console, handle_errors

spec_app = typer.Typer(no_args_is_help=True, help="Validate, fingerprint and compare pipeline specs.")
app.add_typer(spec_app, name="spec")


@spec_app.command("validate")
@handle_errors
def spec_validate(
    spec: SpecArg,
    policy: Annotated[Path | None, typer.Option("--policy", help="Also check it against this intensity policy file: one line per violation (op path, param, bound, value).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a spec: schema, allowed ops, param names and values, and its policy. Exit 1 if invalid.

    A spec's own `policy:` key is always checked; --policy checks another policy too.
    """
    from augledger.ops.registry import policy_vocabulary
    from augledger.policy import check_spec, load_policy, policy_ops

    pipe = compile_spec_file(spec, allow_retired=True)
    violations = []
    if policy is not None:
        rules = load_policy(policy)
        names, aliases = policy_vocabulary(pipe.modality, policy_ops(rules))
        violations = check_spec(rules, pipe.resolved_spec, op_names=names, aliases=aliases)
    if as_json:
        data = {"valid": not violations, "name": pipe.name, "fingerprint": pipe.fingerprint}
        typer.echo(json.dumps({**data, "violations": [str(v) for v in violations]} if policy is not None else data))
    elif violations:
        for v in violations:
            console.print(escape(str(v)), highlight=False)
        console.print(f"[red]{len(violations)} violation(s)[/] of policy {escape(rules.name)!r} in {escape(str(spec))}",
                      highlight=False)
    else:
        n_ops = len(pipe.resolved_spec["ops"])
        checked = f", keeps policy {rules.name!r}" if policy is not None else ""
        console.print(f"[green]valid[/] {escape(str(spec))}: {pipe.name!r}, {n_ops} top-level ops, {pipe.fingerprint}{escape(checked)}",
                      highlight=False)
    if violations:
        raise typer.Exit(1)


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
def spec_schema(
    policy: Annotated[bool, typer.Option("--policy", help="The schema of an intensity policy file instead.")] = False,
) -> None:
    """Print the JSON Schema of a spec (for editor completion and validation), or of a policy file."""
    if policy:
        from augledger.policy import policy_json_schema

        typer.echo(json.dumps(policy_json_schema(), indent=2))
        return
    from augledger.ops.registry import spec_json_schema

    typer.echo(json.dumps(spec_json_schema(), indent=2))


@spec_app.command("import")
@handle_errors
def spec_import(
    file: Annotated[Path, typer.Argument(help="A pipeline written by Albumentations' A.save (.json, .yaml or .yml).", show_default=False)],
    out: Annotated[Path, typer.Option("--output", "-o", help="The spec file to write (YAML).", show_default=False)],
    name: Annotated[str | None, typer.Option("--name", help="The spec's name (default: the file's stem).", show_default=False)] = None,
    mask: Annotated[bool, typer.Option("--mask", help="Declare a mask target (the file does not say whether masks are given).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Convert an Albumentations A.save/A.to_dict pipeline into a spec, and print its fingerprint.

    Deprecated names (ShiftScaleRotate, ...) are kept as written and resolve to their modern
    equivalent; Lambda and other ops a spec may not name are an error naming their path.
    """
    import yaml

    from augledger.documents import load_document
    from augledger.errors import SpecError
    from augledger.ops.image.adopt import from_albumentations
    from augledger.pipeline import compile_spec

    if out.exists() and not force:
        raise SpecError(f"{str(out)!r} exists; pass --force to overwrite it, or choose another -o")
    data = load_document(file, what="Albumentations pipeline")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        spec = from_albumentations(data, name=name or file.stem, mask=mask, description=f"imported from {file.name}")
    for warning in caught:
        err_console.print(f"[yellow]warning:[/] {escape(str(warning.message))}", highlight=False)
    fingerprint = compile_spec(spec).fingerprint  # refuse a file whose ops do not resolve before writing
    header = f"# Imported from {file.name} (an Albumentations A.save file) by `augledger spec import`.\n# fingerprint: {fingerprint}\n"
    out.write_text(header + yaml.safe_dump(spec.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    typer.echo(fingerprint)
