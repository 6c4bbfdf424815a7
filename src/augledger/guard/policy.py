"""Re-check a finished dataset against an intensity policy, from its manifest and ledger alone.

No source image is read and nothing is re-run: the manifest holds every pipeline's resolved spec
(checked as :func:`augledger.policy.check_spec` checks a spec) and the ledger every applied op
with its node path and drawn values (checked as a run checks them). A dataset made before ops
carried their paths (ledger format < 4) is still checked; its findings name the op's position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augledger._canonical import sha256_hex
from augledger.ledger.parquet import read_ledger
from augledger.ops.registry import policy_vocabulary
from augledger.policy import RecordCheck, Violation, check_spec, policy_digest, policy_ops
from augledger.run.manifest import read_manifest
from augledger.spec import PolicySpec

__all__ = ["PolicyReport", "check_output"]


@dataclass
class PolicyReport:
    """What :func:`check_output` found."""

    out: Path
    policy: str
    digest: str
    #: Whether the run that made the dataset enforced this very policy (its digest is in the manifest).
    enforced_at_run: bool
    samples: int = 0
    values_checked: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "policy": self.policy, "digest": self.digest, "ok": self.ok,
            "enforced_at_run": self.enforced_at_run, "samples_checked": self.samples,
            "values_checked": self.values_checked, "violations": [str(v) for v in self.violations],
        }


def check_output(out: str | Path, policy: PolicySpec) -> PolicyReport:
    """Check every pipeline of the dataset in ``out`` and every ledger row against ``policy``; a ledger
    that is not the one the manifest names is a violation too.

    Raises:
        LedgerError: ``out`` has no readable manifest or ledger, or a row's ops are not JSON ops.
    """
    out = Path(out)
    manifest = read_manifest(out)
    ledger = read_ledger(out)
    digest = policy_digest(policy)
    recorded = [p.get("digest") for p in (manifest.get("policy") or {}).get("policies", [])]
    report = PolicyReport(out, policy.name, digest, enforced_at_run=digest in recorded)
    arms = [(v["name"], v["resolved_spec"]) for v in manifest["variants"]["variants"]] if manifest.get("variants") \
        else [("", manifest["resolved_spec"])]
    for name, resolved in arms:
        names, aliases = policy_vocabulary(resolved["modality"], policy_ops(policy))
        for v in check_spec(policy, resolved, op_names=names, aliases=aliases):
            report.violations.append(Violation(f"variant {name!r} {v.location}" if name else v.location, v.message))
    recorded_digest = (manifest.get("ledger") or {}).get("sha256")
    actual = sha256_hex((out / "ledger.parquet").read_bytes())
    if recorded_digest != actual:  # the rows checked below are not the rows the run made
        report.violations.append(Violation("ledger.parquet", f"its SHA-256 {actual[:19]}… is not the manifest's "
                                           f"{str(recorded_digest)[:19]}…: the ledger was changed after the run "
                                           "(`augledger verify` tells what); its rows cannot vouch for the dataset"))
    check = RecordCheck([policy])
    report.violations += check.check_rows(ledger.rows())
    report.samples, report.values_checked = check.samples, dict(sorted(check.checked.items()))
    return report
