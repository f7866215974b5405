"""InfraKit's own tutorial test (SEED ``scripts/tutorial-test``) and the collabnix blog's test
drive, step by step, through the real console scripts and sockets, with InfraKit's exact output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E, EXAMPLES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def instance_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("instance-"))


def test_infrakit_tutorial_test(e2e: E2E) -> None:
    tutorial = e2e.home / "tutorial"
    tutorial.mkdir()
    e2e.start("infrakit-instance-file", "--dir", str(tutorial), sockets=["instance-file"])
    e2e.start("infrakit-group-default", "--poll-interval", "500ms", sockets=["group"])
    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])

    assert len(e2e.lines("plugin", "ls", "-q")) == 3
    assert e2e.lines("instance", "describe", "-q", "--name", "instance-file") == []

    out = e2e.run("group", "commit", str(EXAMPLES / "cattle.json")).stdout
    assert out == "Committed cattle: Managing 5 instances\n"
    wait_for(lambda: len(e2e.lines("group", "describe", "cattle", "-q")) == 5, what="5 members")
    assert len(e2e.lines("instance", "describe", "-q", "--name", "instance-file")) == 5
    first_five = {p.name for p in instance_files(tutorial)}

    assert e2e.run("group", "free", "cattle").stdout == "Freed cattle\n"
    out = e2e.run("group", "commit", str(EXAMPLES / "cattle.json")).stdout
    assert out == "Committed cattle: Managing 5 instances\n"
    assert e2e.run("group", "ls", "-q").stdout == "cattle\n"
    wait_for(
        lambda: "converged" in e2e.run("group", "describe", "cattle").stdout, what="re-adopted"
    )
    assert {p.name for p in instance_files(tutorial)} == first_five  # adopted, none created

    out = e2e.run("group", "commit", str(EXAMPLES / "cattle2.json"), "--pretend").stdout
    assert out.splitlines()[0] == (
        "Committing cattle would involve: Performing a rolling update on 5 instances, "
        "then adding 5 instances to increase the group size to 10"
    )
    assert "  ~ Properties.Allocation.Size: 5 -> 10" in out.splitlines()  # the diff follows
    e2e.run("group", "commit", str(EXAMPLES / "cattle2.json"))

    def ten_at_new_hash() -> bool:
        rows = e2e.lines("group", "describe", "cattle", "-q")
        return len(rows) == 10 and all("paoytoh5dtssp6gvpzpnv5zwqcpbstky" in r for r in rows)

    wait_for(ten_at_new_hash, timeout=30, what="10 instances at the new config hash")

    for path in instance_files(tutorial)[:3]:
        path.unlink()

    def healed() -> bool:
        return (
            len(instance_files(tutorial)) == 10
            and len(e2e.lines("group", "describe", "cattle", "-q")) == 10
        )

    wait_for(healed, what="self-heal back to 10")

    assert e2e.run("group", "destroy", "cattle").stdout == "Destroy cattle initiated\n"
    assert e2e.lines("instance", "describe", "-q", "--name", "instance-file") == []


def test_collabnix_test_drive_with_separate_daemons(e2e: E2E) -> None:
    """The blog: file plugin, group, vanilla, and a second file plugin in ./tutorial."""
    work = e2e.home / "work"
    work.mkdir()
    e2e.start("infrakit-instance-file", sockets=["instance-file"])
    e2e.start("infrakit-group-default", sockets=["group"])
    e2e.start("infrakit-flavor-vanilla", sockets=["flavor-vanilla"])
    e2e.start(
        "infrakit-instance-file",
        "--name",
        "collabnix-instance-file",
        "--dir",
        "./tutorial",
        sockets=["collabnix-instance-file"],
        cwd=work,
    )
    listing = e2e.run("plugin", "ls").stdout
    for name in ("instance-file", "group", "flavor-vanilla", "collabnix-instance-file"):
        assert name in listing
    assert "Instance/0.6.1" in listing and "Group/0.1.1" in listing

    spec = EXAMPLES / "collabnix.json"
    assert (
        e2e.run("group", "commit", str(spec)).stdout
        == "Committed collabnix: Managing 5 instances\n"
    )
    tutorial = work / "tutorial"
    wait_for(lambda: tutorial.exists() and len(instance_files(tutorial)) == 5, what="5 files")

    table = e2e.run("group", "describe", "collabnix").stdout.splitlines()
    assert table[0].split() == ["ID", "LOGICAL", "TAGS"]
    rows = [line for line in table[1:6]]
    assert all(r.startswith("instance-") and "infrakit.group=collabnix" in r for r in rows)
    assert all("  -   " in r for r in rows)  # InfraKit's placeholder for no logical ID

    inspected = json.loads(e2e.run("group", "inspect", "collabnix").stdout)
    assert inspected["ID"] == "collabnix"
    assert list(inspected["Properties"]) == ["Instance", "Flavor", "Allocation", "Updating"]

    described = e2e.lines("instance", "--name", "collabnix-instance-file", "describe")
    assert described[0].split() == ["ID", "LOGICAL", "TAGS"] and len(described) == 6
    # The default file plugin's own directory was not used.
    assert not list((e2e.home / "instances").glob("instance-*"))

    gone = [p.name for p in instance_files(tutorial)[:2]]
    for name in gone:
        (tutorial / name).unlink()

    def replaced() -> bool:
        names = {p.name for p in instance_files(tutorial)}
        return len(names) == 5 and not names & set(gone)

    wait_for(replaced, what="two new instances replacing the deleted ones")
    content = json.loads(instance_files(tutorial)[0].read_text())
    assert "Hello, World!" in content["Spec"]["Init"]
