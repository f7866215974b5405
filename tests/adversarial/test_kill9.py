"""``kill -9`` of ``infrakit up`` at random points of a commit, a heal and a rolling update.

Each round starts ``infrakit up`` (file plugin, vanilla flavor, the manager) in a fresh home with
two planted instance files that are not the group's, brings the group to the scenario, SIGKILLs the
whole process at a random point (after k of the creates, replacements or new instances), starts
it again and checks, with the instance directory listed every ~10 ms throughout: never above
Size + MaxSurge, exactly Size at one config at the end, the planted files untouched, the committed
spec kept. ``bench/attack.py --kills N`` runs the long version.
"""

from __future__ import annotations

import random

import pytest

from tests.adversarial.kit import SCENARIOS, kill_round

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

#: Rounds per scenario in CI (fixed seeds: the same kill points every run).
ROUNDS = 2


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("seed", range(ROUNDS))
def test_kill9_keeps_every_invariant(scenario: str, seed: int) -> None:
    result = kill_round(scenario, random.Random(f"{scenario}-{seed}"))
    assert result.problem is None, f"kill -9 {result.kill_point}: {result.problem}"
    assert result.samples > 10, "the sampler hardly ran; the round proves nothing"
