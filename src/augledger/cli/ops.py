"""``augledger ops list``: every op a spec may name, by modality, from each backend's ``describe_ops``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, app, console, err_console, handle_errors

ops_app = typer.Typer(no_args_is_help=True, help="The ops a spec may name.")
app.add_typer(ops_app, name="ops")


@ops_app.command("list")
@handle_errors
def ops_list(
    modality: Annotated[str | None, typer.Option("--modality", "-m", help="Only this modality's ops (image, audio, ...).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """List every op: name, modality, params with their defaults (REQUIRED: no default).

    A modality whose optional dependencies are not installed is skipped with a note (with --json:
    an entry {"modality": M, "unavailable": "pip install ..."}); naming it with --modality is an error.
    """
    from augledger.errors import BackendError
    from augledger.ops.registry import get_backend, modalities

    entries: list[dict[str, Any]] = []
    for name in [modality] if modality is not None else list(modalities()):
        try:
            entries += get_backend(name).describe_ops()
        except BackendError as exc:
            if modality is not None:
                raise
            entries.append({"modality": name, "unavailable": _install_hint(str(exc))})
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    for entry in entries:
        if "unavailable" in entry:
            err_console.print(f"[yellow]note:[/] modality {entry['modality']!r} skipped: {escape(entry['unavailable'])}",
                              highlight=False)
            continue
        console.print(escape(_line(entry)), highlight=False)


def _install_hint(message: str) -> str:
    """The ``pip install ...`` part of a BackendError's message, or the whole message."""
    start = message.find("pip install")
    if start < 0:
        return message
    return message[start:].split(" (", 1)[0].rstrip(".;, ")


def _line(entry: dict[str, Any]) -> str:
    params = [f"{k}=REQUIRED" for k in entry.get("required", ())]
    params += [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in entry.get("params", {}).items()]
    kind = " (composition)" if entry.get("composition") else f" (deprecated: {entry['alias_of']})" if entry.get("alias_of") else ""
    p = f" p={entry['p']:g}" if "p" in entry else ""
    return f"{entry['op']}  {entry['modality']}{kind}{p}  {' '.join(params)}".rstrip()
