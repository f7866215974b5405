"""The file instance plugin, driven over its real UNIX socket like the group controller drives it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from infrakit import errors
from infrakit.plugins.file import FileInstancePlugin
from infrakit.spi.event import Event
from infrakit.spi.instance import Attachment, Context, Spec
from infrakit.testing import serve_plugin, short_tempdir
from infrakit.testing.harness import Harness


@pytest.fixture
def instance_dir(infrakit_home: Path) -> Path:
    return infrakit_home / "instances"


@pytest.fixture
async def served(instance_dir: Path) -> AsyncIterator[tuple[FileInstancePlugin, Harness]]:
    plugin = FileInstancePlugin(instance_dir, poll_interval=0.05)
    async with serve_plugin(plugin, "instance-file") as harness:
        yield plugin, harness


async def _next_event(events: AsyncIterator[Event], timeout: float = 5.0) -> Event:
    return await asyncio.wait_for(anext(events), timeout)


async def test_provision_writes_an_infrakit_compatible_file(served, instance_dir: Path) -> None:
    _plugin, h = served
    spec = Spec(
        properties={"Note": "v1"},
        tags={"infrakit.group": "cattle", "tier": "web"},
        init="echo hi",
        attachments=[Attachment("vol-1", "volume")],
    )
    iid = await h.instance.provision(spec)
    assert iid is not None and iid.startswith("instance-")
    assert 0 <= int(iid.removeprefix("instance-")) < 2**63
    document = json.loads((instance_dir / iid).read_text())
    assert list(document) == ["ID", "LogicalID", "Tags", "Spec"]
    assert document["ID"] == iid
    assert document["Tags"] == {"infrakit.group": "cattle", "tier": "web"}
    assert document["Spec"]["Init"] == "echo hi"
    assert document["Spec"]["Attachments"] == [{"ID": "vol-1", "Type": "volume"}]
    # No temporary files are left behind.
    assert os.listdir(instance_dir) == [iid]


async def test_describe_filters_by_tags_and_returns_properties_on_request(served) -> None:
    _plugin, h = served
    web = await h.instance.provision(Spec(properties={"n": 1}, tags={"tier": "web", "g": "a"}))
    db = await h.instance.provision(Spec(properties={"n": 2}, tags={"tier": "db", "g": "a"}))
    both = {d.id for d in await h.instance.describe_instances({"g": "a"})}
    assert both == {web, db}
    only_web = await h.instance.describe_instances({"g": "a", "tier": "web"})
    assert [d.id for d in only_web] == [web]
    assert only_web[0].properties is None
    # InfraKit's rule: a wanted "" also matches a missing tag.
    assert {d.id for d in await h.instance.describe_instances({"missing": ""})} == {web, db}
    assert await h.instance.describe_instances({"missing": "x"}) == []
    with_props = await h.instance.describe_instances({"tier": "db"}, properties=True)
    assert with_props[0].properties["Properties"] == {"n": 2}


async def test_label_merges_into_top_level_tags(served, instance_dir: Path) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(tags={"a": "1", "b": "2"}))
    await h.instance.label(iid, {"b": "3", "c": "4"})
    document = json.loads((instance_dir / iid).read_text())
    assert document["Tags"] == {"a": "1", "b": "3", "c": "4"}
    assert document["Spec"]["Tags"] == {"a": "1", "b": "2"}
    (described,) = await h.instance.describe_instances({"c": "4"})
    assert described.id == iid


async def test_descriptions_share_no_state_a_label_could_change(instance_dir: Path) -> None:
    # In-process, descriptions without Properties are cached per record and hold the record's
    # own tags (no copy per call): a label makes a new record, so what was handed out before
    # stays as it was, and the file's Spec.Tags stays the provisioned tags.
    plugin = FileInstancePlugin(instance_dir)
    await plugin.start()
    try:
        spec_tags = {"infrakit.group": "g", "a": "1"}
        iid = await plugin.provision(Spec(properties={"n": 1}, tags=spec_tags))
        spec_tags["a"] = "changed by the caller afterwards"
        (before,) = await plugin.describe_instances({"infrakit.group": "g"})
        assert before.tags == {"infrakit.group": "g", "a": "1"}
        (again,) = await plugin.describe_instances({"infrakit.group": "g"})
        assert again is before  # cached, not rebuilt
        (full,) = await plugin.describe_instances({"infrakit.group": "g"}, properties=True)
        assert (full.id, full.logical_id, full.tags) == (before.id, before.logical_id, before.tags)
        await plugin.label(iid, {"a": "2"})
        (after,) = await plugin.describe_instances({"infrakit.group": "g"})
        assert after.tags == {"infrakit.group": "g", "a": "2"}
        assert before.tags == {"infrakit.group": "g", "a": "1"}
        document = json.loads((instance_dir / iid).read_text())
        assert document["Tags"] == {"infrakit.group": "g", "a": "2"}
        assert document["Spec"]["Tags"] == {"infrakit.group": "g", "a": "1"}
    finally:
        await plugin.stop()


async def test_a_listing_is_kept_until_one_of_its_records_changes(instance_dir: Path) -> None:
    # Not started: every read rescans, so external changes come through the same index.
    plugin = FileInstancePlugin(instance_dir)
    instance_dir.mkdir(parents=True)
    a1 = await plugin.provision(Spec(tags={"infrakit.group": "a"}))
    b1 = await plugin.provision(Spec(tags={"infrakit.group": "b"}))

    async def ids(tags: dict[str, str]) -> list[str]:
        return sorted(d.id for d in await plugin.describe_instances(tags))

    first = await plugin.describe_instances({"infrakit.group": "a"})
    first.clear()  # the caller's own list: the kept one is not touched
    assert await ids({"infrakit.group": "a"}) == [a1]
    assert await ids({}) == sorted([a1, b1])
    a2 = await plugin.provision(Spec(tags={"infrakit.group": "a"}))
    assert await ids({"infrakit.group": "a"}) == sorted([a1, a2])
    await plugin.label(b1, {"infrakit.group": "a"})
    assert await ids({"infrakit.group": "a"}) == sorted([a1, a2, b1])
    assert await ids({"infrakit.group": "b"}) == []
    (instance_dir / a1).unlink()  # out of band
    assert await ids({"infrakit.group": "a"}) == sorted([a2, b1])
    assert await ids({}) == sorted([a2, b1])
    document = json.loads((instance_dir / a2).read_text())
    document["Tags"]["infrakit.group"] = "c"
    (instance_dir / a2).write_text(json.dumps(document) + " ")  # another size: a new stamp
    assert await ids({"infrakit.group": "a"}) == [b1]
    assert await ids({"infrakit.group": "c"}) == [a2]
    await plugin.destroy(b1)
    assert await ids({"infrakit.group": "a"}) == []


async def test_destroy_removes_the_file_and_unknown_ids_are_not_found(
    served, instance_dir: Path
) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(tags={"a": "1"}))
    await h.instance.destroy(iid, Context("terminate"))
    assert not (instance_dir / iid).exists()
    with pytest.raises(errors.NotFoundError, match=f"instance {iid} not found"):
        await h.instance.destroy(iid, Context("terminate"))
    with pytest.raises(errors.NotFoundError, match="not a file plugin instance ID"):
        await h.instance.destroy("../../etc/passwd", Context())
    with pytest.raises(errors.NotFoundError):
        await h.instance.label("instance-1", {"a": "b"})


async def test_validate_accepts_objects_and_null_only(served) -> None:
    _plugin, h = served
    await h.instance.validate({"Note": "ok"})
    await h.instance.validate(None)
    with pytest.raises(errors.SpecError, match="expected a JSON object or null"):
        await h.instance.validate([1, 2])


async def test_files_written_by_go_infrakit_are_adopted(instance_dir: Path) -> None:
    """A directory written by the SEED Go plugin (indented, config_sha tag) is read as is."""
    instance_dir.mkdir(parents=True)
    (instance_dir / "instance-1431292921732113009").write_text(
        '{\n    "ID": "instance-1431292921732113009",\n    "LogicalID": null,\n'
        '    "Tags": {\n      "infrakit.config_sha": "eB2JuP0c5Sf41X5e2vc2gJ4ZTVg=",\n'
        '      "infrakit.group": "cattle"\n    },\n    "Spec": {"Properties": null, '
        '"Tags": {}, "Init": "", "LogicalID": null, "Attachments": null}\n  }'
    )
    (instance_dir / "README.md").write_text("not an instance")
    (instance_dir / "notes.json").write_text('{"ID": "something-else"}')
    plugin = FileInstancePlugin(instance_dir)
    async with serve_plugin(plugin, "instance-file") as h:
        found = await h.instance.describe_instances({"infrakit.group": "cattle"})
        assert [d.id for d in found] == ["instance-1431292921732113009"]
        assert len(await h.instance.describe_instances({})) == 1


async def test_external_deletion_is_published_as_an_event(served, instance_dir: Path) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(tags={"a": "1"}))
    events = h.instance.subscribe("instance/")
    try:
        assert (await _next_event(events)).type == "subscribed"  # the stream is live
        # Our own write is not echoed back by the watcher as an external change...
        (instance_dir / iid).unlink()
        event = await _next_event(events)
        assert (event.topic, event.type, event.id) == ("instance/change", "deleted", iid)
        assert await h.instance.describe_instances({}) == []
        # ... and an instance file copied in by a user appears.
        (instance_dir / "instance-42").write_text(
            json.dumps({"ID": "instance-42", "LogicalID": None, "Tags": {"a": "1"}, "Spec": None})
        )
        event = await _next_event(events)
        assert (event.type, event.id) == ("created", "instance-42")
        assert [d.id for d in await h.instance.describe_instances({"a": "1"})] == ["instance-42"]
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def test_without_a_watcher_reads_rescan(instance_dir: Path) -> None:
    """Not started (no watcher): every read looks at the directory, never answers stale."""
    plugin = FileInstancePlugin(instance_dir)
    instance_dir.mkdir(parents=True)
    iid = await plugin.provision(Spec(tags={"a": "1"}))
    (instance_dir / iid).unlink()
    assert await plugin.describe_instances({}) == []


async def test_instance_dir_that_is_a_file_is_refused() -> None:
    where = short_tempdir()
    try:
        path = where / "taken"
        path.write_text("")
        plugin = FileInstancePlugin(path)
        with pytest.raises(errors.SpecError, match="is a file, expected a directory"):
            await plugin.start()
    finally:
        import shutil

        shutil.rmtree(where)


async def test_group_index_follows_labels_and_deletions(served, instance_dir: Path) -> None:
    _plugin, h = served
    iid = await h.instance.provision(Spec(tags={"infrakit.group": "a"}))
    other = await h.instance.provision(Spec(tags={"infrakit.group": "a", "x": "1"}))
    await h.instance.label(iid, {"infrakit.group": "b"})
    assert [d.id for d in await h.instance.describe_instances({"infrakit.group": "a"})] == [other]
    assert [d.id for d in await h.instance.describe_instances({"infrakit.group": "b"})] == [iid]
    only_x = await h.instance.describe_instances({"infrakit.group": "a", "x": "1"})
    assert [d.id for d in only_x] == [other]
    await h.instance.destroy(other, Context("terminate"))
    assert await h.instance.describe_instances({"infrakit.group": "a"}) == []


FOREIGN_IDS = [
    pytest.param("README", id="a-file-of-the-directory"),
    pytest.param("../outside", id="a-path-out-of-the-directory"),
    pytest.param("instance-1\x00", id="a-NUL"),
    pytest.param("instance-" + "9" * 5000, id="5000-characters"),
    pytest.param(".instance-1.tmp", id="a-temporary-file"),
    pytest.param("instance-", id="no-number"),
]


@pytest.mark.parametrize("foreign", FOREIGN_IDS)
async def test_only_its_own_instance_files_can_be_destroyed_or_labelled(
    served, instance_dir: Path, foreign: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Destroy and Label of anything but one of its instance files is NotFound, one line, and
    touches nothing (the log has no traceback)."""
    _plugin, h = served
    (instance_dir / "README").write_text("keep me")
    (instance_dir / ".instance-1.tmp").write_text("")
    (instance_dir.parent / "outside").write_text("keep me too")
    for attempt in (
        h.instance.destroy(foreign, Context("terminate")),
        h.instance.label(foreign, {"a": "b"}),
    ):
        with pytest.raises(errors.NotFoundError) as caught:
            await attempt
        message = str(caught.value)
        assert "not a file plugin instance ID" in message and "\n" not in message
        assert len(message) < 300
    assert (instance_dir / "README").read_text() == "keep me"
    assert (instance_dir / ".instance-1.tmp").exists()
    assert (instance_dir.parent / "outside").read_text() == "keep me too"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_symlinks_are_never_followed_out_of_the_directory(instance_dir: Path) -> None:
    """An instance-named symlink to a file elsewhere is neither adopted nor destroyed."""
    instance_dir.mkdir(parents=True)
    target = instance_dir.parent / "elsewhere"
    target.write_text(json.dumps({"ID": "instance-7", "LogicalID": None, "Tags": {}, "Spec": None}))
    (instance_dir / "instance-7").symlink_to(target)
    plugin = FileInstancePlugin(instance_dir, poll_interval=0.05)
    async with serve_plugin(plugin, "instance-file") as h:
        assert await h.instance.describe_instances({}) == []
        with pytest.raises(errors.NotFoundError, match="instance instance-7 not found"):
            await h.instance.destroy("instance-7", Context("terminate"))
    assert (instance_dir / "instance-7").is_symlink() and target.exists()


async def test_files_not_named_like_instances_are_not_adopted(instance_dir: Path) -> None:
    """A valid record under another name is a stray file, not an instance Destroy could reach."""
    instance_dir.mkdir(parents=True)
    (instance_dir / "web1").write_text(json.dumps({"ID": "web1", "Tags": {}, "Spec": None}))
    plugin = FileInstancePlugin(instance_dir)
    async with serve_plugin(plugin, "instance-file") as h:
        assert await h.instance.describe_instances({}) == []
        with pytest.raises(errors.NotFoundError):
            await h.instance.destroy("web1", Context("terminate"))
    assert (instance_dir / "web1").exists()


async def test_stale_temporary_files_are_removed_at_start(
    instance_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What `kill -9` during a write leaves (0-byte .instance-*.tmp) goes at the next start, with
    one log line; other dot-files and a symlink's target stay."""
    instance_dir.mkdir(parents=True)
    for name in (".instance-1.tmp", ".instance-2.tmp", ".instance-4.31337.9f3a0c1b.tmp"):
        (instance_dir / name).write_bytes(b"")  # ours, and a pid/random-suffixed writer's
    target = instance_dir.parent / "precious"
    target.write_text("keep")
    (instance_dir / ".instance-3.tmp").symlink_to(target)
    (instance_dir / ".editor.swp").write_text("keep")
    caplog.set_level("INFO", logger="infrakit.plugins.file.plugin")
    plugin = FileInstancePlugin(instance_dir)
    async with serve_plugin(plugin, "instance-file") as h:
        assert sorted(p.name for p in instance_dir.iterdir()) == [".editor.swp"]
        iid = await h.instance.provision(Spec(tags={}))  # writing still works
        assert (instance_dir / iid).exists()
    assert target.read_text() == "keep"
    lines = [r.getMessage() for r in caplog.records if "stale temporary" in r.getMessage()]
    assert len(lines) == 1 and "removed 4 stale temporary file(s)" in lines[0]


async def _next_is_a_users_file(instance_dir: Path, events: AsyncIterator[Event]) -> None:
    """A file a user writes is published as ``created``: the next event is that, not an echo of
    the plugin's own write."""
    (instance_dir / "instance-43").write_text(
        json.dumps({"ID": "instance-43", "LogicalID": None, "Tags": {}, "Spec": None})
    )
    event = await _next_event(events)
    assert (event.type, event.id) == ("created", "instance-43")


@pytest.mark.parametrize("umask", [0o000, 0o277], ids=["umask-000", "umask-277"])
async def test_new_files_appear_complete_and_private_and_are_not_echoed(
    instance_dir: Path, umask: int
) -> None:
    # New files are written unnamed (O_TMPFILE) and linked in once complete: no temporary name
    # ever shows in the directory, the mode is 0600 whatever the umask, and the watcher's one
    # event for them (the unnamed file's CLOSE_WRITE) publishes nothing.
    plugin = FileInstancePlugin(instance_dir)
    await plugin.start()
    events = plugin.subscribe("instance/")
    try:
        old = os.umask(umask)
        try:
            iid = await plugin.provision(Spec(properties={"n": 1}, tags={"infrakit.group": "g"}))
        finally:
            os.umask(old)
        assert os.listdir(instance_dir) == [iid]
        assert (instance_dir / iid).stat().st_mode & 0o777 == 0o600
        document = json.loads((instance_dir / iid).read_text())
        assert document["Spec"] == {
            "Properties": {"n": 1},
            "Tags": {"infrakit.group": "g"},
            "Init": "",
            "LogicalID": None,
            "Attachments": None,
        }
        assert (await _next_event(events)).type == "created"
        await _next_is_a_users_file(instance_dir, events)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await plugin.stop()


async def test_without_unnamed_files_new_files_are_renamed_into_place(instance_dir: Path) -> None:
    # A file system without O_TMPFILE (or no /proc) makes the plugin rename temporary files, as
    # every rewrite does; what it writes and publishes is the same.
    plugin = FileInstancePlugin(instance_dir)
    await plugin.start()
    plugin._unnamed_files = False  # what the first refused O_TMPFILE open sets
    events = plugin.subscribe("instance/")
    try:
        iid = await plugin.provision(Spec(properties={"n": 1}, tags={"infrakit.group": "g"}))
        assert os.listdir(instance_dir) == [iid]
        assert (instance_dir / iid).stat().st_mode & 0o777 == 0o600
        assert json.loads((instance_dir / iid).read_text())["Tags"] == {"infrakit.group": "g"}
        assert (await _next_event(events)).type == "created"
        await _next_is_a_users_file(instance_dir, events)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await plugin.stop()


async def test_a_groups_instances_share_one_spec_body_also_after_a_restart(
    instance_dir: Path,
) -> None:
    # Memory: equal Properties, Init, LogicalID and Attachments are kept once, not per instance;
    # what is described and written stays each file's own.
    plugin = FileInstancePlugin(instance_dir)
    await plugin.start()
    try:
        ids = [
            await plugin.provision(
                Spec(properties={"n": 1}, tags={"infrakit.group": "g", "i": str(n)}, init="echo")
            )
            for n in range(3)
        ]
        odd = await plugin.provision(Spec(properties={"n": True}, tags={"infrakit.group": "g"}))
    finally:
        await plugin.stop()
    restarted = FileInstancePlugin(instance_dir)
    await restarted.start()
    try:
        for p in (plugin, restarted):
            bodies = {id(p._records[iid].body) for iid in ids}
            assert len(bodies) == 1
            assert id(p._records[odd].body) not in bodies  # 1 == True, but not the same JSON
        described = {
            d.id: d for d in await restarted.describe_instances({"infrakit.group": "g"}, True)
        }
        for iid in [*ids, odd]:
            document = json.loads((instance_dir / iid).read_text())
            assert described[iid].properties == document["Spec"]
            assert described[iid].tags == document["Tags"]
        assert described[odd].properties["Properties"] == {"n": True}
    finally:
        await restarted.stop()


async def test_a_second_plugin_on_the_directory_sees_new_files_and_in_place_writes(
    instance_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two managers share one directory: a file linked in complete (no rename, no CLOSE_WRITE of
    # its name) is seen by its CREATE; a file written in place by open() is empty at its
    # CREATE, read quietly then and indexed at its CLOSE_WRITE, with no warning.
    writer = FileInstancePlugin(instance_dir)
    watcher = FileInstancePlugin(instance_dir)
    await writer.start()
    await watcher.start()
    events = watcher.subscribe("instance/")
    try:
        iid = await writer.provision(Spec(properties={"n": 1}, tags={"infrakit.group": "g"}))
        event = await _next_event(events)
        assert (event.type, event.id) == ("created", iid)
        with (instance_dir / "instance-44").open("w") as handle:
            handle.write(json.dumps({"ID": "instance-44", "Tags": {"a": "1"}, "Spec": None}))
        event = await _next_event(events)
        assert (event.type, event.id) == ("created", "instance-44")
        described = await watcher.describe_instances({})
        assert sorted(d.id for d in described) == sorted([iid, "instance-44"])
        assert not [r for r in caplog.records if r.levelname == "WARNING"]
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        await watcher.stop()
        await writer.stop()
