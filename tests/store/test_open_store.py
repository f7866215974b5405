"""``open_store`` and the file store on bad input: missing directories, unreadable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from infrakit import errors
from infrakit.store import open_store
from infrakit.store.file import FileStore


def test_an_explicit_path_in_a_missing_directory_is_refused_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    target = tmp_path / "no" / "dir" / "x.json"
    with pytest.raises(errors.SpecError) as caught:
        open_store(str(target), tmp_path / "home")
    assert str(caught.value) == (
        f"store {target}: directory {target.parent} does not exist; "
        "create it or choose another --store"
    )
    assert not (tmp_path / "no").exists()


def test_an_explicit_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    with pytest.raises(errors.SpecError, match="is not a directory; create it or choose another"):
        open_store(f"file:{tmp_path / 'plain' / 'x.json'}", tmp_path)


async def test_the_default_store_creates_its_directory(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"
    store = open_store(None, home)
    await store.put("groups/a", {"ID": "a"})
    assert (home / "store.json.journal").is_file()
    assert FileStore(home / "store.json").load() == {"groups/a": {"ID": "a"}}


async def test_an_explicit_store_never_recreates_a_removed_directory(tmp_path: Path) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    store = open_store(str(directory / "s.json"), tmp_path / "home")
    directory.rmdir()
    with pytest.raises(errors.StoreError, match="does not exist"):
        await store.put("groups/a", {"ID": "a"})
    assert not directory.exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"schema": 1, "entries": {', "not valid JSON"),
        ('{"schema": 1}', "expected {"),
        ('{"schema": 99, "entries": {}}', "upgrade infrakit"),
    ],
)
def test_an_unreadable_store_file_is_an_error_and_left_untouched(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "store.json"
    path.write_text(content)
    with pytest.raises(errors.StoreError, match=expected):
        open_store(str(path), tmp_path)
    assert path.read_text() == content


def test_a_directory_as_the_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(errors.StoreError, match="is a directory; expected a JSON file"):
        FileStore(tmp_path).load()
