"""Checking group spec files without committing them: ``infrakit group validate``, the local
check of ``group commit`` and ``infrakit up``, and the spec diff of ``group commit --pretend``.

:func:`check_spec` lists every problem of one spec file at once (the group spec rules of
:func:`~infrakit.controller.group.spec.spec_problems`, offline), each placed at ``FILE:LINE:COL``
of the key; :func:`check_with_plugins` adds what the spec's flavor and instance plugins say of
their Properties (``Flavor.Validate``, ``Instance.Validate``, found by name in the plugin
directory). :func:`spec_changes` is the field-by-field diff of a new spec against the committed
one, both normalised the way ``group inspect`` shows specs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from infrakit import discovery, errors
from infrakit.controller.group.spec import GroupSettings, Problem, parse_spec, spec_problems
from infrakit.rpc.client import SyncClient
from infrakit.specfile.diff import Change, diff
from infrakit.specfile.reader import SpecFile
from infrakit.spi import flavor as spi_flavor
from infrakit.spi import group as spi_group
from infrakit.spi import instance as spi_instance

__all__ = ["Finding", "Report", "check_spec", "check_with_plugins", "spec_changes"]


@dataclass(frozen=True)
class Finding:
    """One problem, placed: ``where`` is ``FILE:LINE:COL`` (or ``FILE``)."""

    where: str
    text: str
    problem: Problem | None = None

    def line(self) -> str:
        return f"{self.where}: {self.text}"

    def to_wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"Where": self.where, "Message": self.text}
        if self.problem is not None:
            doc.update(
                Path=self.problem.dotted,
                Expected=self.problem.expected,
                Found=self.problem.found,
                Hint=self.problem.hint,
            )
        return doc


@dataclass
class Report:
    """What was found in one spec file; ``settings`` is set when the spec is valid."""

    source: str
    group: str | None
    findings: list[Finding] = field(default_factory=list)
    settings: GroupSettings | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        """Every finding on one line: the first as its commit message (InfraKit's words), then
        ``(at FILE:LINE:COL; and N more: 2. ...; 3. ...)``."""
        first, *rest = self.findings
        text = first.problem.message if first.problem is not None else first.text
        notes = [f"at {first.where}"] if first.where != self.source else []
        if rest:
            more = "; ".join(f"{i}. {f.line()}" for i, f in enumerate(rest, 2))
            notes.append(f"and {len(rest)} more: {more}")
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def to_wire(self) -> dict[str, Any]:
        return {
            "File": self.source,
            "Group": self.group,
            "Valid": self.ok,
            "Problems": [f.to_wire() for f in self.findings],
        }


def check_spec(spec_file: SpecFile) -> Report:
    """Every problem of the group spec in ``spec_file``, offline (no plugin is asked)."""
    doc = spec_file.value
    if not isinstance(doc, dict):
        return Report(
            spec_file.label,
            None,
            [
                Finding(
                    spec_file.where(()),
                    'expected a group spec object {"ID": ..., "Properties": ...}, found '
                    f"{type(doc).__name__}",
                )
            ],
        )
    try:
        spec = spi_group.spec_from_wire(doc, "spec")
    except errors.SpecError as exc:
        return Report(spec_file.label, None, [Finding(spec_file.where(("ID",)), str(exc))])
    report = Report(spec_file.label, spec.id or None)
    problems = spec_problems(spec)
    if problems and problems[0].path != ("ID",):  # InfraKit's first check stays first
        # The rest in the order they are written, as an editor lists them.
        problems.sort(key=lambda p: spec_file.document.position(p.path) or (1 << 30, 0))
    for problem in problems:
        report.findings.append(Finding(spec_file.where(problem.path), problem.line(), problem))
    if report.ok:
        report.settings = parse_spec(spec)
    return report


def check_with_plugins(report: Report, call_timeout: float = 15.0) -> None:
    """Ask the flavor and the instance plugin of a valid spec whether they accept their
    Properties; their refusals (or absence) are added to ``report``."""
    settings = report.settings
    if settings is None:
        return
    props = settings.properties
    checks = (
        (
            "Flavor",
            props.flavor.plugin,
            "Flavor.Validate",
            spi_flavor.INTERFACE,
            {
                "Properties": props.flavor.properties,
                "Allocation": spi_flavor.allocation_to_wire(settings.allocation),
            },
        ),
        (
            "Instance",
            props.instance.plugin,
            "Instance.Validate",
            spi_instance.INTERFACE,
            {"Properties": props.instance.properties},
        ),
    )
    for label, plugin, method, interface, params in checks:
        lookup, sub = discovery.split_name(plugin)
        where = f"{report.source}: Properties.{label}"
        try:
            entry = discovery.find(plugin)
            with SyncClient(lookup, entry.address, call_timeout=call_timeout) as client:
                client.call(method, {"Type": sub or "", **params}, interface=interface)
        except errors.InfrakitError as exc:
            report.findings.append(Finding(where, f"{plugin} ({method}): {exc}"))


def spec_changes(committed: dict[str, Any] | None, new: GroupSettings) -> list[Change]:
    """The changes from the ``committed`` spec (as ``Group.InspectGroups`` returns it; None: a
    new group) to ``new``, both normalised (defaults filled in, keys in InfraKit's case)."""
    after = {"ID": new.id, "Properties": new.normalized()}
    if committed is None:
        return diff({}, after)
    old: Any
    try:
        old = parse_spec(spi_group.spec_from_wire(committed, "committed spec")).normalized()
    except errors.SpecError:  # committed by another controller: compare as it is
        view = {k.lower(): v for k, v in committed.items() if isinstance(k, str)}
        old = view.get("properties")
    return diff({"ID": new.id, "Properties": old}, after)
