"""``augledger lineage`` (which augmentation trained a model) and ``augledger dvc-stage`` (a DVC stage for a run)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, SpecArg, app, console, handle_errors


@app.command("lineage")
@handle_errors
def lineage_cmd(
    model: Annotated[str | None, typer.Argument(metavar="[MODEL@VERSION]", help="A registered MLflow model and its version or alias (digits-cnn@3, digits-cnn@champion).", show_default=False)] = None,
    run: Annotated[str | None, typer.Option("--run", metavar="RUN_ID", help="An MLflow run instead of a model version.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the augmentation that trained a model version: fingerprint, registry REF and state, spec, dataset digest.

    Reads $MLFLOW_TRACKING_URI (else sqlite:///mlflow.db) and the augledger registry when there is one.
    """
    import os

    from augledger.track.mlflow import default_tracking_uri, lineage

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # this command prints; no bars
    name = version = None
    if model is not None:
        name, at, version = model.rpartition("@")
        if not at or not name or not version:
            raise typer.BadParameter(f"must be MODEL@VERSION or MODEL@ALIAS, e.g. digits-cnn@3; got {model!r}",
                                     param_hint="MODEL@VERSION")
    elif run is None:
        raise typer.BadParameter("give MODEL@VERSION or --run RUN_ID", param_hint="MODEL@VERSION")
    found = lineage(name, version, run_id=run, tracking_uri=default_tracking_uri())
    if as_json:
        typer.echo(json.dumps(found, indent=2, sort_keys=True, default=str))
        return
    if "model" in found:
        m = found["model"]
        console.print(f"[bold]{escape(m['name'])} version {m['version']}[/] (run {m['run_id']})", highlight=False)
    else:
        console.print(f"[bold]run {found['run_id']}[/]", highlight=False)
    console.print(f"fingerprint     {found['fingerprint']}", highlight=False)
    if found.get("ref"):
        console.print(f"REF             {escape(found['ref'])}", highlight=False)
    for v in found["registry"]:
        console.print(f"registry        {escape(v['ref'])} ({v['state']}; added by {escape(v['added_by'])})", highlight=False)
    if not found["registry"]:
        console.print("registry        not found (no registry here, or the fingerprint is not registered)", highlight=False)
    if found.get("dataset_digest"):
        console.print(f"dataset digest  {found['dataset_digest']}", highlight=False)
    for d in found.get("datasets", []):
        console.print(f"dataset input   {escape(d['name'])} digest {d['digest']} ({d['context']}) {escape(d['source'])}",
                      highlight=False)
    if found.get("spec") is not None:
        console.print("spec:", highlight=False)
        typer.echo(json.dumps(found["spec"], indent=2, sort_keys=True))
    else:
        console.print("spec            not logged with the run and not in the registry", highlight=False)


def _quote(path: str) -> str:
    return shlex.quote(path)


@app.command("dvc-stage")
@handle_errors
def dvc_stage(
    spec: SpecArg,
    source: Annotated[Path, typer.Option("--source", help="The raw data folder (a stage dependency).")],
    out: Annotated[Path, typer.Option("--out", help="The augmented folder (the stage's output).")],
    copies: Annotated[int, typer.Option(min=1, help="Augmented copies per image.")] = 1,
    name: Annotated[str, typer.Option("--name", help="The stage's name.")] = "augment",
    params_key: Annotated[str, typer.Option("--params-key", help="Where the seed lives in params.yaml.")] = "augment.seed",
) -> None:
    """Print a DVC stage (dvc.yaml) that runs `augledger run` for your paths, and the .dvcignore lines it needs.

    The seed comes from params.yaml (--params-key); deps are the spec (a file) and the source. A REF
    is passed through as is: DVC cannot see a registry change, so pin a version (NAME@3), not an alias.
    """
    import yaml

    from augledger.registry.refs import looks_like_ref

    is_ref = looks_like_ref(spec)
    if not is_ref:
        from augledger.spec import load_spec

        load_spec(spec)  # refuse an invalid spec now, not at `dvc repro`
    cmd = (f"augledger run {_quote(spec)} --source {_quote(source.as_posix())} --out {_quote(out.as_posix())} "
           f"--copies {copies} --seed ${{{params_key}}}")
    stage: dict[str, Any] = {"cmd": cmd, "deps": [source.as_posix()] if is_ref else [spec, source.as_posix()],
                             "params": [params_key], "outs": [out.as_posix()]}
    typer.echo(yaml.safe_dump({"stages": {name: stage}}, sort_keys=False).rstrip())
    typer.echo(f"# .dvcignore: run facts and resume state are not part of the dataset\n"
               f"# {out.as_posix()}/run.json\n# {out.as_posix()}/.augledger/")
    typer.echo(f"# params.yaml:\n# {params_key.split('.')[0]}:\n#   {params_key.split('.', 1)[-1]}: 1234")
