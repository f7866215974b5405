"""The file store: snapshot + journal, durable writes, group commit, compaction, torn lines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from infrakit import errors
from infrakit.store import file as file_store
from infrakit.store.file import FileStore


async def test_writes_survive_a_new_process_reading_the_files(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = FileStore(path)
    await store.put("groups/a", {"ID": "a", "n": 1})
    await store.put("groups/b", {"ID": "b"})
    await store.put("groups/a", {"ID": "a", "n": 2})
    await store.delete("groups/b")
    assert FileStore(path).load() == {"groups/a": {"ID": "a", "n": 2}}
    assert (tmp_path / "store.json.journal").stat().st_mode & 0o777 == 0o600


async def test_a_write_costs_one_journal_line_whatever_the_store_holds(tmp_path: Path) -> None:
    """Commit time must not grow with the number of groups: a put appends one line; the
    snapshot is rewritten only at compaction."""
    path = tmp_path / "store.json"
    store = FileStore(path)
    for i in range(300):
        await store.put(f"groups/g{i}", {"ID": f"g{i}", "Properties": {"x": "y" * 100}})
    journal = tmp_path / "store.json.journal"
    before = journal.stat().st_size
    await store.put("groups/one-more", {"ID": "one-more"})
    grew = journal.stat().st_size - before
    assert grew < 200  # one short line, not the whole store
    assert not path.exists()  # no snapshot yet: nothing was compacted


async def test_concurrent_writes_are_flushed_together_and_all_durable(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = FileStore(path)
    flushes = 0
    write = store._write_lines

    def counting(data: bytes) -> None:
        nonlocal flushes
        flushes += 1
        write(data)

    store._write_lines = counting  # type: ignore[method-assign]
    await asyncio.gather(*(store.put(f"k{i}", i) for i in range(50)))
    assert flushes < 50  # group commit: fewer fsyncs than writes
    assert FileStore(path).load() == {f"k{i}": i for i in range(50)}


async def test_compaction_moves_the_journal_into_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_store, "COMPACT_AFTER", 10)
    path = tmp_path / "store.json"
    store = FileStore(path)
    for i in range(25):
        await store.put("k", i)
    assert json.loads(path.read_text())["entries"]["k"] >= 9  # compacted at least once
    assert (tmp_path / "store.json.journal").stat().st_size < 200
    assert FileStore(path).load() == {"k": 24}


async def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    store = FileStore(path)
    await store.put("a", 1)
    journal = tmp_path / "store.json.journal"
    with journal.open("ab") as f:
        f.write(b'{"put":"b","val')  # a crash in the middle of an append
    again = FileStore(path)
    assert again.load() == {"a": 1}
    await again.put("c", 3)
    assert FileStore(path).load() == {"a": 1, "c": 3}
    assert journal.read_bytes().count(b"\n") == 2


def test_a_bad_line_inside_the_journal_is_an_error_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    journal = tmp_path / "store.json.journal"
    content = b'{"put":"a","value":1}\nnot json\n{"put":"b","value":2}\n'
    journal.write_bytes(content)
    with pytest.raises(errors.StoreError, match="line 2 is not a store write"):
        FileStore(path).load()
    assert journal.read_bytes() == content
