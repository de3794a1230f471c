"""Whether a claim's conditions agree in direction, and if not, along which axis they part.

A pooled verdict averages over conditions (activations, dropout rates, targets). Where one
condition shows the effect and another shows its opposite, the average can point either way and
names neither: the headline must say that the effect depends on the axis that separates them.

A condition points one way when both its intervals (bootstrap and t check) exclude no effect on
that side, with the seeds a verdict needs (verdicts.MIN_PAIRED_SEEDS). The conditions disagree when at least one points the predicted way and one the other.
The axis they depend on is the first one (in the conditions' order) along which every value's
conditions point at most one way; where no single axis separates them, the first axis is taken,
and a side whose own conditions still disagree gets no verdict.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.report.effects import Effect
from pipeline.report.verdicts import MIN_PAIRED_SEEDS

FOR, AGAINST, NEITHER = 1, -1, 0


def direction(effect: Effect, predicts: int) -> int:
    """FOR when both intervals exclude no effect on the predicted side, AGAINST on the other side, else NEITHER."""
    if effect.interval is None or effect.check is None or effect.seeds < MIN_PAIRED_SEEDS:
        return NEITHER
    sides = {effect.interval.side_of(effect.null), effect.check.side_of(effect.null)}
    if sides == {predicts}:
        return FOR
    if sides == {-predicts}:
        return AGAINST
    return NEITHER


def disagree(directions: Sequence[int]) -> bool:
    return FOR in directions and AGAINST in directions


def split_axis(labels: Sequence[dict[str, str]], directions: Sequence[int]) -> str | None:
    """The axis to split the conditions along (each condition's labels: axis -> value), or None when they agree."""
    if not disagree(directions):
        return None
    axes = list(dict.fromkeys(axis for condition in labels for axis in condition))
    for axis in axes:
        seen: dict[str, set[int]] = {}
        for condition, pointing in zip(labels, directions, strict=True):
            if pointing != NEITHER:
                seen.setdefault(condition[axis], set()).add(pointing)
        if all(len(ways) == 1 for ways in seen.values()):
            return axis
    return axes[0]
