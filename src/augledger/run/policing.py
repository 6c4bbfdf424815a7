"""Intensity policies in a run: checked on every pipeline before work, then on every value drawn.

``augledger run --policy FILE`` and a spec's own ``policy:`` key both apply to the whole run (every
variant). :func:`policy_check` refuses a pipeline that breaks one before any sample is read;
the :class:`~augledger.policy.RecordCheck` it returns then checks each ledger row as it arrives,
and the first row with a value outside its bound stops the run (what is complete stays journaled;
a rerun with the same policy re-checks it and refuses again). The manifest records the policies'
digests and how many values were checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from augledger.ledger.row import LedgerRow
from augledger.ops.registry import policy_vocabulary
from augledger.policy import RecordCheck, check_spec, policy_digest, policy_ops, raise_violations
from augledger.spec import PolicySpec
from augledger.variants import Augmenter, Variants

__all__ = ["police_rows", "policy_check"]


def policy_check(pipeline: Augmenter, policies: Sequence[PolicySpec]) -> RecordCheck | None:
    """The run's policies (``policies`` plus each pipeline's own), checked statically on every variant.

    Returns:
        The checker for the rows to come, or ``None`` when no policy applies.

    Raises:
        PolicyViolation: a pipeline breaks a policy; every violation is named.
    """
    arms = dict(pipeline.pipelines) if isinstance(pipeline, Variants) else {"": pipeline}
    found: dict[str, PolicySpec] = {}
    for policy in [*policies, *(arm.policy for arm in arms.values() if arm.policy is not None)]:
        found.setdefault(policy_digest(policy), policy)
    if not found:
        return None
    for name, arm in arms.items():
        for policy in found.values():
            names, aliases = policy_vocabulary(arm.modality, policy_ops(policy))
            what = f"variant {name!r} ({arm.name})" if name else f"pipeline {arm.name!r}"
            raise_violations(check_spec(policy, arm.resolved_spec, op_names=names, aliases=aliases), what)
    return RecordCheck(list(found.values()))


def police_rows(check: RecordCheck | None, rows: Iterable[LedgerRow]) -> None:
    """Check rows as they are journaled; the first values outside their bounds end the run.

    Raises:
        PolicyViolation: naming the sample, the op path, the param, the value and the bound.
    """
    if check is not None:
        raise_violations(check.check_rows(rows), "a value drawn while running is outside the policy (a defect: "
                         "report it); the run stopped")
