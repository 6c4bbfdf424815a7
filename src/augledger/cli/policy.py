"""``augledger check-policy``: re-check a finished dataset against an intensity policy, from its ledger alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, app, console, handle_errors

PolicyOpt = Annotated[Path, typer.Option("--policy", help="Intensity policy file (YAML or JSON, starting with 'policy: 1').")]


@app.command("check-policy")
@handle_errors
def check_policy(
    out: Annotated[Path, typer.Argument(help="Output folder of augledger run.")],
    policy: PolicyOpt,
    as_json: JsonOpt = False,
) -> None:
    """Check a finished dataset against a policy from its manifest and ledger alone (no image is read).

    Every pipeline's resolved spec is checked as `spec validate --policy` checks it, and every value
    drawn (as the ledger records it) against the bounds. One line per violation; exit 1 if any.
    """
    from augledger.guard.policy import check_output
    from augledger.policy import load_policy

    report = check_output(out, load_policy(policy))
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        for v in report.violations:
            console.print(escape(str(v)), highlight=False)
        checked = ", ".join(f"{k} {n}" for k, n in report.values_checked.items()) or "none recorded"
        verdict = "[green]ok[/]" if report.ok else f"[red]{len(report.violations)} violation(s)[/]"
        console.print(f"{verdict}: {escape(str(out))} against policy {escape(report.policy)!r} ({report.digest[:19]}…); "
                      f"{report.samples} samples, values checked: {escape(checked)}; "
                      f"{'enforced' if report.enforced_at_run else 'not enforced'} when the run was made", highlight=False)
    if not report.ok:
        raise typer.Exit(1)
