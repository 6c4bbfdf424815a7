"""``augledger check-leakage`` (train/eval near-duplicates) and ``augledger split`` (group-aware splits)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, app, console, err_console, handle_errors

# The library's default, repeated here so that loading the command imports no numpy (checked by a test).
DEFAULT_THRESHOLD = 8


@app.command("check-leakage")
@handle_errors
def check_leakage_cmd(
    train: Annotated[Path, typer.Option("--train", metavar="OUT_OR_DIR", help="An augledger output folder (its sources and augmented outputs are compared) or a folder of images.")],
    evals: Annotated[list[Path], typer.Option("--eval", metavar="DIR", help="A folder of evaluation images; repeatable.")],
    threshold: Annotated[int, typer.Option(min=0, max=64, help="Largest Hamming distance of the 64-bit pHashes that counts as a near-duplicate.")] = DEFAULT_THRESHOLD,
    source: Annotated[Path | None, typer.Option("--source", help="Where the --train output folder's source folder is now, if it moved since the run.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find evaluation images identical (SHA-256) or near-identical (pHash) to training sources or outputs.

    An augmented output found near an evaluation image is traced back to its source key through the
    ledger; a file found in two evaluation folders is listed too. Exit codes: 0 no leakage found;
    1 findings (each pair is printed with its distance), or the check could not run.
    """
    from augledger.guard.leakage import check_leakage

    report = check_leakage(train, evals, threshold=threshold, source=source)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        for f in report.findings:
            if f.train_key is None:
                other = f"{f.other_folder}/{f.other_path}"
            else:
                other = f"train {f.train_key}" + (f" (output {f.output_path})" if f.output_path else "")
            flip = ", mirrored" if f.mirrored else ""
            console.print(f"{f.kind:9} {escape(str(f.eval_folder))}/{escape(f.eval_path)} <-> {escape(other)} "
                          f"(distance {f.distance}{flip})", highlight=False)
        for u in report.unreadable:
            err_console.print(f"[bold yellow]warning:[/] not compared: {escape(u.split)}/{escape(u.path)}: "
                              f"{escape(u.reason)}", highlight=False)
        counts = ", ".join(f"{n} {escape(name)}" for name, n in report.compared.items())
        verdict = "no leakage found" if report.clean else f"[bold red]{len(report.findings)} finding(s)[/]"
        console.print(f"{verdict}: compared {counts} (pHash, threshold {report.threshold} of 64 bits)", highlight=False)
    raise typer.Exit(0 if report.clean else 1)


@app.command("split")
@handle_errors
def split_cmd(
    source: Annotated[Path, typer.Argument(help="Folder of images (keys are paths relative to it).")],
    fractions: Annotated[str, typer.Option("--fractions", metavar="NAME=F,...", help="Share of the groups per split, e.g. train=0.8,val=0.1,test=0.1 (summing to 1; names: train, val, test, predict).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The split file to write (key,group,split; sorted by key).")],
    group_by: Annotated[str | None, typer.Option("--group-by", metavar="REGEX", help="A regular expression over each key: its named group 'group', or its one capture group, is the key's group, e.g. '^(patient[0-9]+)/'.", show_default=False)] = None,
    groups: Annotated[Path | None, typer.Option("--groups", metavar="FILE.csv", help="A CSV file with columns key,group naming every source key's group.", show_default=False)] = None,
    salt: Annotated[str, typer.Option("--salt", help="Mixed into the assignment hash; another salt is another, independent split.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Assign whole groups (a patient, a session, a video) to one split each, by a stable hash.

    A group's split depends only on its name, --salt and --fractions: not on the order of the keys,
    nor on the other groups, so adding data never moves an old group. Use the file with
    `augledger run --split-file` to augment only the keys marked train.
    """
    from augledger.errors import SpecError
    from augledger.run.splits import parse_fractions, split_source, write_split_file

    try:
        shares = parse_fractions(fractions)
        key_groups, key_splits = split_source(source, fractions, group_by=group_by, groups_file=groups, salt=salt)
    except SpecError as exc:  # a bad option: a usage error, exit 2
        raise typer.BadParameter(str(exc).partition(": ")[2] or str(exc), param_hint=exc.location or None) from None
    write_split_file(out, key_groups, key_splits)
    group_split = {key_groups[k]: s for k, s in key_splits.items()}
    summary = {
        name: {"groups": Counter(group_split.values())[name], "keys": Counter(key_splits.values())[name]}
        for name in shares
    }
    if as_json:
        typer.echo(json.dumps({"out": str(out), "splits": summary, "groups": len(group_split), "keys": len(key_splits)}))
        return
    console.print(f"[bold]{escape(str(out))}[/]: {len(key_splits)} keys in {len(group_split)} groups", highlight=False)
    for name, c in summary.items():
        console.print(f"  {name:8} {c['groups']:6} groups {c['keys']:8} keys", highlight=False)
