"""``augledger card``: the pipeline card, the governance document a review asks for."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import SpecArg, app, console, handle_errors


def governance_of(reg: Any, version: Any, given: str) -> dict[str, Any]:
    """What the card shows of a registered version: state, owner, aliases, its history rows."""
    aliases = sorted(alias for (_n, alias), (v, _prev) in reg.aliases(version.name).items() if v == version.version)
    rows = {h.seq: h for h in reg.history(version.name, version.version)}
    for h in reg.history(version.name):  # alias moves away from this version name it as "from"
        if h.action in ("alias", "rollback") and version.version in (h.detail.get("from"), h.detail.get("to")):
            rows[h.seq] = h
    history = [rows[seq] for seq in sorted(rows)]
    approvals = [h for h in history if h.action == "promote" and h.detail.get("to") == "approved"]
    report = reg.audit()
    audit = (f"ok: {report.rows} history rows chain, {report.versions} stored specs match" if report.ok
             else f"FAILED: {report.problems[0]}")
    return {"ref": given, "name": version.name, "version": version.version, "state": version.state,
            "added_by": version.added_by, "added_at": version.added_at, "note": version.note,
            "approved_by": (f"{approvals[-1].actor} ({approvals[-1].at}): {approvals[-1].reason}" if approvals else None),
            "as_of": history[-1].at if history else None, "audit": audit,
            "single_user": reg.single_user, "aliases": aliases, "history": [h.to_dict() for h in history]}


@app.command("card")
@handle_errors
def card(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the card (Markdown).")] = Path("card.md"),
    preview: Annotated[Path | None, typer.Option("--preview", metavar="IMAGE", help="Also draw a preview grid of this image beside the card (<card>.preview.png).", show_default=False)] = None,
    n: Annotated[int, typer.Option("-n", min=1, max=64, help="Variants in the preview grid.")] = 8,
) -> None:
    """Write the pipeline card: identity, every op in plain words, splits, lifecycle history, environment.

    A REF (even a retired one: the card is a record) shows its registry history; a spec file shows
    it too when the registry holds the same fingerprint under its name.
    """
    from augledger.cli._app import resolve_spec_arg
    from augledger.registry.core import Registry
    from augledger.report.card import write_card

    # A retired version too (a card is a record); a REF is checked against its history and must
    # still compile to its registered fingerprint; a spec file is looked up when there is a registry.
    source, pipe = resolve_spec_arg(spec, lookup=True, allow_retired=True)
    governance: dict[str, Any] | None = None
    if source.version is not None:
        with Registry() as reg:
            governance = governance_of(reg, source.version, source.given if source.is_ref else source.version.ref)
    written = write_card(out, pipe, governance=governance, preview_image=preview, n=n)
    what = f"{governance['name']}@{governance['version']} ({governance['state']})" if governance else "not registered"
    console.print(f"wrote {', '.join(escape(str(p)) for p in written)} ({what}, {pipe.fingerprint[:19]}…)", highlight=False)
