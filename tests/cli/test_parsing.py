"""Parsing: every bad argument is one ``Error:`` line naming it, what was expected and the next
step, exit 1, and nothing is created; the console scripts' and ``up``'s flags are the kinds'
options (one declaration each)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from infrakit.cli.daemons import daemon
from infrakit.cli.plugin import parse_options
from infrakit.cli.up import MANAGER_FLAGS, up
from infrakit.launch import registry
from tests.cli.conftest import error_line, invoke

pytestmark = pytest.mark.timeout(30)


def test_dash_o_options_are_grouped_by_kind() -> None:
    assert parse_options(["file.dir=./x", "group.poll-interval=1s", "file.dir=./y", "g.k=a=b"]) == {
        "file": {"dir": "./y"},
        "group": {"poll-interval": "1s"},
        "g": {"k": "a=b"},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["plugin", "start", "file", "-o", "filedir"],
            "-o 'filedir': expected KIND.OPTION=VALUE, e.g. -o file.dir=./tutorial",
        ),
        (["plugin", "start", "file", "-o", ".dir=x"], "-o '.dir=x': expected KIND.OPTION=VALUE"),
        (["plugin", "start", "file", "-o", "file.=x"], "-o 'file.=x': expected KIND.OPTION=VALUE"),
        (["plugin", "start", "nope"], "unknown plugin kind 'nope' (available: aws, combo, docker"),
        (["plugin", "start", "file", "-o", "vanilla.x=1"], "-o given for vanilla, which is not"),
        (
            ["plugin", "start", "file", "-o", "file.nosuchopt=1"],
            "unknown option file.nosuchopt (file takes: dir); see `infrakit plugin kinds`",
        ),
        (
            ["plugin", "start", "file:"],
            "'file:': the plugin name after ':' is empty; give one (file:NAME) or drop the ':' "
            "to use the default name instance-file",
        ),
        (
            ["plugin", "start", "group", "-o", "group.poll-interval=soon"],
            "group option poll-interval: got 'soon', expected a Go duration above 0",
        ),
        (
            ["plugin", "start", "manager", "-o", "manager.listen=nowhere"],
            "manager option listen: got 'nowhere', expected HOST:PORT with a fixed port, "
            "e.g. 127.0.0.1:24864",
        ),
        (
            ["plugin", "start", "manager", "-o", "manager.insecure=perhaps"],
            "manager option insecure: got 'perhaps', expected true or false",
        ),
        (
            ["plugin", "start", "simulator", "-o", "simulator.seed=x"],
            "simulator option seed: got 'x', expected an integer, e.g. 1",
        ),
        (["plugin", "stop", "--timeout", "-1", "group"], "--timeout -1: expected a number of"),
        (["plugin", "stop"], "name the plugins to stop (see `infrakit plugin ls`) or use --all"),
        (["plugin", "stop", "--all", "group"], "give plugin names or --all, not both"),
        (["plugin", "stop", "group"], "no plugin named group in "),
        (["up", "--ttl", "x"], "manager option ttl: got 'x', expected a Go duration above 0"),
        (["up", "--leader", "raft"], "manager option leader: got 'raft', expected one of file"),
        (["up", "--poll-interval", "0"], "manager option poll-interval: got '0', expected"),
        (["up", "--instances-dir", "a\0b"], "file option dir: got 'a\\x00b', expected a file"),
        (["up", "/no/such.json"], "spec file /no/such.json does not exist; check the path"),
        (["event", "tail", "--count", "0"], "--count 0: expected a number of events >= 1"),
        (["group", "watch", "cattle", "--interval", "-1"], "--interval -1: expected seconds"),
        (["instance", "--name", "x", "describe", "--tags", "nokey"], "--tags 'nokey': expected"),
    ],
)
def test_bad_arguments_are_one_error_line_and_create_nothing(
    infrakit_home: Path, args: list[str], message: str
) -> None:
    assert error_line(invoke(*args)).startswith(message)
    assert not (infrakit_home / "plugins").exists()


def test_a_bad_option_from_its_variable_names_the_variable(
    infrakit_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFRAKIT_GROUP_POLL_INTERVAL", "never")
    assert error_line(invoke("plugin", "start", "group")).startswith(
        "group option poll-interval: got 'never' from INFRAKIT_GROUP_POLL_INTERVAL, expected"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1]", 'spec file {f}: expected a JSON object {{"ID": ..., "Properties": ...}}'),
        ('{"ID": 7}', 'spec file {f}: "ID" must be a string naming the group, got 7; quote it'),
        (
            '{"ID": ""}',
            'spec file {f}: Group ID must not be blank (set "ID" at the top of the spec)',
        ),
        ('{"ID": "a",', "spec file {f}: not valid JSON (Expecting"),
        ("[" * 300 + "]" * 300, "spec file {f}: JSON nested deeper than 256 levels"),
    ],
)
def test_group_commit_checks_its_file_before_calling_a_plugin(
    tmp_path: Path, content: str, message: str
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(content)
    assert error_line(invoke("group", "commit", str(spec))).startswith(message.format(f=spec))


def test_a_file_that_is_not_utf8_is_named_with_the_byte_and_the_fix(tmp_path: Path) -> None:
    spec = tmp_path / "utf16.json"
    spec.write_bytes('{"ID": "x"}'.encode("utf-16"))
    assert error_line(invoke("group", "commit", str(spec))) == (
        f"spec file {spec}: not UTF-8 text (byte 0xff at offset 0; it looks like UTF-16); save "
        "it as UTF-8 JSON and try again"
    )


def test_a_directory_is_not_read_as_a_file(tmp_path: Path) -> None:
    assert error_line(invoke("instance", "--name", "x", "validate", str(tmp_path))) == (
        f"properties file {tmp_path} is a directory; expected a JSON file (or - for standard input)"
    )


# --- flags generated from the kinds' options ---------------------------------------------------


def option_rows(help_text: str) -> str:
    return " ".join(help_text.split())  # click wraps help: compare with whitespace collapsed


@pytest.mark.parametrize("kind_name", ["file", "group", "vanilla", "combo"])
def test_a_console_script_has_one_flag_per_option_of_its_kind(kind_name: str) -> None:
    kind = registry.get_kind(kind_name)
    command = daemon(f"infrakit-{kind_name}", kind, "summary")
    flags = {p.name: p for p in command.params if isinstance(p, click.Option)}
    assert set(flags) == {"name", "log_level", "log_format"} | {
        f"{kind.name}__{o.name.replace('-', '_')}" for o in kind.options
    }
    assert flags["name"].default == kind.default_name
    text = option_rows(invoke("--help", command=command).stdout)
    for opt in kind.options:
        assert f"--{opt.name}" in text
        assert option_rows(opt.help) in text
        if opt.env:
            assert opt.env in text
        if opt.default is not None:
            assert f"default: {opt.default}" in text


def test_the_group_default_script_checks_its_flags_with_the_kinds_parser(
    infrakit_home: Path,
) -> None:
    command = daemon("infrakit-group-default", registry.get_kind("group"), "summary")
    assert error_line(invoke("--poll-interval", "soon", command=command)).startswith(
        "group option poll-interval: got 'soon', expected a Go duration above 0"
    )
    assert not (infrakit_home / "plugins").exists()


def test_up_offers_the_manager_options_and_the_file_dir_as_flags() -> None:
    manager = {o.name: o for o in registry.get_kind("manager").options}
    flags = {p.opts[0]: p for p in up.params if isinstance(p, click.Option)}
    for name in MANAGER_FLAGS:
        assert f"--{name}" in flags
        assert flags[f"--{name}"].help is not None
        assert flags[f"--{name}"].help.startswith(manager[name].help)
    assert flags["--insecure"].is_flag
    assert flags["--ttl"].metavar == "DURATION" and flags["--listen"].metavar == "HOST:PORT"
    assert flags["--instances-dir"].help is not None
    assert flags["--instances-dir"].help.startswith(registry.get_kind("file").options[0].help)
    assert "--etcd" not in flags  # the endpoint comes from an etcd:// store


def test_plugin_kinds_lists_every_kind_and_option(infrakit_home: Path) -> None:
    result = invoke("plugin", "kinds")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    kinds = registry.available()
    assert len(lines) == len(kinds) + sum(len(k.options) for k in kinds.values())
    assert lines[0].split()[:2] == ["aws", "aws"]
    assert (
        "            -o group.poll-interval=...  resync period (Go duration, e.g. 10s, 500ms) "
        "(default 10s, env INFRAKIT_GROUP_POLL_INTERVAL)"
    ) in lines
    assert not (infrakit_home / "plugins").exists()


def test_version_comes_from_the_package() -> None:
    import infrakit

    assert invoke("version").stdout == f"Version: {infrakit.__version__}\n"
    assert invoke("--version").stdout == f"Version: {infrakit.__version__}\n"
    from importlib.metadata import version

    assert version("pyinfrakit") == infrakit.__version__  # the package metadata reads it
