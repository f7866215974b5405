"""``infrakit group ...``: commit specs and look after groups (talks to the group plugin).

Output strings are InfraKit's where InfraKit had the verb: ``Committed <id>: <details>``,
``Committing <id> would involve: <details>``, ``Freed <id>``, ``Destroy <id> initiated``,
``Group <id> at <n> instances, scale to <m>``; ``describe`` prints InfraKit's ``ID LOGICAL TAGS``
table (``-q``: rows only) followed by infrakit's status; every read accepts ``-o json|yaml``.
``commit`` reads JSON or YAML (templates rendered first, every problem listed at once, a diff
after InfraKit's ``--pretend`` sentence, ``--detailed-exitcode``); ``validate`` checks spec
files offline (the library side is :mod:`infrakit.launch.validate`).
"""

from __future__ import annotations

import collections
import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from infrakit import errors
from infrakit.cli import reads
from infrakit.cli._common import (
    CliError,
    NamedGroup,
    call,
    client_for,
    echo_doc,
    fail,
    output_option,
    read_spec,
    template_options,
)
from infrakit.cli.metadata import get as get_metadata
from infrakit.cli.metadata import keys as metadata_keys
from infrakit.cli.reads import status_lines
from infrakit.rpc.client import SyncClient
from infrakit.spi import group as spi_group

if TYPE_CHECKING:
    from infrakit.controller.group.spec import GroupSettings
    from infrakit.specfile.diff import Change
    from infrakit.specfile.reader import SpecFile

__all__ = ["group_cli", "status_lines"]

OUTPUT = output_option


def _complete_groups(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    name = (ctx.parent.params.get("name") if ctx.parent else None) or "group"
    try:
        from infrakit import discovery

        entry = discovery.find(name)
        with SyncClient(name, entry.address, call_timeout=2.0) as client:
            result = client.call("Group.InspectGroups", {"Name": "", "ID": ""})
    except Exception:
        return []
    ids = [g.get("ID", "") for g in (result or {}).get("Groups") or []]
    return [click.shell_completion.CompletionItem(i) for i in ids if i.startswith(incomplete)]


GID = click.argument("gid", metavar="GROUP_ID", shell_complete=_complete_groups)


@click.group("group", cls=NamedGroup)
@click.option("--name", default="group", show_default=True, help="group plugin to talk to")
@click.pass_context
def group_cli(ctx: click.Context, name: str) -> None:
    """Commit group specs and manage groups."""
    ctx.obj = {"name": name}


def _client(ctx: click.Context) -> SyncClient:
    """One client (one kept-alive connection) for every call of the command."""
    client: SyncClient | None = ctx.obj.get("client")
    if client is None:
        client = ctx.obj["client"] = client_for(ctx.obj["name"])
    return client


def _group(ctx: click.Context, method: str, **params: Any) -> dict[str, Any]:
    client = _client(ctx)
    result = call(client, method, {"Name": "", **params}, spi_group.INTERFACE)
    return {k.lower(): v for k, v in (result or {}).items()} if isinstance(result, dict) else {}


@group_cli.command("commit")
@click.argument("spec_file", metavar="FILE")
@click.option(
    "--pretend", is_flag=True, help="only say what the commit would do, and show the diff"
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="exit 0 when nothing would change, 2 when something would, 1 on an error",
)
@template_options
@output_option
@click.pass_context
def commit(
    ctx: click.Context,
    spec_file: str,
    pretend: bool,
    detailed_exitcode: bool,
    var_pairs: tuple[str, ...],
    vars_files: tuple[str, ...],
    output: str,
) -> None:
    """Commit the group spec in FILE (`-` for stdin): JSON or YAML, rendered first when it is a
    template, checked offline (every problem at once) before the group plugin is called."""
    spec = read_spec(spec_file, var_pairs, vars_files)
    doc = spec.value
    if not isinstance(doc, dict):
        fail(f'spec file {spec.label}: expected a JSON object {{"ID": ..., "Properties": ...}}')
    view = {k.lower(): v for k, v in doc.items()}
    gid = view.get("id")
    if gid is not None and not isinstance(gid, str):
        fail(
            f'spec file {spec.label}: "ID" must be a string naming the group, got '
            f"{json.dumps(gid)}; quote it"
        )
    if not isinstance(gid, str) or not gid:
        fail(f"spec file {spec.label}: {spi_group.BLANK_ID}")
    settings = _checked(spec)
    changes = _changes(ctx, gid, settings) if pretend or detailed_exitcode else []
    if pretend and output != "text":
        plan = _group(ctx, "Group.Plan", ID=gid, Spec=doc).get("plan")
        if isinstance(plan, dict):
            plan = {**plan, "Diff": [c.to_wire() for c in changes]}
        echo_doc(plan, output)
        _exit_for_change(
            detailed_exitcode, changes, plan.get("Sentence") if isinstance(plan, dict) else None
        )
        return
    result = _group(ctx, "Group.CommitGroup", Spec=doc, Pretend=pretend)
    details = result.get("details", "")
    if output != "text":
        echo_doc({"ID": gid, "Details": details, "Pretend": pretend}, output)
    elif pretend:
        click.echo(f"Committing {gid} would involve: {details}")
        _echo_changes(gid, changes, spec)
    else:
        click.echo(f"Committed {gid}: {details}")
    _exit_for_change(detailed_exitcode, changes, details)


def _checked(spec: SpecFile) -> GroupSettings:
    """The settings of a spec with no problem; else exit 1 after its one problem (one line), or
    every problem numbered on stderr and a summary line."""
    from infrakit.launch.validate import check_spec

    report = check_spec(spec)
    if report.settings is None:
        if len(report.findings) == 1:
            fail(f"spec file {spec.label}: {report.summary()}")
        for i, finding in enumerate(report.findings, 1):
            click.echo(f"{i}. {finding.line()}", err=True)
        fail(f"spec file {spec.label}: {len(report.findings)} problems; fix them and commit again")
    return report.settings


def _changes(ctx: click.Context, gid: str, settings: GroupSettings) -> list[Change]:
    from infrakit.launch.validate import spec_changes

    committed = None
    for spec in _group(ctx, "Group.InspectGroups", ID="").get("groups") or []:
        if isinstance(spec, dict) and {k.lower(): v for k, v in spec.items()}.get("id") == gid:
            committed = spec
    return spec_changes(committed, settings)


def _echo_changes(gid: str, changes: list[Change], spec: SpecFile) -> None:
    from infrakit.specfile.diff import format_changes

    if spec.rendered is not None:
        click.echo(f"\nRendered spec ({spec.label}):")
        click.echo(spec.rendered.rstrip("\n"))
    if not changes:
        click.echo(f"\nNo change to the spec of {gid}.")
        return
    click.echo(f"\nChanges to the spec of {gid} (committed -> new):")
    colour = (lambda text, name: click.style(text, fg=name)) if sys.stdout.isatty() else None
    click.echo("\n".join(format_changes(changes, colour)))


def _exit_for_change(detailed: bool, changes: list[Change], sentence: object) -> None:
    """``--detailed-exitcode``: 2 when the spec or the instances would change, else 0."""
    if detailed and (changes or sentence not in ("Noop", None)):
        sys.exit(2)


@group_cli.command("validate")
@click.argument("spec_files", nargs=-1, required=True, metavar="FILE...")
@click.option(
    "--plugins", is_flag=True, help="also ask each spec's flavor and instance plugin (Validate)"
)
@template_options
@output_option
def validate(
    spec_files: tuple[str, ...],
    plugins: bool,
    var_pairs: tuple[str, ...],
    vars_files: tuple[str, ...],
    output: str,
) -> None:
    """Check group spec files without committing them (offline: no plugin is needed); every
    problem of every file at once, numbered. Exit 1 when any file has a problem."""
    from infrakit.launch.validate import Finding, Report, check_spec, check_with_plugins

    reports = []
    for path in spec_files:
        try:
            spec = read_spec(path, var_pairs, vars_files)
        except CliError as exc:  # unreadable or unrenderable: that file's one problem
            message = exc.format_message()
            where, text = path, message
            if message.startswith(path + ":"):  # a template error: FILE:LINE: what
                where, _, text = message.partition(": ")
            reports.append(Report(path, None, [Finding(where, text)]))
            continue
        report = check_spec(spec)
        if plugins:
            check_with_plugins(report)
        reports.append(report)
    bad = [r for r in reports if not r.ok]
    if output != "text":
        echo_doc([r.to_wire() for r in reports], output)
    else:
        for report in reports:
            if report.ok:
                click.echo(f"{report.source}: group {report.group} is valid")
                continue
            count = len(report.findings)
            click.echo(f"{report.source}: {count} problem{'s' if count != 1 else ''}")
            for i, finding in enumerate(report.findings, 1):
                click.echo(f"  {i}. {finding.line()}")
    if bad:
        total = sum(len(r.findings) for r in bad)
        fail(
            f"{total} problem{'s' if total != 1 else ''} in {len(bad)} of {len(reports)} spec files"
        )


@group_cli.command("describe")
@GID
@click.option("-q", "--quiet", is_flag=True, help="instance rows only")
@OUTPUT
@click.pass_context
def describe(ctx: click.Context, gid: str, quiet: bool, output: str) -> None:
    """List a group's instances, and its health and update status."""
    client = _client(ctx)
    if output != "text":
        result = _group(ctx, "Group.DescribeGroup", ID=gid)
        desc = {k.lower(): v for k, v in (result.get("description") or {}).items()}
        doc = {
            "ID": gid,
            "Instances": desc.get("instances") or [],
            "Converged": desc.get("converged", False),
            "Status": reads.group_status(client, gid),
        }
        echo_doc(doc, output)
        return
    try:
        instances, status = reads.describe_group(client, gid)
    except errors.InfrakitError as exc:
        fail(str(exc))
    warning = reads.unknown_warning(gid, status) if quiet else None
    if warning:
        click.echo(warning, err=True)
    click.echo(reads.describe_lines(gid, instances, status, quiet), nl=False)


@group_cli.command("inspect")
@GID
@OUTPUT
@click.pass_context
def inspect(ctx: click.Context, gid: str, output: str) -> None:
    """Print a group's committed spec."""
    result = _group(ctx, "Group.InspectGroups", ID="")
    for spec in result.get("groups") or []:
        view = {k.lower(): v for k, v in spec.items()}
        if view.get("id") == gid:
            if output != "text":
                echo_doc(spec, output)
            else:
                click.echo(json.dumps(spec, indent=2))
            return
    fail(f"Group {gid} is not being watched; see `infrakit group ls`")


@group_cli.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="IDs only")
@OUTPUT
@click.pass_context
def ls(ctx: click.Context, quiet: bool, output: str) -> None:
    """List the committed groups."""
    result = _group(ctx, "Group.InspectGroups", ID="")
    ids = [{k.lower(): v for k, v in g.items()}.get("id", "") for g in result.get("groups") or []]
    if output != "text":
        echo_doc(ids, output)
        return
    if not quiet:
        click.echo("ID")
    for gid in ids:
        click.echo(gid)


@group_cli.command("free")
@GID
@click.pass_context
def free(ctx: click.Context, gid: str) -> None:
    """Stop managing a group; its instances are left running."""
    _group(ctx, "Group.FreeGroup", ID=gid)
    click.echo(f"Freed {gid}")


@group_cli.command("destroy")
@GID
@click.pass_context
def destroy(ctx: click.Context, gid: str) -> None:
    """Stop managing a group and destroy all its instances."""
    _group(ctx, "Group.DestroyGroup", ID=gid)
    click.echo(f"Destroy {gid} initiated")


@group_cli.command("destroy-instances")
@GID
@click.argument("instance_ids", nargs=-1, required=True, metavar="INSTANCE_ID...")
@click.pass_context
def destroy_instances(ctx: click.Context, gid: str, instance_ids: tuple[str, ...]) -> None:
    """Destroy some members and shrink the group by as many (pets: they are replaced)."""
    _group(ctx, "Group.DestroyInstances", ID=gid, Instances=list(instance_ids))
    click.echo("Initiated.")


@group_cli.command("scale")
@GID
@click.argument("size", type=int, required=False)
@OUTPUT
@click.pass_context
def scale(ctx: click.Context, gid: str, size: int | None, output: str) -> None:
    """Print a group's target size, or set it to SIZE."""
    current = _group(ctx, "Group.Size", ID=gid).get("size")
    if size is None:
        if output != "text":
            echo_doc({"ID": gid, "Size": current}, output)
        else:
            click.echo(f"Group {gid} at {current} instances")
        return
    if size < 0:
        fail("size cannot be negative")
    _group(ctx, "Group.SetSize", ID=gid, Size=size)
    if output != "text":
        echo_doc({"ID": gid, "Size": size, "Previous": current}, output)
    else:
        click.echo(f"Group {gid} at {current} instances, scale to {size}")


def _extension(method: str, verb: str, done: str) -> click.Command:
    @click.command(verb)
    @GID
    @click.pass_context
    def command(ctx: click.Context, gid: str) -> None:
        _group(ctx, method, ID=gid)
        click.echo(done.format(gid=gid))

    command.help = {
        "pause": "Pause a group's rolling update.",
        "resume": "Resume a paused or failed rolling update.",
        "promote": "Promote a canary update: replace the remaining instances.",
        "rollback": "Commit the group's last spec that fully converged.",
        "reset": "Close a degraded group's circuit breaker and create again.",
    }[verb]
    return command


group_cli.add_command(_extension("Group.Pause", "pause", "Paused update of {gid}"))
group_cli.add_command(_extension("Group.Resume", "resume", "Resumed update of {gid}"))
group_cli.add_command(_extension("Group.Promote", "promote", "Promoted canary of {gid}"))
group_cli.add_command(_extension("Group.Rollback", "rollback", "Rolling back {gid}"))
group_cli.add_command(_extension("Group.Reset", "reset", "Reset {gid}"))


@group_cli.command("watch")
@GID
@click.option("--until-converged", is_flag=True, help="exit 0 once the group has converged")
@click.option("--interval", default=0.5, show_default=True, help="seconds between refreshes")
@click.option(
    "--timeout", type=float, default=None, help="give up (exit 1) after this many seconds"
)
@click.option(
    "--since",
    default=None,
    metavar="DURATION",
    help="first replay the events of the last DURATION (e.g. 30s): a heal already over shows",
)
@click.pass_context
def watch(
    ctx: click.Context,
    gid: str,
    until_converged: bool,
    interval: float,
    timeout: float | None,
    since: str | None,
) -> None:
    """Watch a group converge: a live view on a terminal, event lines otherwise.

    The view stays a screenful at any size: the summary, progress bars, instance counts, the
    instances needing attention (at most 10) and the last events."""
    if not 0 < interval < float("inf"):
        fail(f"--interval {interval:g}: expected seconds above 0, e.g. --interval 0.5")
    if timeout is not None and not 0 < timeout < float("inf"):
        fail(f"--timeout {timeout:g}: expected seconds above 0, e.g. --timeout 60")
    if since is not None:
        _check_since(since)
    client = _client(ctx)
    first = _status_or_fail(client, gid)
    log = _EventLog()
    _follow(ctx.obj["name"], gid, since, log)
    deadline = None if timeout is None else time.monotonic() + timeout
    if sys.stdout.isatty():
        _watch_live(client, gid, first, log, interval, until_converged, deadline)
        return
    _watch_lines(client, gid, first, log, interval, until_converged, deadline, timeout)


def _check_since(since: str) -> None:
    from infrakit._utils.duration import parse_duration

    try:
        parse_duration(since)
    except ValueError:
        fail(f"--since {since}: expected a duration, e.g. --since 30s or --since 5m")


class _EventLog:
    """Event lines the follower thread received: the last few hundred, and how many in all."""

    #: More than the group plugin replays (its last 1000), so ``--since`` prints them all.
    KEPT = 2000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lines: collections.deque[str] = collections.deque(maxlen=self.KEPT)
        self.total = 0
        #: Set once the replay of ``--since`` is over (or there is none, or the stream failed).
        self.replayed = threading.Event()

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
            self.total += 1

    def since(self, seen: int) -> tuple[list[str], int]:
        """Lines after the first ``seen`` (as many as are still kept, saying how many were not),
        and the new total."""
        with self.lock:
            new = min(self.total - seen, len(self.lines))
            lines = list(self.lines)[len(self.lines) - new :] if new else []
            if self.total - seen > new:
                lines.insert(0, f"({self.total - seen - new} events not shown: they came too fast)")
            return lines, self.total

    def last(self) -> list[str]:
        with self.lock:
            return list(self.lines)


#: Seconds ``watch --since`` waits for the replay before drawing anyway.
REPLAY_WAIT = 5.0


def _follow(name: str, gid: str, since: str | None, log: _EventLog) -> None:
    """Follow ``group/<gid>`` in a thread; with ``since``, wait (bounded) for the replay."""
    from infrakit.cli.watch import event_line

    def follow() -> None:
        try:
            with client_for(name) as stream:
                for ev in stream.events(
                    f"group/{gid}", since=since, on_replayed=lambda _: log.replayed.set()
                ):
                    log.add(event_line(ev))
        except Exception as exc:
            if since is not None and not log.replayed.is_set():
                click.echo(f"warning: no replay of recent events ({exc})", err=True)
        finally:
            log.replayed.set()

    if since is None:
        log.replayed.set()
    threading.Thread(target=follow, daemon=True).start()
    log.replayed.wait(REPLAY_WAIT)


def _watch_lines(
    client: SyncClient,
    gid: str,
    status: dict[str, Any],
    log: _EventLog,
    interval: float,
    until_converged: bool,
    deadline: float | None,
    timeout: float | None,
) -> None:
    """Not a terminal: the summary line, then each event as a line, then the final summary."""
    printed = 0
    shown = status_lines(gid, status)[0]
    click.echo(shown)
    while True:
        new, printed = log.since(printed)
        for line in new:
            click.echo(line)
        if until_converged and status.get("Converged"):
            final = status_lines(gid, status)[0]
            if final != shown or new:
                click.echo(final)
            return
        if deadline is not None and time.monotonic() > deadline:
            fail(
                f"group {gid} did not converge within {timeout:g}s; see `infrakit group describe {gid}`"
            )
        time.sleep(interval)
        status = _status_or_fail(client, gid)


def _status_or_fail(client: SyncClient, gid: str) -> dict[str, Any]:
    """Status with only the instances needing attention, at most a screenful of them."""
    from infrakit.cli.watch import ROWS_SHOWN

    params = {"Name": "", "ID": gid, "Limit": ROWS_SHOWN, "Filter": "attention"}
    result = call(client, "Group.Status", params)
    if not isinstance(result, dict):
        fail(f"group plugin {client.name} gave no status for {gid}")
    return result


def _watch_live(
    client: SyncClient,
    gid: str,
    status: dict[str, Any],
    log: _EventLog,
    interval: float,
    until_converged: bool,
    deadline: float | None,
) -> None:
    from rich.live import Live
    from rich.panel import Panel
    from rich.text import Text

    from infrakit.cli.watch import watch_lines

    def render(s: dict[str, Any]) -> Any:
        header = status_lines(gid, {**s, "Instances": [], "Decisions": []})
        return Panel(Text("\n".join(watch_lines(header, s, log.last()))), title=f"group {gid}")

    with Live(render(status), refresh_per_second=4, transient=False) as live:
        while True:
            if until_converged and status.get("Converged"):
                return
            if deadline is not None and time.monotonic() > deadline:
                fail(f"group {gid} did not converge in time; see `infrakit group describe {gid}`")
            time.sleep(interval)
            status = _status_or_fail(client, gid)
            live.update(render(status))


group_cli.add_command(metadata_keys)
group_cli.add_command(get_metadata)
