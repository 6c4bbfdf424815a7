"""``augledger registry ...``: register pipeline versions, move them through their lifecycle, alias, audit."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, RegistryOpt, app, console, err_console, handle_errors

registry_app = typer.Typer(
    no_args_is_help=True,
    help="Governed pipeline versions: add, approve (four eyes), alias, roll back, audit. "
    "The registry is .augledger/registry.db, or --registry / AUGLEDGER_REGISTRY (a path or postgresql://...). "
    "Actions are recorded as $AUGLEDGER_USER, else the OS user.",
)
app.add_typer(registry_app, name="registry")

RefArg = Annotated[str, typer.Argument(metavar="REF", help="NAME@VERSION or NAME@ALIAS.", show_default=False)]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded in the history).", show_default=False)]


@registry_app.callback()
def _group(registry: RegistryOpt = None) -> None:
    if registry:
        os.environ["AUGLEDGER_REGISTRY"] = registry


def _open(*, create: bool = False, single_user: bool = False) -> Any:
    from augledger.registry.core import Registry

    return Registry(create=create, single_user=single_user)


def _aliases_of(reg: Any, name: str, version: int) -> list[str]:
    return [alias for (n, alias), (v, _prev) in reg.aliases(name).items() if v == version]


@registry_app.command("init")
@handle_errors
def init(
    single_user: Annotated[bool, typer.Option("--single-user", help="One person may add and approve (four-eyes approval off, for good).")] = False,
) -> None:
    """Create an empty registry (`add` creates one too, with four-eyes approval)."""
    with _open(create=True, single_user=single_user) as reg:
        mode = "single-user: four-eyes approval is off" if reg.single_user else "four-eyes approval"
        verb = "created" if reg.created else "already exists:"
        console.print(f"registry {verb} {escape(reg.where)} ({mode})", highlight=False)
        if single_user and not reg.single_user:
            err_console.print("[bold yellow]warning:[/] --single-user applies only when a registry is created; "
                              "this one keeps four-eyes approval", highlight=False)


@registry_app.command("add")
@handle_errors
def add(
    spec: Annotated[Path, typer.Argument(metavar="SPEC", help="Spec file (.yaml, .yml or .json).", show_default=False)],
    note: Annotated[str | None, typer.Option("--note", help="A note recorded with the version.", show_default=False)] = None,
) -> None:
    """Register a spec; prints NAME@VERSION and its fingerprint. Already registered: prints the existing version."""
    from augledger.spec import load_spec

    parsed = load_spec(spec)
    with _open(create=True) as reg:
        if reg.created:
            mode = "single-user" if reg.single_user else "four-eyes approval"
            err_console.print(f"created a new registry at {escape(reg.where)} ({mode})", highlight=False)
        result = reg.add(parsed, note=note)
    v = result.version
    typer.echo(f"{v.ref} {v.fingerprint}")
    if not result.created:
        extra = f"; the stored version keeps its own {' and '.join(result.differs)}" if result.differs else ""
        err_console.print(f"already registered as {v.ref} ({v.state}): nothing changed{extra}", highlight=False)


@registry_app.command("list")
@handle_errors
def list_(
    name: Annotated[str | None, typer.Argument(metavar="NAME", help="Only this spec name.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List registered versions with their state and aliases."""
    with _open() as reg:
        versions = reg.versions(name)
        aliases = reg.aliases(name)
    by_version: dict[tuple[str, int], list[str]] = {}
    for (n, alias), (v, _prev) in aliases.items():
        by_version.setdefault((n, v), []).append(alias)
    if as_json:
        typer.echo(json.dumps([{**v.to_dict(), "aliases": by_version.get((v.name, v.version), [])} for v in versions]))
        return
    if not versions:
        if name:
            err_console.print(f"[bold red]error:[/] no versions named {escape(repr(name))}; `augledger registry list` "
                              "shows every name", highlight=False)
            raise typer.Exit(1)
        console.print("no versions registered yet (`augledger registry add SPEC`)", highlight=False)
        return
    lines = []  # one write: a thousand rich renders would cost more than the query
    for v in versions:
        tags = ", ".join(by_version.get((v.name, v.version), []))
        lines.append(f"{v.ref:<28} {v.state:<10} {v.fingerprint[:19]}…  {v.added_by}  {v.added_at[:19]}"
                     + (f"  [{tags}]" if tags else ""))
    typer.echo("\n".join(lines))


@registry_app.command("show")
@handle_errors
def show(ref: RefArg, as_json: JsonOpt = False) -> None:
    """Print a version: resolved spec, lifecycle state, aliases and history."""
    with _open() as reg:
        v = reg.get(ref)
        aliases = _aliases_of(reg, v.name, v.version)
        history = reg.history(v.name, v.version)
        alias_moves = [h for h in reg.history(v.name) if h.action in ("alias", "rollback")
                       and v.version in (h.detail.get("from"), h.detail.get("to"))]
        single = reg.single_user
    rows = sorted({h.seq: h for h in [*history, *alias_moves]}.values(), key=lambda h: h.seq)
    if as_json:
        typer.echo(json.dumps({**v.to_dict(with_spec=True), "aliases": aliases, "single_user": single,
                               "history": [h.to_dict() for h in rows]}))
        return
    console.print(f"[bold]{escape(v.ref)}[/] ({v.state}) {v.fingerprint}", highlight=False)
    console.print(f"added by {escape(v.added_by)} at {v.added_at}" + (f": {escape(v.note)}" if v.note else ""), highlight=False)
    console.print(f"aliases: {', '.join(aliases) or 'none'}", highlight=False)
    if single:
        console.print("this registry is single-user: four-eyes approval is off", highlight=False)
    console.print("history:", highlight=False)
    for h in rows:
        what = (f"{h.detail.get('from')} -> {h.detail.get('to')}" if h.action in ("promote", "deprecate", "retire") else
                f"{h.detail.get('alias')}: {h.detail.get('from') or '-'} -> {h.detail.get('to')}" if h.action in ("alias", "rollback") else "")
        why = f" ({escape(h.reason)})" if h.reason else ""
        console.print(f"  {h.seq:>4} {h.at[:19]} {escape(h.actor)}: {h.action} {escape(what)}{why}", highlight=False)
    console.print("spec:", highlight=False)
    typer.echo(json.dumps(v.spec, indent=2, sort_keys=True))


@registry_app.command("diff")
@handle_errors
def diff(
    a: Annotated[str, typer.Argument(metavar="REF_A", help="NAME@VERSION or NAME@ALIAS.", show_default=False)],
    b: Annotated[str, typer.Argument(metavar="REF_B", help="NAME@VERSION or NAME@ALIAS.", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """Param-level diff of two versions (like `spec diff`). Exit 1 if they differ."""
    from augledger.cli.spec import print_diff

    with _open() as reg:
        va, vb = reg.get(a), reg.get(b)
    print_diff(va.spec, vb.spec, va.fingerprint, vb.fingerprint, as_json=as_json)


@registry_app.command("export")
@handle_errors
def export(
    ref: RefArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the spec (.yaml, .yml or .json).")],
) -> None:
    """Write a version's resolved spec as a spec file (it fingerprints the same)."""
    import yaml

    with _open() as reg:
        v = reg.get(ref)
    if out.suffix.lower() == ".json":
        text = json.dumps(v.spec, indent=2, sort_keys=True) + "\n"
    elif out.suffix.lower() in (".yaml", ".yml"):
        text = f"# {v.ref} {v.fingerprint} ({v.state})\n" + yaml.safe_dump(v.spec, sort_keys=False, allow_unicode=True)
    else:
        raise typer.BadParameter(f"must end in .yaml, .yml or .json; got {out.name!r}", param_hint="-o")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console.print(f"wrote {escape(str(out))} ({v.ref}, {v.fingerprint[:19]}…)", highlight=False)


def _moved(v: Any) -> None:
    console.print(f"{escape(v.ref)} is now {v.state}", highlight=False)


def _warn_served(reg: Any, ref: str, state: str) -> None:
    if state != "deprecated":
        return
    v = reg.get(ref)
    serving = _aliases_of(reg, v.name, v.version)
    if serving:
        err_console.print(f"[bold yellow]warning:[/] {', '.join(f'{v.name}@{a}' for a in serving)} still serve "
                          f"{v.ref}, now deprecated: runs warn until the alias moves", highlight=False)


@registry_app.command("promote")
@handle_errors
def promote(
    ref: RefArg, reason: ReasonOpt,
    to: Annotated[str, typer.Option("--to", metavar="approved|deprecated|retired", help="The new state.")] = "approved",
) -> None:
    """Move a version to another state (draft -> approved needs a second person)."""
    if to not in ("approved", "deprecated", "retired"):
        raise typer.BadParameter(f"must be approved, deprecated or retired; got {to!r} (a version never goes back "
                                 "to draft)", param_hint="--to")
    with _open() as reg:
        _moved(reg.transition(ref, to, reason=reason))
        _warn_served(reg, ref, to)


@registry_app.command("deprecate")
@handle_errors
def deprecate(ref: RefArg, reason: ReasonOpt) -> None:
    """Mark an approved version deprecated (runs still work, with a warning)."""
    with _open() as reg:
        _moved(reg.deprecate(ref, reason=reason))
        _warn_served(reg, ref, "deprecated")


@registry_app.command("retire")
@handle_errors
def retire(ref: RefArg, reason: ReasonOpt) -> None:
    """Retire a version: it can no longer be run (final)."""
    with _open() as reg:
        _moved(reg.retire(ref, reason=reason))


@registry_app.command("alias")
@handle_errors
def alias(
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production, staging.", show_default=False)],
    version: Annotated[int, typer.Argument(metavar="VERSION", min=1, show_default=False)],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the history).", show_default=False)] = None,
    allow_unapproved: Annotated[bool, typer.Option("--allow-unapproved", help="Let the alias point at a draft or deprecated version (a staging alias).")] = False,
) -> None:
    """Point NAME@ALIAS at an approved VERSION, atomically (the previous target is kept for rollback)."""
    with _open() as reg:
        move = reg.set_alias(name, alias_name, version, reason=reason, allow_unapproved=allow_unapproved)
    if not move.changed:
        console.print(f"{escape(name)}@{escape(alias_name)} already points at {version}", highlight=False)
    else:
        was = f" (was {move.previous})" if move.previous is not None else ""
        console.print(f"{escape(name)}@{escape(alias_name)} -> {escape(name)}@{move.version}{was}", highlight=False)


@registry_app.command("rollback")
@handle_errors
def rollback(
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", show_default=False)],
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the history).", show_default=False)] = None,
) -> None:
    """Move NAME@ALIAS back to its previous target (allowed even when that one is deprecated since: an incident)."""
    with _open() as reg:
        move = reg.rollback(name, alias_name, reason=reason)
        state = reg.get(f"{name}@{move.version}").state
    console.print(f"{escape(name)}@{escape(alias_name)} -> {escape(name)}@{move.version} (rolled back from {move.previous})",
                  highlight=False)
    if state != "approved":
        err_console.print(f"[bold yellow]warning:[/] {escape(name)}@{move.version} is {state}: runs of "
                          f"{escape(name)}@{escape(alias_name)} will warn or, with --require-approved, be refused",
                          highlight=False)


@registry_app.command("audit")
@handle_errors
def audit(as_json: JsonOpt = False) -> None:
    """Re-check the history's hash chain and every stored spec. Exit 1 naming the first row that does not match."""
    with _open() as reg:
        report = reg.audit()
        where = reg.where
    if as_json:
        typer.echo(json.dumps({"ok": report.ok, "rows": report.rows, "versions": report.versions,
                               "problems": report.problems}))
        if not report.ok:
            raise typer.Exit(1)
        return
    if report.ok:
        console.print(f"[green]ok[/]: {report.rows} history rows chain correctly; {report.versions} stored specs match "
                      f"their fingerprints ({escape(where)})", highlight=False)
        return
    err_console.print(f"[bold red]error:[/] audit failed: {escape(report.problems[0])}", highlight=False)
    for problem in report.problems[1:]:
        err_console.print(f"  also: {escape(problem)}", highlight=False)
    raise typer.Exit(1)
