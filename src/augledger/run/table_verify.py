"""``augledger verify`` for a tabular output: recompute every row from the source and compare, cell by cell.

Checks, each problem naming the row (key and copy) and the column:

* the source file still has the SHA-256 the manifest records, and the recorded spec still resolves
  to the recorded fingerprint;
* ``augmented.parquet``, ``ledger.parquet`` and the statistics have the digests the manifest records;
* every row of ``augmented.parquet`` equals the one recomputed from the source: originals as read,
  augmented rows from their source row and seed, synthetic rows from their seeded draws; no row is
  missing or extra;
* independently of the draws, every stored synthetic row equals ``parent + weight * (other - parent)``
  (:func:`~augledger.ops.tabular.synth.interpolate`) of the parents' keys and the weight it records.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from augledger._canonical import sha256_hex
from augledger.env import EnvStamp
from augledger.errors import LedgerError
from augledger.ops.tabular.stats import stats_digest
from augledger.ops.tabular.synth import interpolate
from augledger.pipeline import Pipeline
from augledger.run.findings import Problem, VerifyReport
from augledger.run.manifest import read_manifest, read_run_info
from augledger.run.table import OUTPUT, build_table
from augledger.run.table_source import RESERVED, load_table

__all__ = ["replay_table_row", "verify_table"]


def _differences(stored: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    return [f"column {name!r} holds {stored.get(name)!r}, recomputed {expected.get(name)!r}"
            for name in expected if stored.get(name) != expected.get(name)]


def verify_table(out: str | Path, *, source: str | Path | None = None) -> VerifyReport:
    """Check a tabular output folder against its source (``source``: where it is now, if it moved).

    Raises:
        LedgerError: the folder is not a tabular output, or its source cannot be found.
    """
    import pyarrow.parquet as pq

    out = Path(out)
    manifest = read_manifest(out)
    if manifest.get("modality") != "tabular":
        raise LedgerError(f"{str(out)!r} is not a tabular output (modality {manifest.get('modality')!r})")
    report = VerifyReport(fingerprint=str(manifest["fingerprint"]))
    where = source if source is not None else read_run_info(out).get("source")
    if not where or not Path(where).is_file():
        raise LedgerError(f"the source table of {str(out)!r} is not at {where!r}; pass --source with where it is now")
    pipeline = Pipeline(manifest["resolved_spec"])
    report.env_differences = EnvStamp.from_dict(manifest["env"]).describe_differences(EnvStamp.current("tabular"))
    problems = report.problems
    if pipeline.fingerprint != manifest["fingerprint"]:
        problems.append(Problem("*", 0, f"the recorded spec now resolves to {pipeline.fingerprint}, not {manifest['fingerprint']}"))
        return report
    for name, entry in (("augmented.parquet", manifest["output"]), ("ledger.parquet", manifest["ledger"])):
        path = out / entry["path"]
        if not path.is_file() or sha256_hex(path.read_bytes()) != entry["sha256"]:
            problems.append(Problem("*", 0, f"{name} is missing or differs from the digest in manifest.json"))
    options, columns = manifest["options"], manifest["source"]["columns"]
    table = load_table(where, key_field=options["key_field"], label_field=options["label_field"],
                       numeric=columns["numeric"], categorical=columns["categorical"])
    if table.digest != manifest["source"]["digest"]:
        problems.append(Problem("*", 0, f"the source {str(where)!r} changed since the run "
                                             f"({table.digest} != {manifest['source']['digest']})"))
        return report
    built = build_table(pipeline, table, copies=int(options["copies"]))
    if stats_digest(built.stats) != manifest["stats"]["sha256"]:
        problems.append(Problem("*", 0, "the column statistics differ from the digest in manifest.json"))
    if not (out / OUTPUT).is_file():
        return report
    stored = {(r["key"], r["copy"]): r for r in pq.read_table(out / OUTPUT).to_pylist()}
    expected = {(r["key"], r["copy"]): r for r in built.rows}
    for pair in sorted(set(stored) - set(expected)):
        problems.append(Problem(pair[0], pair[1], "this row is not one the run makes (added or renamed)"))
    for pair, want in sorted(expected.items()):
        got = stored.get(pair)
        if got is None:
            problems.append(Problem(pair[0], pair[1], "this row is missing from augmented.parquet"))
            continue
        report.checked += 1
        problems.extend(Problem(pair[0], pair[1], d) for d in _differences(got, want))
    originals = {r["key"]: r for r in built.rows if r["origin"] == "original"}
    for (key, copy), row in sorted(stored.items()):
        if row.get("origin") != "synthetic":
            continue
        try:
            a, b = json.loads(row["parents"])
            values = {k: v for k, v in row.items() if k not in RESERVED or k == table.key_field}
            again = interpolate(originals[a], originals[b], float(row["weight"]), table.numeric, table.categorical)
        except (TypeError, ValueError, KeyError) as exc:
            problems.append(Problem(key, copy, f"its recorded parents/weight cannot be used ({exc!r})"))
            continue
        bad = [n for n in (*table.numeric, *table.categorical) if values.get(n) != again.get(n)]
        if bad:
            problems.append(Problem(key, copy, f"column(s) {bad} are not parent + weight * (other - parent) "
                                                    f"of its recorded parents {[a, b]} and weight {row['weight']!r}"))
    return report


def replay_table_row(out: str | Path, key: str, copy: int = 0, *, source: str | Path | None = None) -> dict[str, Any]:
    """Re-make the table and check the one row ``(key, copy)`` of ``augmented.parquet`` against it.

    A table is re-made whole (its column statistics and SMOTE's neighbours depend on every row), so
    this costs what :func:`verify_table` costs; it reports on the one row.

    Returns:
        The stored row (values and provenance: ``origin``, ``parents``, ``weight``, ``ops``, ``seed``).

    Raises:
        LedgerError: no such row, or it does not match what the source, spec and seed make.
    """
    import pyarrow.parquet as pq

    report = verify_table(out, source=source)
    stored = {(r["key"], r["copy"]): r for r in pq.read_table(Path(out) / OUTPUT).to_pylist()}
    row = stored.get((key, copy))
    if row is None:
        copies = sorted(c for k, c in stored if k == key)
        hint = f"it has copies {copies}" if copies else "no such key in augmented.parquet"
        raise LedgerError(f"no row for key {key!r} copy {copy} in {str(out)!r}; {hint}")
    mine = [p for p in report.problems if (p.key, p.epoch) == (key, copy) or p.key == "*"]
    if mine:
        raise LedgerError(f"re-making {key!r} copy {copy} does not give the stored row: "
                          + "; ".join(p.message for p in mine))
    return dict(row)
