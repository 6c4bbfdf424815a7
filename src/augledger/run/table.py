"""``augledger run`` for ``modality: tabular``: one source table in, one Parquet table with provenance out.

The folder-of-files machinery (:mod:`augledger.run.materialize`: plan, journal, engines, shards)
is for one output file per sample; a table is written whole. This module reads the source
(:mod:`augledger.run.table_source`), computes the column statistics once, augments every original
row ``copies`` times through the pipeline (sample ``{"row", "stats"}``, epoch = copy), adds the
synthetic rows of the spec's ``targets.smote`` and ``targets.mixup`` (:mod:`augledger.ops.tabular.synth`),
and writes, in one process (a row costs microseconds; workers would cost more than they save)::

    OUT/augmented.parquet   every output row, sorted by (key, copy): provenance columns, then the source's
    OUT/stats.json          the column statistics the per-row ops and SMOTE read (digest in the manifest)
    OUT/ledger.parquet      the project's ledger, one row per output row (output_path: augmented.parquet)
    OUT/manifest.json       identity (modality: tabular), deterministic;  OUT/run.json  the run's facts

Provenance columns: ``key``; ``copy`` (-1 original, c for augmented copy c, 0 synthetic);
``origin`` (original | augmented | synthetic); ``parents`` (JSON list of keys: the source row of an
augmented row, the two rows a synthetic one interpolates); ``weight`` (synthetic rows);
``ops`` (JSON list of applied ops, replayable from their params); ``seed`` (32 hex digits);
``fingerprint``. The same inputs give the same bytes, whatever the source's row order.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from augledger._canonical import canonical_json, sha256_hex
from augledger._version import __version__
from augledger.env import EnvStamp
from augledger.errors import SourceError
from augledger.io.store import LocalStore
from augledger.ledger.parquet import LedgerWriter
from augledger.ledger.row import LedgerRow
from augledger.ops.tabular.stats import column_stats, numeric_matrix, stats_digest
from augledger.ops.tabular.synth import (
    Synthetic,
    interpolate,
    interpolate_many,
    plan_mixup,
    plan_smote,
    smote_targets,
    standardise,
)
from augledger.pipeline import Pipeline
from augledger.run.folder import MANIFEST, ORIGINAL_EPOCH, RUN_INFO, claim_folder, locked
from augledger.run.manifest import MANIFEST_FORMAT, run_info
from augledger.run.table_source import RESERVED, SourceTable, class_of, load_table

__all__ = ["OUTPUT", "STATS", "Built", "TableResult", "build_table", "output_bytes", "run_table"]

OUTPUT = "augmented.parquet"
STATS = "stats.json"


@dataclass
class Built:
    """Every output row (sorted by (key, copy)), the statistics, and the synthetic rows' recipes."""

    rows: list[dict[str, Any]]
    stats: dict[str, Any]
    synthetic: list[Synthetic]
    classes: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class TableResult:
    out: Path
    manifest: dict[str, Any]
    run: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return 0


def _json(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def _synthetic_counts(synthetic: Sequence[Synthetic], method: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in synthetic:
        if s.method == method:
            counts[s.label] = counts.get(s.label, 0) + 1
    return dict(sorted(counts.items()))


def build_table(pipeline: Pipeline, source: SourceTable, *, copies: int, synthetic: bool = True) -> Built:
    """Compute every output row of ``source`` under ``pipeline`` (what ``run`` writes and ``verify`` recomputes);
    ``synthetic=False`` leaves out the spec's SMOTE and mixup rows (a preview without a label column).

    Raises:
        SourceError: the spec asks for SMOTE or mixup without a label field, or SMOTE cannot reach a target.
        SampleError: a per-row op does not fit the table (a column that is not numeric, ...).
    """
    targets = pipeline.resolved_targets
    stats = column_stats(source.rows, source.numeric, source.categorical)
    fp, kf = pipeline.fingerprint, source.key_field
    out: list[dict[str, Any]] = []
    for row in source.rows:
        out.append({"key": row[kf], "copy": ORIGINAL_EPOCH, "origin": "original", "parents": None, "weight": None,
                    "ops": "[]", "seed": None, "fingerprint": None, **row})
    for copy in range(copies):
        for row in source.rows:
            key = row[kf]
            result = pipeline.apply({"row": row, "stats": stats}, key=key, epoch=copy)
            out.append({"key": key, "copy": copy, "origin": "augmented", "parents": _json([key]), "weight": None,
                        "ops": _json(list(result.record.ops)), "seed": result.record.seed, "fingerprint": fp,
                        **result.sample["row"]})
    made: list[Synthetic] = []
    classes: dict[str, dict[str, int]] = {}
    if synthetic and (targets.get("smote") or targets.get("mixup")):
        if source.label_field is None:
            raise SourceError("the spec's targets.smote / targets.mixup make rows per class: pass --label-field")
        lf = source.label_field
        missing = [r[kf] for r in source.rows if r[lf] is None]
        if missing:
            raise SourceError(f"column {lf!r} (--label-field) is empty for key(s) {missing[:5]}; every row needs a class")
        keys = [r[kf] for r in source.rows]
        labels = [class_of(r[lf]) for r in source.rows]
        counts: dict[str, int] = {}
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
        classes["original"] = dict(sorted(counts.items()))

        def derive(key: str) -> int:
            return pipeline.sample_seed(key=key, epoch=0)

        if targets.get("smote"):
            smote = targets["smote"]
            names = sorted(stats["numeric"])
            z = standardise(numeric_matrix(source.rows, names), [stats["numeric"][n]["mean"] for n in names],
                            [stats["numeric"][n]["std"] for n in names])
            try:
                wanted = smote_targets(counts, smote["sampling_strategy"])
                made += plan_smote(keys, labels, z, targets=wanted, k=int(smote["k_neighbors"]), derive=derive)
            except ValueError as exc:
                raise SourceError(f"{source.path.name}: {exc}") from None
        if targets.get("mixup"):
            mixup = targets["mixup"]
            made += plan_mixup(keys, labels, fraction=float(mixup["fraction"]), alpha=float(mixup["alpha"]), derive=derive)
        for s, row in zip(made, synthesize_all(made, source), strict=True):
            out.append({"key": s.key, "copy": 0, "origin": "synthetic", "parents": _json(list(s.parents)),
                        "weight": s.weight, "ops": _json([s.record]), "seed": f"{s.seed:032x}", "fingerprint": fp, **row})
        classes["smote"] = _synthetic_counts(made, "SMOTE")
        classes["mixup"] = _synthetic_counts(made, "RowMixup")
        classes["total"] = {c: counts[c] + classes["smote"].get(c, 0) + classes["mixup"].get(c, 0) for c in sorted(counts)}
    out.sort(key=lambda r: (r["key"], r["copy"]))
    return Built(out, stats, made, classes)


def synthesize(s: Synthetic, rows: dict[str, dict[str, Any]], source: SourceTable) -> dict[str, Any]:
    """The synthetic row of recipe ``s`` from the original rows by key (its key field set to ``s.key``)."""
    row = interpolate(rows[s.parents[0]], rows[s.parents[1]], s.weight, source.numeric, source.categorical)
    row[source.key_field] = s.key
    return row


def synthesize_all(made: Sequence[Synthetic], source: SourceTable) -> list[dict[str, Any]]:
    """:func:`synthesize` of every recipe in ``made``, the numeric columns in one NumPy pass (the same values)."""
    if not made:
        return []
    kf = source.key_field
    where = {r[kf]: i for i, r in enumerate(source.rows)}
    rows = interpolate_many(source.rows, numeric_matrix(source.rows, source.numeric), [where[s.parents[0]] for s in made],
                            [where[s.parents[1]] for s in made], [s.weight for s in made], source.numeric, source.categorical)
    for s, row in zip(made, rows, strict=True):
        row[kf] = s.key
    return rows


def _schema(source: SourceTable) -> Any:
    import pyarrow as pa

    fields = [pa.field("key", pa.string(), nullable=False), pa.field("copy", pa.int64(), nullable=False),
              pa.field("origin", pa.string(), nullable=False), pa.field("parents", pa.string()),
              pa.field("weight", pa.float64()), pa.field("ops", pa.string(), nullable=False),
              pa.field("seed", pa.string()), pa.field("fingerprint", pa.string())]
    for name in source.columns:
        if name == "key" and source.key_field == "key":
            continue
        kind = (pa.string() if name == source.key_field else pa.float64() if name in source.numeric
                else pa.string() if name in source.categorical else source.types[name])
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def output_bytes(rows: Sequence[dict[str, Any]], source: SourceTable, header: dict[str, Any]) -> bytes:
    """``augmented.parquet`` as bytes: the same rows give the same bytes (fixed schema, options, metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(source)
    arrays = [pa.array([r.get(f.name) for r in rows], type=f.type) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema.with_metadata({"augledger": _json(header)}))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=1 << 20)
    return sink.getvalue()


def _ledger_row(row: dict[str, Any], source_rows: dict[str, str], kf: str) -> LedgerRow:
    values = {k: v for k, v in row.items() if k not in RESERVED or k == kf}
    parents = json.loads(row["parents"]) if row["parents"] else None
    targets = {"origin": row["origin"], "parents": parents, "weight": row["weight"]}
    return LedgerRow(row["key"], row["copy"], row["seed"], ops=row["ops"], targets=_json(targets),
                     source_digest=source_rows.get(row["key"]) if row["origin"] != "synthetic" else None,
                     output_path=OUTPUT, output_digest=sha256_hex(canonical_json(_plain(values))),
                     fingerprint=row["fingerprint"])


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def run_table(pipeline: Pipeline, source: str | Path, out: str | Path, *, key_field: str, label_field: str | None = None,
              copies: int = 1, command: Sequence[str] | None = None) -> TableResult:
    """Augment a CSV or Parquet table into ``out`` (see the module docstring for the layout).

    Raises:
        SpecError: the spec is not ``modality: tabular``.
        SourceError: the source cannot be read or checked (naming the column and row).
        FingerprintConflict, OutputBusy: ``out`` holds another dataset, or another run is writing it.
    """
    from augledger.errors import SpecError

    if pipeline.modality != "tabular":
        raise SpecError(f"run_table needs a tabular spec; this one is modality {pipeline.modality!r}", location="modality")
    if copies < 0:
        raise ValueError(f"copies must be >= 0; got {copies}")
    t0, started = time.perf_counter(), datetime.now(timezone.utc)
    out, targets = Path(out), pipeline.resolved_targets
    table = load_table(source, key_field=key_field, label_field=label_field,
                       numeric=targets.get("numeric"), categorical=targets.get("categorical"))
    built = build_table(pipeline, table, copies=copies)
    env = EnvStamp.current(pipeline.modality)
    options = {"copies": copies, "key_field": key_field, "label_field": label_field}
    claim_folder(out, {"modality": "tabular", "fingerprint": pipeline.fingerprint, "seed": pipeline.seed,
                       "options": options, "env": env.to_dict()})
    header = {"kind": "tabular", "fingerprint": pipeline.fingerprint, "seed": pipeline.seed,
              "resolved_spec": pipeline.resolved_spec, "env": env.to_dict(), "options": options}
    folder = LocalStore(out)
    with locked(out):
        (out / MANIFEST).unlink(missing_ok=True)
        data = output_bytes(built.rows, table, {"fingerprint": pipeline.fingerprint, "seed": pipeline.seed})
        folder.write(OUTPUT, data)
        folder.write(STATS, json.dumps(built.stats, indent=1, sort_keys=True).encode())
        source_rows = {r[key_field]: sha256_hex(canonical_json(_plain(r))) for r in table.rows}
        rows_digest = hashlib.sha256()
        with LedgerWriter(out / "ledger.parquet", header) as ledger:
            for row in built.rows:
                entry = _ledger_row(row, source_rows, key_field)
                ledger.write(entry)
                rows_digest.update(canonical_json(entry.to_dict()) + b"\n")
        origins = {o: sum(1 for r in built.rows if r["origin"] == o) for o in ("original", "augmented", "synthetic")}
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT, "augledger": __version__, "modality": "tabular",
            "fingerprint": pipeline.fingerprint, "seed": pipeline.seed, "name": pipeline.name,
            "resolved_spec": pipeline.resolved_spec, "env": env.to_dict(), "options": options,
            "source": {"format": table.format, "rows": len(table.rows), "digest": table.digest,
                       "columns": {"key": key_field, "label": label_field, "numeric": table.numeric,
                                   "categorical": table.categorical}},
            "stats": {"path": STATS, "sha256": stats_digest(built.stats)},
            "counts": {"outputs": len(built.rows), "ok": len(built.rows), **origins, "classes": built.classes},
            "quarantined": [],
            "output": {"path": OUTPUT, "rows": len(built.rows), "sha256": sha256_hex(data)},
            "ledger": {"path": "ledger.parquet", "rows": len(built.rows), "sha256": sha256_hex((out / "ledger.parquet").read_bytes()),
                       "rows_sha256": "sha256:" + rows_digest.hexdigest()},
        }
        seconds = time.perf_counter() - t0
        facts = run_info(started=started.isoformat(timespec="seconds"),
                         finished=datetime.now(timezone.utc).isoformat(timespec="seconds"), seconds=seconds,
                         command=list(command) if command is not None else sys.argv, workers=1, out=out,
                         source=Path(source).resolve(), annotations=None, key_column=key_field, masks=None, reused=0,
                         made=len(built.rows), removed=0)
        facts["label_field"] = label_field
        folder.write(RUN_INFO, json.dumps(facts, indent=2, sort_keys=True).encode())
        folder.write(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return TableResult(out, manifest, facts)
