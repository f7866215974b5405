"""Vanilla's Init and InitScriptTemplateURL as templates, per instance, over a real socket;
lines without template syntax stay verbatim (Go InfraKit's behaviour)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infrakit import errors
from infrakit.plugins.combo import ComboFlavor
from infrakit.plugins.vanilla import VanillaFlavor
from infrakit.spi.flavor import AllocationMethod, Index
from infrakit.spi.instance import Spec
from infrakit.testing import serve_plugin
from infrakit.testing.fakes import lookup

PETS = AllocationMethod(logical_ids=["10.0.0.1", "10.0.0.2"])


async def test_init_lines_render_with_the_instance_being_prepared() -> None:
    props = {
        "Init": [
            "echo {{ instance.LogicalID }} {{ instance.Group }}/{{ instance.Index }}",
            "echo {{ INDEX.Group }}-{{ INDEX.Sequence }} {{ instance.Tags['infrakit.group'] }}",
            "echo '{not a template}' $HOME ${X} ${#X}",
            "echo ${#X} {{ instance.LogicalID }}",
        ]
    }
    spec = Spec(tags={"infrakit.group": "db"}, logical_id="10.0.0.2")
    async with serve_plugin(VanillaFlavor(), "flavor-vanilla") as h:
        await h.flavor.validate(props, PETS)
        prepared = await h.flavor.prepare(props, spec, PETS, Index("db", 7))
    assert prepared.init.splitlines() == [
        "echo 10.0.0.2 db/7",
        "echo db-7 db",
        "echo '{not a template}' $HOME ${X} ${#X}",
        "echo ${#X} 10.0.0.2",
    ]


async def test_a_go_template_init_script_is_used_verbatim_only_without_template_syntax(
    tmp_path: Path,
) -> None:
    script = tmp_path / "init.sh"
    script.write_text('#!/bin/sh\necho "{{ instance.LogicalID }}"\n{{ include("common.sh") }}')
    (tmp_path / "common.sh").write_text("echo common {{ INDEX.Sequence }}\n")
    props = {"InitScriptTemplateURL": script.as_uri()}
    async with serve_plugin(VanillaFlavor(), "flavor-vanilla") as h:
        await h.flavor.validate(props, PETS)
        prepared = await h.flavor.prepare(props, Spec(logical_id="10.0.0.1"), PETS, Index("g", 1))
        assert prepared.init == '#!/bin/sh\necho "10.0.0.1"\necho common 1\n'
        verbatim = {"InitScriptTemplateURL": "str://echo plain"}
        prepared = await h.flavor.prepare(verbatim, Spec(), PETS, Index("g", 1))
        assert prepared.init == "echo plain"


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (
            {"Init": ["{{ instance.Nope }}"]},
            "vanilla Properties.Init[0]:1: 'dict object' has no attribute 'Nope'",
        ),
        (
            {"Init": ["ok", "{{ nope }}"]},
            "vanilla Properties.Init[1]:1: undefined variable 'nope'; this template sees INDEX, instance",
        ),
        (
            {"InitScriptTemplateURL": 'str://{{ var "x" }}'},
            "this is Go template syntax (InfraKit's)",
        ),
        ({"Init": ["{{ ''.__class__ }}"]}, "not allowed in a spec template"),
    ],
)
async def test_a_bad_init_template_fails_validate_so_the_commit_is_refused(
    props: dict, message: str
) -> None:
    async with serve_plugin(VanillaFlavor(), "flavor-vanilla") as h:
        with pytest.raises(errors.InfrakitError, match=re.escape(message)):
            await h.flavor.validate(props, PETS)


async def test_combo_passes_each_sub_flavor_the_instance() -> None:
    vanilla = VanillaFlavor()
    combo = ComboFlavor(lookup({"flavor-vanilla": vanilla}))
    props = [
        {"Plugin": "flavor-vanilla", "Properties": {"Init": ["one {{ instance.LogicalID }}"]}},
        {"Plugin": "flavor-vanilla", "Properties": {"Init": ["two {{ INDEX.Sequence }}"]}},
    ]
    prepared = await combo.prepare(props, Spec(logical_id="10.0.0.1"), PETS, Index("g", 4))
    assert prepared.init == "one 10.0.0.1\ntwo 4"
