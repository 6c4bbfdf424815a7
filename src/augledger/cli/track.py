"""``augledger lineage`` (which augmentation trained a model) and ``augledger dvc-stage`` (a DVC stage for a run)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import JsonOpt, app, console, handle_errors


@app.command("lineage")
@handle_errors
def lineage_cmd(
    model: Annotated[str | None, typer.Argument(metavar="MODEL@VERSION", help="A registered MLflow model and its version or alias (digits-cnn@3, digits-cnn@champion).", show_default=False)] = None,
    run: Annotated[str | None, typer.Option("--run", metavar="RUN_ID", help="An MLflow run instead of a model version.", show_default=False)] = None,
    show_spec: Annotated[bool, typer.Option("--spec", help="Print the whole resolved spec.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the augmentation that trained a model version: fingerprint, REF and its state then and now, who
    approved it, variants, dataset digest, spec.

    Reads $MLFLOW_TRACKING_URI (else sqlite:///mlflow.db) and the augledger registry when there is one.
    """
    import os

    from augledger.track.lineage import lineage
    from augledger.track.mlflow import default_tracking_uri

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
    tags = found["tags"]

    def line(label: str, text: str) -> None:
        console.print(f"{label:<16}{escape(text)}", highlight=False)

    if "model" in found:
        m = found["model"]
        console.print(f"[bold]{escape(m['name'])} version {m['version']}[/] (run {m['run_id']})", highlight=False)
    else:
        console.print(f"[bold]run {found['run_id']}[/]", highlight=False)
    line("fingerprint", found["fingerprint"])
    line("spec", f"{tags.get('spec_name', '?')}, seed {tags.get('seed', '?')}")
    if found.get("ref"):
        then = f" (version {tags['version']}, {tags['state']} when it trained)" if tags.get("state") else ""
        line("REF", f"{found['ref']}{then}")
    for name, fp in sorted(json.loads(tags.get("variants", "{}")).items()):
        ref = json.loads(tags.get("variant_refs", "{}")).get(name) or {}
        said = f" = {ref['ref']} ({ref.get('state')} when it trained)" if ref.get("ref") else ""
        line("variant", f"{name}: {fp}{said}")
    for v in found["registry"]:
        approved = (f"; approved by {v['approved_by']} at {v['approved_at'][:19]}: {v['approval_reason']}"
                    if v.get("approved_by") else "")
        line("registry now", f"{v['ref']} is {v['state']} (added by {v['added_by']}{approved})")
    if not found["registry"]:
        line("registry now", "the fingerprint is in no registry found here ($AUGLEDGER_REGISTRY, or .augledger/ "
             "in this folder or a parent)")
    if found.get("dataset_digest"):
        line("dataset digest", found["dataset_digest"])
    for d in found.get("datasets", []):
        line("dataset input", f"{d['name']} digest {d['digest']} ({d['context']}) {d['source']}")
    spec = found.get("spec")
    if spec is None:
        line("resolved spec", "not logged with the run and not in the registry")
    elif show_spec:
        console.print("resolved spec:", highlight=False)
        typer.echo(json.dumps(spec, indent=2, sort_keys=True))
    else:
        ops = spec.get("ops") or [op for v in spec.get("variants", []) for op in v["resolved_spec"]["ops"]]
        names = ", ".join(str(op.get("op", "?")).split(".")[-1] for op in ops)
        line("resolved spec", f"{len(ops)} top-level ops: {names} (--spec prints it whole)")


def _quote(path: str) -> str:
    return shlex.quote(path)


@app.command("dvc-stage")
@handle_errors
def dvc_stage(
    spec: Annotated[str, typer.Argument(metavar="SPEC|NAME@VERSION", help="A spec file (a dependency of the stage), or a pinned registry version such as digits@3 (never an alias: DVC cannot see an alias move).", show_default=False)],
    source: Annotated[Path, typer.Option("--source", help="The raw data folder (a stage dependency).")],
    out: Annotated[Path, typer.Option("--out", help="The augmented folder (the stage's output).")],
    copies: Annotated[int, typer.Option(min=1, help="Augmented copies per image.")] = 1,
    annotations: Annotated[Path | None, typer.Option(help="An annotations file (a stage dependency); see `augledger run --help`.", show_default=False)] = None,
    allow_quarantine: Annotated[bool, typer.Option("--allow-quarantine", help="Let the stage succeed when samples are quarantined (run exits 0, not 3).")] = False,
    name: Annotated[str, typer.Option("--name", help="The stage's name.")] = "augment",
    params_key: Annotated[str, typer.Option("--params-key", help="Where the seed lives in params.yaml (dotted).")] = "augment.seed",
    write: Annotated[bool, typer.Option("--write", help="Write dvc.yaml (refusing to replace a stage of that name), add the .dvcignore lines and create params.yaml if missing, in the current folder.")] = False,
) -> None:
    """Print (or --write) a DVC stage that runs `augledger run`, with the .dvcignore lines and params.yaml it needs.

    The seed comes from params.yaml (--params-key); deps are the spec file, the source and the
    annotations; the output folder's run.json and .augledger/ are ignored by DVC (they are not the dataset).
    """
    import yaml

    from augledger.registry.model import parse_ref
    from augledger.registry.refs import looks_like_ref

    is_ref = looks_like_ref(spec)
    if is_ref:
        _name, selector = parse_ref(spec)
        if isinstance(selector, str):
            raise typer.BadParameter(f"{spec!r} is an alias: DVC cannot see an alias move, so a stage must pin a version "
                                     "(NAME@3); `augledger registry show` says which version it points at", param_hint="SPEC")
        from augledger.registry.core import Registry

        with Registry() as reg:
            version = reg.get(spec, verified=True)  # an unknown, edited or retired REF is refused now, not at `dvc repro`
        if version.state == "retired":
            raise typer.BadParameter(f"{spec} is retired and can no longer be run", param_hint="SPEC")
    else:
        from augledger.spec import load_spec

        load_spec(spec)  # an invalid spec is refused now, not at `dvc repro`
    if not source.is_dir():
        raise typer.BadParameter(f"{str(source)!r} is not a folder", param_hint="--source")
    if out.is_absolute() or source.is_absolute():
        raise typer.BadParameter("--source and --out must be relative to the DVC project (DVC refuses absolute outs, "
                                 ".dvcignore patterns are relative)", param_hint="--out")
    if annotations is not None and not annotations.is_file():
        raise typer.BadParameter(f"{str(annotations)!r} does not exist", param_hint="--annotations")
    parts = [f"augledger run {_quote(spec)} --source {_quote(source.as_posix())} --out {_quote(out.as_posix())}",
             f"--copies {copies}"]
    if annotations is not None:
        parts.append(f"--annotations {_quote(annotations.as_posix())}")
    if allow_quarantine:
        parts.append("--allow-quarantine")
    parts.append(f"--seed ${{{params_key}}}")
    deps = ([] if is_ref else [spec]) + [source.as_posix()] + ([annotations.as_posix()] if annotations else [])
    stage = {"cmd": " ".join(parts), "deps": deps, "params": [params_key], "outs": [out.as_posix()]}
    ignore = [f"{out.as_posix()}/run.json", f"{out.as_posix()}/.augledger/"]
    params: dict[str, Any] = {}
    node = params
    *path, leaf = params_key.split(".")
    for key in path:
        node = node.setdefault(key, {})
    node[leaf] = 1234
    if not write:
        typer.echo(yaml.safe_dump({"stages": {name: stage}}, sort_keys=False).rstrip())
        typer.echo("# .dvcignore (run facts and resume state are not part of the dataset):")
        typer.echo("\n".join(f"#   {line}" for line in ignore))
        typer.echo("# params.yaml:")
        typer.echo("\n".join(f"#   {line}" for line in yaml.safe_dump(params, sort_keys=False).splitlines()))
        return
    dvc_yaml = Path("dvc.yaml")
    doc = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) if dvc_yaml.is_file() else {}
    doc = doc or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("stages", {}), dict):
        raise typer.BadParameter("dvc.yaml here is not a DVC pipeline (a mapping with `stages:`); fix it or write "
                                 "the printed stage by hand", param_hint="--write")
    if name in (doc.get("stages") or {}):
        raise typer.BadParameter(f"dvc.yaml already has a stage {name!r}; pick another --name", param_hint="--name")
    doc.setdefault("stages", {})[name] = stage
    dvc_yaml.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    dvcignore = Path(".dvcignore")
    have = dvcignore.read_text(encoding="utf-8").splitlines() if dvcignore.is_file() else []
    missing = [line for line in ignore if line not in have]
    if missing:
        with dvcignore.open("a", encoding="utf-8") as fh:
            fh.write(("" if not have or have[-1] == "" else "\n") + "\n".join(missing) + "\n")
    params_file = Path("params.yaml")
    existing = yaml.safe_load(params_file.read_text(encoding="utf-8")) if params_file.is_file() else {}
    existing = existing or {}
    node = existing
    for key in path:  # merge the seed into params.yaml, keeping what is there
        if not isinstance(node, dict):
            break
        node = node.setdefault(key, {})
    if not isinstance(node, dict):
        raise typer.BadParameter(f"params.yaml has no room for {params_key!r} (a value where a mapping should be)",
                                 param_hint="--params-key")
    if leaf not in node:
        node[leaf] = 1234
        params_file.write_text(yaml.safe_dump(existing, sort_keys=False), encoding="utf-8")
    console.print(f"wrote stage {escape(name)!r} to dvc.yaml (comments in it are not kept); .dvcignore and "
                  "params.yaml are ready: `dvc repro`", highlight=False)
