"""The vanilla flavor's implementation (see the package docstring for its Properties)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from infrakit.errors import SpecError
from infrakit.specfile.syntax import has_template_syntax
from infrakit.spi.flavor import AllocationMethod, Index
from infrakit.spi.instance import Attachment, Description, Spec, attachments_from_wire
from infrakit.spi.types import JSON, Health, Tags, ci_get, ci_view, want_str, want_tags

__all__ = [
    "VanillaFlavor",
    "VanillaProperties",
    "instance_context",
    "parse_properties",
    "render_init",
]

MUTUALLY_EXCLUSIVE = 'Either "Init" or "InitScriptTemplateURL" can be specified but not both'

PROPERTIES_EXAMPLE: dict[str, Any] = {
    "Init": ["docker pull nginx:alpine", "docker run -d -p 80:80 nginx:alpine"],
    "Tags": {"tier": "web", "project": "infrakit"},
}
PROPERTIES_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {
        "Init": {"type": ["array", "string"], "items": {"type": "string"}},
        "InitScriptTemplateURL": {"type": "string", "description": "file:// or str:// URL"},
        "Tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "Attachments": {"type": "array"},
    },
}


@dataclass(slots=True)
class VanillaProperties:
    """Decoded and checked vanilla Properties."""

    init: list[str] = field(default_factory=list)
    init_script_url: str = ""
    tags: Tags = field(default_factory=dict)
    attachments: list[Attachment] = field(default_factory=list)


def parse_properties(properties: JSON) -> VanillaProperties:
    """Decode vanilla Properties, raising SpecError with the field and what was expected."""
    view = ci_view(properties, "vanilla Properties")
    raw_init = ci_get(view, "Init")
    if raw_init is None:
        init: list[str] = []
    elif isinstance(raw_init, str):
        init = [raw_init] if raw_init else []
    elif isinstance(raw_init, list) and all(isinstance(line, str) for line in raw_init):
        init = list(raw_init)
    else:
        raise SpecError(
            'vanilla Properties.Init: expected an array of strings, e.g. ["echo hello"]'
        )
    url = want_str(
        ci_get(view, "InitScriptTemplateURL"), "vanilla Properties.InitScriptTemplateURL"
    )
    if init and url:
        raise SpecError(MUTUALLY_EXCLUSIVE)
    if url:
        scheme = urlparse(url).scheme
        if scheme not in ("file", "str"):
            raise SpecError(
                f"vanilla Properties.InitScriptTemplateURL: scheme {scheme or 'none'!r} is not "
                f"supported; use file:///path/to/script or str://<script text>"
            )
    tags = want_tags(ci_get(view, "Tags"), "vanilla Properties.Tags")
    attachments = attachments_from_wire(
        ci_get(view, "Attachments"), "vanilla Properties.Attachments"
    )
    return VanillaProperties(init, url, dict(tags), attachments or [])


def read_init_script(url: str) -> tuple[str, Path | None]:
    """The script an ``InitScriptTemplateURL`` points at (a local file or ``str://`` text; no
    network), and the directory its includes are read from (None for ``str://``)."""
    if url.startswith("str://"):
        return url[len("str://") :], None
    path = Path(unquote(urlparse(url).path))
    try:
        return path.read_text(), path.parent
    except OSError as exc:
        raise SpecError(
            f"vanilla InitScriptTemplateURL {url}: cannot read {path} ({exc.strerror}); "
            f"check the path"
        ) from None


def instance_context(spec: Spec, index: Index) -> dict[str, Any]:
    """What an Init template sees of the instance being prepared: ``instance`` (ID, LogicalID,
    Group, Index, Tags) and Go InfraKit's ``INDEX`` (Group, Sequence). The instance plugin
    assigns the ID when it provisions, after Prepare: ``instance.ID`` is the LogicalID for pets
    and empty for cattle."""
    logical = spec.logical_id or ""
    return {
        "instance": {
            "ID": logical,
            "LogicalID": logical,
            "Group": index.group,
            "Index": index.sequence,
            "Tags": dict(spec.tags),
        },
        "INDEX": {"Group": index.group, "Sequence": index.sequence},
    }


class _AnyTags(dict[str, str]):
    """Tags of a sample instance: every tag is there, empty."""

    def __missing__(self, key: str) -> str:
        return ""


def render_init(parsed: VanillaProperties, context: dict[str, Any]) -> list[str]:
    """The Init lines of ``parsed`` for one instance: the script of ``InitScriptTemplateURL``
    first, then ``Init``; each rendered when it is a template (others verbatim, as Go)."""
    out: list[str] = []
    if parsed.init_script_url:
        script, root = read_init_script(parsed.init_script_url)
        out.append(_render(script, "vanilla InitScriptTemplateURL", root, context))
    for i, line in enumerate(parsed.init):
        out.append(_render(line, f"vanilla Properties.Init[{i}]", None, context))
    return out


def _render(text: str, name: str, root: Path | None, context: dict[str, Any]) -> str:
    if not has_template_syntax(text):
        return text
    from infrakit.specfile.template import render  # Jinja2: only once a template is rendered

    return render(text, name=name, root=root, context=context, shell=True)


class VanillaFlavor:
    """InfraKit's vanilla flavor."""

    def __init__(self) -> None:
        #: The last Properties object parsed, and what it parsed to: in-process, the group
        #: controller hands the very same object for every instance of a group, so a
        #: 10 000-instance scale-up parses it once instead of 10 000 times.
        self._last: tuple[JSON, VanillaProperties] | None = None
        #: The last parse's Init lines joined (see _joined_init).
        self._joined: tuple[VanillaProperties, str | None] | None = None

    def _parsed(self, properties: JSON) -> VanillaProperties:
        last = self._last
        if last is not None and last[0] is properties:
            return last[1]
        parsed = parse_properties(properties)
        self._last = (properties, parsed)
        return parsed

    def _joined_init(self, parsed: VanillaProperties) -> str | None:
        """``parsed.init`` as one script, joined once per parse: every instance of a group then
        holds the same string (10 000 instances: ~1 MB less). None when the script differs per
        instance (a template, or an InitScriptTemplateURL) and is rendered for each."""
        joined = self._joined
        if joined is None or joined[0] is not parsed:
            plain = not parsed.init_script_url and not any(map(has_template_syntax, parsed.init))
            joined = self._joined = (parsed, "\n".join(parsed.init) if plain else None)
        return joined[1]

    async def validate(self, properties: JSON, allocation: AllocationMethod) -> None:
        parsed = parse_properties(properties)  # always afresh: a commit may have changed it
        # A bad template fails the commit, not every create: rendered once for a sample
        # instance whose tags are all there (empty), as they are only known at Prepare.
        logical = allocation.logical_ids[0] if allocation.logical_ids else None
        sample = instance_context(Spec(logical_id=logical), Index())
        sample["instance"]["Tags"] = _AnyTags()
        render_init(parsed, sample)

    async def prepare(
        self, properties: JSON, spec: Spec, allocation: AllocationMethod, index: Index
    ) -> Spec:
        parsed = self._parsed(properties)
        shared = None if spec.init else self._joined_init(parsed)
        if shared is not None:
            init = shared  # the same string for every instance of the group
        else:
            lines = [spec.init] if spec.init else []
            lines.extend(render_init(parsed, instance_context(spec, index)))
            init = "\n".join(lines)
        attachments = spec.attachments
        if parsed.attachments:
            attachments = [*(spec.attachments or []), *parsed.attachments]
        tags = {**spec.tags, **parsed.tags} if parsed.tags else dict(spec.tags)
        # Built directly: dataclasses.replace looks up every field by name (~3 us a create).
        return Spec(
            properties=spec.properties,
            tags=tags,
            init=init,
            logical_id=spec.logical_id,
            attachments=attachments,
        )

    async def healthy(self, properties: JSON, instance: Description) -> Health:
        return Health.HEALTHY

    async def drain(self, properties: JSON, instance: Description) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"schema": PROPERTIES_SCHEMA, "example": PROPERTIES_EXAMPLE}
