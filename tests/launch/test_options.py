"""Kind options: declared once with a parser; what build reads is parsed; a bad value is one line
naming the kind, the option, where the value came from, what was expected and an example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infrakit import errors
from infrakit.launch import registry
from infrakit.spi.option import (
    Option,
    choice,
    duration,
    flag,
    host_port,
    integer,
    non_negative_duration,
    path,
    resolve_options,
)


@pytest.mark.parametrize(
    ("parser", "text", "value"),
    [
        (duration, "10s", 10.0),
        (duration, "1m30s", 90.0),
        (duration, "500ms", 0.5),
        (duration, "2", 2.0),
        (non_negative_duration, "0s", 0.0),
        (flag, "true", True),
        (flag, "ON", True),
        (flag, "0", False),
        (flag, "no", False),
        (host_port, "127.0.0.1:24864", ("127.0.0.1", 24864)),
        (host_port, "[::1]:80", ("::1", 80)),
        (path, "~/x", Path("~/x").expanduser()),
        (integer, "42", 42),
        (choice("file", "etcd"), "etcd", "etcd"),
    ],
)
def test_parsers_turn_text_into_values(parser, text, value) -> None:
    assert parser(text) == value
    assert parser(parser(text)) == value  # a parsed value goes through unchanged


@pytest.mark.parametrize(
    ("parser", "text"),
    [
        (duration, "soon"),
        (duration, "0s"),
        (duration, "-1s"),
        (non_negative_duration, "-1"),
        (flag, "maybe"),
        (host_port, "127.0.0.1"),
        (host_port, "host:0"),
        (host_port, ":80"),
        (host_port, "host:http"),
        (integer, "1.5"),
        (choice("file", "etcd"), "File"),
        (path, "a\0b"),
    ],
)
def test_parsers_refuse_bad_text(parser, text) -> None:
    with pytest.raises(ValueError):
        parser(text)


def test_a_bool_is_not_a_duration_or_an_integer() -> None:
    with pytest.raises(ValueError):
        duration(True)
    with pytest.raises(ValueError):
        integer(False)
    assert flag(False) is False


POLL = Option("poll-interval", "resync", default="10s", env="IK_TEST_POLL", parse=duration)
DIR = Option("dir", "where", env="IK_TEST_DIR", parse=path)
NAME = Option("name", "a name")


def test_resolution_order_given_then_variable_then_default(monkeypatch) -> None:
    assert POLL.value({}, "k") == 10.0
    monkeypatch.setenv("IK_TEST_POLL", "2s")
    assert POLL.value({}, "k") == 2.0
    assert POLL.value({"poll-interval": "3s"}, "k") == 3.0
    assert POLL.value({"poll-interval": ""}, "k") == 2.0  # empty = not given
    monkeypatch.setenv("IK_TEST_POLL", "")
    assert POLL.value({}, "k") == 10.0  # an empty variable is not set either
    assert DIR.value({}, "k") is None
    assert NAME.value({"name": " raw text "}, "k") == " raw text "  # no parser: as given


def test_a_refused_value_is_one_line_naming_kind_option_source_expectation_and_example(
    monkeypatch,
) -> None:
    with pytest.raises(errors.SpecError) as given:
        POLL.value({"poll-interval": "soon"}, "group")
    assert str(given.value) == (
        "group option poll-interval: got 'soon', expected a Go duration above 0 "
        "(500ms, 1m30s; a bare number is seconds), e.g. 10s"
    )
    monkeypatch.setenv("IK_TEST_POLL", "0")
    with pytest.raises(
        errors.SpecError, match=r"^group option poll-interval: got '0' from IK_TEST_POLL, expected"
    ):
        POLL.value({}, "group")
    listen = Option("listen", "where", parse=host_port)
    with pytest.raises(errors.SpecError) as no_default:
        listen.value({"listen": "nowhere"}, "manager")
    assert "\n" not in str(no_default.value)
    assert str(no_default.value).endswith(
        "expected HOST:PORT with a fixed port, e.g. 127.0.0.1:24864"
    )


def test_resolve_options_parses_every_option_and_refuses_unknown_names() -> None:
    assert resolve_options("k", (POLL, DIR, NAME), {"dir": "/srv"}) == {
        "poll-interval": 10.0,
        "dir": Path("/srv"),
        "name": None,
    }
    with pytest.raises(errors.SpecError) as unknown:
        resolve_options("file", (DIR,), {"nosuch": "1", "dirr": "x"})
    assert str(unknown.value) == (
        "unknown option file.dirr, file.nosuch (file takes: dir); see `infrakit plugin kinds`"
    )
    with pytest.raises(errors.SpecError, match=r"unknown option vanilla.x \(vanilla takes none\)"):
        resolve_options("vanilla", (), {"x": "1"})


def test_every_first_party_option_default_parses() -> None:
    """A default is written as a user would write it; a typo there would fail every start."""
    for kind in registry.available().values():
        resolved = kind.resolve_options({})
        assert set(resolved) == {opt.name for opt in kind.options}


def test_the_poll_default_is_shared_by_the_group_and_manager_kinds() -> None:
    group = registry.get_kind("group").options
    manager = registry.get_kind("manager").options
    [group_poll] = [o for o in group if o.name == "poll-interval"]
    [manager_poll] = [o for o in manager if o.name == "poll-interval"]
    assert group_poll is manager_poll
    assert group_poll.value({}, "group") == 10.0


LISTING = """
import sys
from infrakit.launch import registry
kinds = registry.available()
for kind in kinds.values():
    kind.resolve_options({})
heavy = ("docker", "boto3", "botocore", "aetcd", "psutil", "libvirt", "aiohttp", "msgspec", "pydantic",
         "infrakit.rpc", "infrakit.plugins.file.plugin", "infrakit.plugins.process.plugin",
         "infrakit.plugins.loadbalancer.plugin",
         "infrakit.plugins.etcdmember.plugin",
         "infrakit.manager.manager", "infrakit.controller.group.controller")
print(sorted(kinds))
print([m for m in heavy if m in sys.modules])
"""


def test_listing_kinds_and_their_options_imports_no_plugin_and_no_sdk() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LISTING], capture_output=True, text=True, timeout=60, check=True
    )
    names, loaded = result.stdout.splitlines()
    assert names == str(
        [
            "aws",
            "combo",
            "docker",
            "etcd-member",
            "file",
            "group",
            "libvirt",
            "loadbalancer",
            "manager",
            "process",
            "simulator",
            "vanilla",
        ]
    )
    assert loaded == "[]", loaded


STARTING_ONE = """
import sys
from infrakit.launch import registry
registry.get_kind("vanilla")
print(sorted(m for m in sys.modules if m.endswith(".kind")))
"""


def test_looking_up_one_kind_loads_only_its_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-c", STARTING_ONE], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == str(["infrakit.plugins.vanilla.kind"])
