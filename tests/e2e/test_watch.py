"""``infrakit group watch --since 30s``: a heal that was over before watch connected is still
seen, from the group plugin's memory of its recent events (without ``--since`` it is not)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

UP_SOCKETS = ["group", "instance-file", "flavor-vanilla", "flavor-combo"]


def test_since_replays_a_heal_that_is_already_over(e2e: E2E) -> None:
    daemon = e2e.start("infrakit", "up", str(EXAMPLES / "cattle.json"), sockets=UP_SOCKETS)
    wait_for(lambda: "converged" in daemon.output(), what="the group to converge")
    instances = e2e.home / "instances"
    victim = sorted(instances.glob("instance-*"))[0].name
    (instances / victim).unlink()
    wait_for(
        lambda: (
            len(list(instances.glob("instance-*"))) == 5 and daemon.output().count("converged") >= 2
        ),
        what="the heal to be over",
    )

    late = e2e.run("group", "watch", "cattle", "--until-converged", "--timeout", "30")
    assert victim not in late.stdout, late.stdout  # connected after the heal: nothing to see

    watched = e2e.run(
        "group", "watch", "cattle", "--since", "30s", "--until-converged", "--timeout", "30"
    )
    lines = watched.stdout.splitlines()
    lost = [i for i, line in enumerate(lines) if "instance-lost" in line and victim in line]
    created = [i for i, line in enumerate(lines) if "instance-created" in line]
    assert lost, watched.stdout
    assert len(created) == 6, watched.stdout  # the first five and the replacement
    assert lost[0] < created[-1], watched.stdout  # in the order they happened
    assert lines[0].startswith("Group cattle: desired 5, actual 5"), lines[0]


def test_a_bad_since_is_one_line(e2e: E2E) -> None:
    err = e2e.fails("group", "watch", "cattle", "--since", "soon")
    assert err == "Error: --since soon: expected a duration, e.g. --since 30s or --since 5m", err
