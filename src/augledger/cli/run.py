"""``augledger run``: materialise an augmented dataset, with a progress bar observing the run."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from augledger.cli._app import (
    JsonOpt,
    RequireApprovedOpt,
    SpecArg,
    app,
    console,
    err_console,
    handle_errors,
    resolve_spec_arg,
)
from augledger.io.codecs import DEFAULT_MAX_PIXELS
from augledger.ledger.row import LedgerRow
from augledger.observe.base import RunStart

ANNOTATIONS_HELP = """\
CSV or JSON Lines file, one row per image: key (the path relative to --source; another column
with --key-column), and any of: label (a class label), bboxes (boxes in the spec's
targets.bboxes.format) with one label per box in the spec's label_fields (e.g. labels),
keypoints, mask (a mask image's path, relative to --source or --masks). Other columns (split,
source, ...) are carried to the ledger. In CSV, list columns hold JSON text. Examples:
key,label / cats/1.jpg,cat (classification);
{"key": "a.jpg", "bboxes": [[10, 20, 50, 60]], "labels": ["dog"]} (pascal_voc boxes are
x_min, y_min, x_max, y_max; coco boxes x, y, width, height; yolo boxes the normalised centre x,
y, width, height); {"key": "a.jpg", "keypoints": [[12, 7]]}; {"key": "a.jpg", "mask":
"masks/a.png"}. The README's Annotations section has these examples written out.\
"""


class ProgressObserver:
    """A rich progress bar (rate, ETA) on a terminal; a line every 10 s (or 10%) otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self._start = 0.0
        self._done = self._first = self._total = 0
        self._last = 0.0
        self._last_fraction = 0.0

    def on_start(self, start: RunStart) -> None:
        self._start = time.monotonic()
        self._done = self._first = start.reused  # outputs a resumed run found complete do not count toward the rate
        self._total = start.total or 0
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[progress.percentage]{task.percentage:>3.0f}%"),
                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err_console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self._total, completed=self._done, rate="")

    def on_rows(self, rows: Sequence[LedgerRow]) -> None:
        self._done += len(rows)
        now = time.monotonic()
        elapsed = now - self._start
        rate = (self._done - self._first) / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, completed=self._done, rate=f"{rate:.1f}/s")
            return
        total = self._total
        fraction = self._done / total if total else 1.0
        if now - self._last >= 10 or fraction - self._last_fraction >= 0.1 or self._done == total:
            self._last, self._last_fraction = now, fraction
            eta = f", ETA {(total - self._done) / rate:.0f}s" if rate > 0 and self._done < total else ""
            err_console.print(f"{self.label}: {self._done}/{total} outputs ({100 * fraction:.0f}%), {rate:.1f}/s{eta}",
                              highlight=False)

    def on_finish(self, summary: Mapping[str, Any]) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _version_label(manifest: Mapping[str, Any]) -> str:
    reg = manifest.get("registry") or {}
    short = f"{manifest['fingerprint'][:19]}…"
    label = f"{reg['name']}@{reg['version']} ({reg['fingerprint'][:19]}…)" if reg.get("name") else short
    if manifest.get("variants"):
        return f"variants {short}, control {label if reg.get('name') else 'the spec file'}"
    return label


def _variants(control: Any, provenance: dict[str, Any] | None, given: Sequence[str], salt: str, *,
              require_approved: bool) -> tuple[Any, dict[str, Any] | None]:
    """Build :class:`~augledger.Variants` from ``--variant NAME=SPEC|REF:WEIGHT`` options (the rest is 'control')."""
    from augledger.errors import SpecError
    from augledger.variants import Variants

    pipes: dict[str, Any] = {"control": control}
    weights: dict[str, float] = {}
    sources: dict[str, Any] = {}
    for text in given:
        name, eq, rest = text.partition("=")
        ref, colon, weight_text = rest.rpartition(":")
        if not eq or not colon or not name or not ref:
            raise typer.BadParameter(f"must be NAME=SPEC|REF:WEIGHT, e.g. candidate=digits@3:0.1; got {text!r}",
                                     param_hint="--variant")
        if name == "control":
            raise typer.BadParameter("'control' is reserved for SPEC (it gets the rest of the keys); name the "
                                     "variant otherwise, e.g. candidate", param_hint="--variant")
        if name in pipes:
            raise typer.BadParameter(f"variant name {name!r} is given twice", param_hint="--variant")
        try:
            weights[name] = float(weight_text)
        except ValueError:
            raise typer.BadParameter(f"weight {weight_text!r} of {name!r} is not a number", param_hint="--variant") from None
        if not 0 < weights[name] < 1:
            raise typer.BadParameter(f"weight of {name!r} must be a share between 0 and 1 (0.1 for 10% of the keys); "
                                     f"got {weight_text}", param_hint="--variant")
        sources[name], pipes[name] = resolve_spec_arg(ref, require_approved=require_approved, lookup=True)
    total = math.fsum(weights.values())
    rest_share = 1.0 - total
    if rest_share < 1e-6:
        raise typer.BadParameter(f"the variants' weights must sum to less than 1 (the rest goes to 'control'); "
                                 f"they sum to {total:g}", param_hint="--variant")
    try:
        variants = Variants(pipes, weights={"control": rest_share, **weights}, salt=salt)
    except SpecError as exc:
        raise typer.BadParameter(str(exc), param_hint="--variant") from None
    others = {name: src.provenance() for name, src in sources.items() if src.provenance()}
    if others:
        provenance = {**(provenance or {}), "variants": others}
    return variants, provenance


def parse_workers(value: str) -> int:
    """``auto`` (the usable CPU count), or a count; 0 and 1 work in the calling process."""
    from augledger.run.options import usable_cpus

    if value.strip().lower() == "auto":
        return usable_cpus()
    try:
        workers = int(value)
    except ValueError:
        raise typer.BadParameter(f"must be 'auto' or a number >= 0; got {value!r}") from None
    if workers < 0:
        raise typer.BadParameter(f"must be 'auto' or a number >= 0; got {value!r}")
    return workers


@app.command("run")
@handle_errors
def run(
    spec: SpecArg,
    source: Annotated[Path, typer.Option("--source", help="Folder of samples (keys are paths relative to it); for modality text also a .jsonl or .csv file (--text-field, --key-field); for tables a .csv or .parquet file.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (new, empty, or one to resume).")],
    copies: Annotated[int, typer.Option(min=0, help="Augmented copies per sample (copy c uses epoch c); at least 1, except for a tabular run, where 0 writes the originals and the synthetic rows only.")] = 1,
    workers: Annotated[str, typer.Option(metavar="auto|N", help="Worker processes: auto (one per usable CPU), or N; 0 or 1 work in this process. Outputs do not depend on it.")] = "auto",
    include_original: Annotated[bool, typer.Option("--include-original", help="Also store each source file unchanged (with its targets).")] = False,
    fmt: Annotated[str, typer.Option("--format", help="folder or webdataset (tar shards).")] = "folder",
    image_format: Annotated[str | None, typer.Option("--output-format", "--image-format", metavar="FORMAT", help="Format of augmented outputs: images png (the default), jpg or webp (lossless); audio source (the default: each file's own container and subtype), wav or flac; text txt.", show_default=False)] = None,
    jpeg_quality: Annotated[int, typer.Option(min=1, max=100, help="Quality of jpg outputs.")] = 95,
    annotations: Annotated[Path | None, typer.Option(help=ANNOTATIONS_HELP, show_default=False)] = None,
    key_column: Annotated[str, typer.Option(help="The annotations column that holds each image's key.")] = "key",
    masks: Annotated[Path | None, typer.Option(help="Folder the annotations' mask paths are relative to (default: --source). Its files are never augmented as images.", show_default=False)] = None,
    max_pixels: Annotated[int, typer.Option(min=1, help="Refuse larger images (decompression bombs).")] = DEFAULT_MAX_PIXELS,
    shard_size: Annotated[int, typer.Option(min=1, help="Samples per webdataset shard.")] = 1000,
    export_annotations: Annotated[str | None, typer.Option(metavar="coco|yolo|voc|csv", help="Also write the transformed boxes and labels of every output: coco (annotations.coco.json), yolo (a .txt beside each image, classes.txt), voc (an .xml beside each image) or csv (annotations.csv).", show_default=False)] = None,
    strict_labels: Annotated[bool, typer.Option("--strict-labels", help="Quarantine (reason 'label') an output whose boxes, points, mask or labels break a rule: a box outside the image, a point outside with remove_invisible, a mask with a class its source lacks, a changed label. Without it, problems are listed in the row's targets and counted in the manifest.")] = False,
    input_digests: Annotated[bool, typer.Option("--input-digests", help="Also record each decoded image's digest (input_digest), which joins the ledger with online ledgers by content (~5% more CPU).")] = False,
    variant: Annotated[list[str] | None, typer.Option("--variant", metavar="NAME=SPEC|REF:WEIGHT", help="A/B or canary: route this share of the keys (by a stable hash of the key and --salt) to another pipeline, e.g. candidate=digits@3:0.1; repeatable. The rest goes to SPEC as 'control'.", show_default=False)] = None,
    salt: Annotated[str, typer.Option("--salt", help="Mixed into the variant routing hash; another salt assigns keys independently.")] = "",
    seed: Annotated[int | None, typer.Option("--seed", help="Use this seed instead of the spec's (not part of the fingerprint: the same pipeline version, another draw; e.g. from a DVC params.yaml). With --variant, only SPEC's (control's) seed.", show_default=False)] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow", help="Log the run to MLflow ($MLFLOW_TRACKING_URI, else sqlite:///mlflow.db): tags, spec, manifest, counts, preview, the dataset as an input. Needs pip install 'augledger\\[mlflow]'.")] = False,
    allow_quarantine: Annotated[bool, typer.Option("--allow-quarantine", help="Exit 0, not 3, when some samples were quarantined (they are still listed in the summary, manifest and ledger): for pipelines such as DVC that stop on any non-zero exit.")] = False,
    experiment: Annotated[str | None, typer.Option("--experiment", help="MLflow experiment (default: augledger).", show_default=False)] = None,
    split_file: Annotated[Path | None, typer.Option("--split-file", metavar="SPLITS.csv", help="Augment only the keys this split file (from `augledger split`) marks train; every source key must be in it. Its SHA-256 is recorded in the manifest.", show_default=False)] = None,
    policy: Annotated[list[Path] | None, typer.Option("--policy", help="Intensity policy file to enforce (repeatable): checked on the spec before any work and on every value drawn while running; a value outside a bound stops the run. A spec's own policy: key is always enforced.", show_default=False)] = None,
    key_field: Annotated[str | None, typer.Option("--key-field", help="Tables (modality: tabular) and JSON Lines/CSV text sources: the column of each row's unique key (text: it names the output files).", show_default=False)] = None,
    text_field: Annotated[str | None, typer.Option("--text-field", help="JSON Lines/CSV text sources: the column holding the text to augment (default: text); the other columns are carried through unchanged to augmented.jsonl|csv.", show_default=False)] = None,
    label_field: Annotated[str | None, typer.Option("--label-field", help="Tables: the class column (targets.smote and targets.mixup make rows per class).", show_default=False)] = None,
    require_approved: RequireApprovedOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Materialise an augmented dataset with a manifest and a Parquet ledger.

    Exit codes: 0 all outputs written; 3 finished, but some samples were quarantined (listed, with
    reasons, in the summary, manifest.json and the ledger); 1 the run could not start or failed;
    130/143 stopped by Ctrl-C/SIGTERM (every complete output is kept). A stopped or killed run
    resumes when started again with the same command.
    """
    from augledger.policy import load_policy
    from augledger.run.materialize import materialize
    from augledger.run.options import RunOptions
    from augledger.run.splits import load_split_selection

    n_workers = parse_workers(workers)
    tabular_copies, copies = copies, max(copies, 1)  # RunOptions (folder runs) need one; checked below
    try:
        options = RunOptions(
            copies=copies, workers=n_workers, include_original=include_original, format=fmt,  # type: ignore[arg-type]
            image_format=image_format, jpeg_quality=jpeg_quality, max_pixels=max_pixels,
            shard_max_count=shard_size, export_annotations=export_annotations, input_digests=input_digests,
            strict_labels=strict_labels,
        )
    except ValueError as exc:  # RunOptions names the option and the allowed values
        raise typer.BadParameter(str(exc)) from None
    spec_source, pipe = resolve_spec_arg(spec, require_approved=require_approved, seed=seed, lookup=True)
    if pipe.modality == "tabular":  # a table in, a table out: augledger.run.table, not the folder machinery
        from augledger.cli.table import run_tabular

        given = {"--policy": policy, "--split-file": split_file, "--strict-labels": strict_labels, "--variant": variant,
                 "--mlflow": mlflow, "--include-original": include_original, "--annotations": annotations,
                 "--masks": masks, "--input-digests": input_digests, "--output-format": image_format,
                 "--export-annotations": export_annotations, "--format": fmt != "folder"}
        unsupported = [name for name, value in given.items() if value]
        if unsupported:
            raise typer.BadParameter(f"{', '.join(unsupported)} work on folders of files; a tabular run (a table in, "
                                     "a table out) does not take them yet", param_hint=unsupported[0])

        run_tabular(pipe, source, out, key_field=key_field, label_field=label_field, copies=tabular_copies, as_json=as_json)
        return
    rows: Any = None  # a JSON Lines/CSV text source (augledger.run.rows): one sample per row
    if pipe.modality == "text" and source.is_file():
        from augledger.run.rows import RowSource

        if key_field is None:
            raise typer.BadParameter("a JSON Lines/CSV source needs --key-field: the column of each row's unique key "
                                     "(it names the output files)", param_hint="--key-field")
        rows = RowSource.load(source, text_field=text_field or "text", key_field=key_field)
    elif text_field is not None or key_field is not None:
        raise typer.BadParameter("--text-field and --key-field name the columns of a JSON Lines/CSV text source "
                                 "(modality: text, --source FILE.jsonl|csv); --key-field also of a table",
                                 param_hint="--text-field" if text_field is not None else "--key-field")
    if tabular_copies < 1:
        raise typer.BadParameter("must be at least 1: 0 copies is for tabular runs (originals and synthetic rows only)",
                                 param_hint="--copies")
    provenance = spec_source.provenance()
    if salt and not variant:
        raise typer.BadParameter("--salt only changes how --variant routes keys; add --variant", param_hint="--salt")
    if variant:
        pipe, provenance = _variants(pipe, provenance, variant, salt, require_approved=require_approved)
    split = load_split_selection(split_file) if split_file is not None else None
    from augledger.io.codecs import get_codec

    try:  # the modality's codec says which output formats exist (before any work)
        options = options.with_format(get_codec(pipe.modality).formats)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--output-format") from None
    progress = ProgressObserver(f"augmenting {pipe.fingerprint[7:19]}")
    observers: list[Any] = [progress]
    if mlflow:
        import logging

        from augledger.track.mlflow import MlflowObserver

        if not logging.getLogger().isEnabledFor(logging.INFO):  # MLflow's "creating tables" lines, unless -v
            logging.getLogger("mlflow").setLevel(logging.WARNING)

        observers.append(MlflowObserver(pipe, experiment=experiment, provenance=provenance))
    elif experiment is not None:
        raise typer.BadParameter("--experiment names an MLflow experiment; add --mlflow", param_hint="--experiment")
    try:
        result = materialize(pipe, rows or source, out, options=options, annotations=annotations, masks=masks,
                             key_column=key_column, observers=observers, command=["augledger", *sys.argv[1:]],
                             provenance=provenance, split=split, policies=[load_policy(p) for p in policy or ()])
    except BaseException as exc:
        for observer in observers[1:]:
            observer.close(exc)
        raise
    finally:
        progress.close()
    m = result.manifest
    seconds = result.run.get("seconds", 0.0)
    if as_json:
        typer.echo(json.dumps({**{k: m[k] for k in ("fingerprint", "seed", "counts", "quarantined")}, "registry": m.get("registry"),
                               "mlflow_run_id": getattr(observers[-1], "last_run_id", None) if mlflow else None,
                               "seconds": seconds, "reused": result.reused, "removed": result.removed}))
    else:
        c = m["counts"]
        if mlflow:
            console.print(f"MLflow run {getattr(observers[-1], 'last_run_id', None)} "
                          f"(experiment {experiment or 'augledger'})", highlight=False)
        things = {"image": "images", "audio": "audio files", "text": "texts"}.get(pipe.modality, "samples")
        console.print(f"[bold]{escape(str(out))}[/]: {c['ok']} outputs from {m['source']['images']} {things} in {seconds:.1f}s, "
                      f"pipeline {_version_label(m)}, seed {m['seed']}", highlight=False)
        for name, vc in c.get("variants", {}).items():
            weight = m["variants"]["variants"][[v["name"] for v in m["variants"]["variants"]].index(name)]["weight"]
            console.print(f"  variant {escape(name)} ({weight:g}): {vc['outputs']} outputs ({vc['ok']} ok, "
                          f"{vc['quarantined']} quarantined)", highlight=False)
        if result.reused:
            console.print(f"resumed: {result.reused} output(s) were already complete and verified; "
                          f"{c['outputs'] - result.reused} made now", highlight=False)
        if result.removed:
            console.print(f"[yellow]removed {result.removed} output file(s)[/] of sources that are gone or changed",
                          highlight=False)
        labels = c.get("labels") or {}
        if labels.get("outputs_with_problems"):
            console.print(f"[yellow]{labels['outputs_with_problems']} output(s) with label problems[/] ({labels['problems']} "
                          "in all: boxes outside the image, masks with new classes, changed labels; listed in each ledger "
                          "row's targets.label_problems; --strict-labels quarantines them)", highlight=False)
        if labels.get("outputs_with_drops"):
            console.print(f"{labels['outputs_with_drops']} output(s) dropped boxes or points by the spec's rules "
                          f"({labels['bboxes_dropped']} boxes, {labels['keypoints_dropped']} points; targets.dropped)",
                          highlight=False)
        if result.quarantined:
            console.print(f"[yellow]{c['quarantined_keys']} sample(s) quarantined[/] ({c['quarantined']} outputs):")
            seen = set()
            for q in result.quarantined:
                if q["key"] not in seen:
                    seen.add(q["key"])
                    console.print(f"  {escape(q['key'])}: {escape(q['error'])}", highlight=False)
    raise typer.Exit(0 if allow_quarantine else result.exit_code)
