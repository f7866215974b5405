"""The template sandbox: functions, one-line errors with file:line, and what it refuses
(injection, files outside the tree, include cycles, huge loops, memory bombs)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from infrakit.errors import SpecError
from infrakit.specfile.template import (
    DEFERRED_CONTEXT,
    OUTPUT_CAP,
    RENDER_SECONDS,
    has_template_syntax,
    render,
)

VARS = {"region": "eu-west-1", "size": 3, "cluster": {"size": 5}, "a-b": "dash"}


def r(text: str, root: Path | None = None, **context: object) -> str:
    return render(text, name="spec.yaml", root=root, variables=VARS, context=context)


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ('{{ var("region") }}', "eu-west-1"),
        ("{{ region }}-{{ size + 1 }}", "eu-west-1-4"),
        ('{{ var("cluster/size") }} {{ var("/cluster/size") }}', "5 5"),
        ('{{ var("a-b") }}', "dash"),
        ('{{ var("nope", default="d") }}', "d"),
        ("{{ nope | default('x') }} {{ default(nope, 'y') }} {{ default(none, 'z') }}", "x y z"),
        ('{{ required(region, "set region") }}', "eu-west-1"),
        (
            "{{ {'a': [1, 2]} | jsonEncode }} {{ jsonEncode([1], indent=None) }}",
            '{"a": [1, 2]} [1]',
        ),
        ("{{ jsonDecode('{\"a\": 7}').a }} {{ ('[1, 2]' | jsonDecode)[1] }}", "7 2"),
        ("{{ yamlEncode({'a': 'yes'}) }}", "a: 'yes'\n"),
        ("{{ yamlDecode('a: [1, 2]').a | sum }}", "3"),
        ("{{ {'k': 1} | tojson }}", '{"k": 1}'),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
        (
            "{% set ns = namespace(n=0) %}{% for i in [1, 2] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
            "3",
        ),
        ("{{ '%s-%d' % ('a', 1) }} {{ '{}!'.format('b') }} {{ 'x' ~ 1 }}", "a-1 b! x1"),
        ("no template here {x}", "no template here {x}"),
        ("{# a comment #}kept\n", "kept\n"),
    ],
)
def test_functions_and_vars(text: str, out: str) -> None:
    assert r(text) == out


def test_env_is_read_only_through_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IK_TEST_REGION", "us-east-1")
    assert r('{{ env("IK_TEST_REGION") }} {{ env("IK_TEST_NOPE", "d") }}') == "us-east-1 d"
    with pytest.raises(SpecError, match=r"^spec.yaml:1: undefined variable 'IK_TEST_REGION'"):
        r("{{ IK_TEST_REGION }}")  # never implicitly
    with pytest.raises(SpecError, match="environment variable IK_TEST_NOPE is not set"):
        r('{{ env("IK_TEST_NOPE") }}')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a\nb\n{{ regoin }}",
            "spec.yaml:3: undefined variable 'regoin'; pass --var regoin=VALUE, add it to the spec's Vars, or write {{ regoin | default('...') }}",
        ),
        (
            "{{ vra('x') }}",
            "spec.yaml:1: no function 'vra'; did you mean var? the template functions are var, include, env, default, required, jsonEncode, jsonDecode, yamlEncode, yamlDecode (and Jinja2's filters)",
        ),
        (
            'x\n{{ var("zone") }}',
            "spec.yaml:2: var 'zone' is not set (vars set: a-b, cluster, region, size); pass --var zone=VALUE, add it to the spec's Vars, or write var('zone', default=...)",
        ),
        (
            '{{ required(zone, "zone: pass --var zone=eu-west-1a") }}',
            "spec.yaml:1: zone: pass --var zone=eu-west-1a",
        ),
        ('{{ required("", "empty") }}', "spec.yaml:1: empty"),
        (
            '\n{{ var "region" }}',
            "spec.yaml:2: template syntax error: expected token 'end of print statement', got 'string'; this is Go template syntax (InfraKit's); infrakit templates are Jinja2: write {{ var(\"...\") }}",
        ),
        ("{% for x in [1] %}", "spec.yaml:1: template syntax error: Unexpected end of template."),
        ("{{ 1 / 0 }}", "spec.yaml:1: ZeroDivisionError: division by zero; fix the template"),
        ("{{ jsonDecode('{') }}", "spec.yaml:1: jsonDecode: not JSON"),
    ],
)
def test_bad_templates_fail_with_one_line_naming_file_line_and_fix(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        r(text)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''['__class__'] }}",
        "{{ (1).__class__.__base__ }}",
        "{{ range.__globals__ }}",
        "{{ var.__globals__['os'] }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ [1].append(2) }}",
        "{{ {'a': 1}.update({'b': 2}) }}",
        "{{ [].pop() }}",
        "{{ ''.format.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
    ],
)
def test_template_injection_cannot_reach_python_internals_or_mutate(text: str) -> None:
    with pytest.raises(SpecError) as caught:
        r(text)
    message = str(caught.value)
    assert message.startswith("spec.yaml:1: ")
    assert "not allowed in a spec template" in message or "undefined" in message


def test_lipsum_cycler_and_joiner_are_not_offered() -> None:
    for name in ("lipsum", "cycler", "joiner"):
        with pytest.raises(SpecError, match=f"no function '{name}'|undefined variable '{name}'"):
            r(f"{{{{ {name}() }}}}")


def tree(tmp_path: Path) -> Path:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "sub").mkdir()
    (tmp_path / "secret.txt").write_text("outside")
    (tmp_path / "spec" / "sub" / "init.sh").write_text("echo {{ region }}\n")
    (tmp_path / "spec" / "a.yaml").write_text('{{ include("b.yaml") }}')
    (tmp_path / "spec" / "b.yaml").write_text('{{ include("a.yaml") }}')
    (tmp_path / "spec" / "self.yaml").write_text("{% include 'self.yaml' %}")
    os.symlink(tmp_path / "secret.txt", tmp_path / "spec" / "link.txt")
    return tmp_path / "spec"


def test_includes_are_relative_to_the_spec_and_confined_to_its_tree(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert r('{{ include("sub/init.sh") }}', root) == "echo eu-west-1\n"
    assert r("{% include 'sub/init.sh' %}", root) == "echo eu-west-1\n"
    for path in ("../secret.txt", "link.txt", "/etc/passwd", "sub/../../secret.txt"):
        with pytest.raises(SpecError, match=r"is outside .*, the spec's directory tree"):
            r(f'{{{{ include("{path}") }}}}', root)
    with pytest.raises(SpecError, match=r"include 'nope.yaml': .* does not exist"):
        r('{{ include("nope.yaml") }}', root)
    with pytest.raises(SpecError, match="no directory to include from"):
        r('{{ include("sub/init.sh") }}')


def test_include_cycles_are_refused(tmp_path: Path) -> None:
    root = tree(tmp_path)
    with pytest.raises(
        SpecError, match=r"include cycle: a.yaml -> b.yaml -> a.yaml; break the cycle"
    ):
        r('{{ include("a.yaml") }}', root)
    start = time.monotonic()
    with pytest.raises(SpecError, match=r"recurse too deep|include cycle|took more than"):
        r("{% include 'self.yaml' %}", root)
    assert time.monotonic() - start < RENDER_SECONDS + 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set l = range(1000) | list %}{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% for i in range(10) %}{{ f(n) if n < 50 else '' }}{% endfor %}{% endmacro %}{{ f(0) }}",
    ],
)
def test_huge_loops_stop_at_the_time_limit(text: str) -> None:
    start = time.monotonic()
    with pytest.raises(SpecError, match=r"took more than 1s|recurse too deep"):
        r(text)
    assert time.monotonic() - start < RENDER_SECONDS + 1.5


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "text",
    [
        "{{ 'x' * 10**8 }}",
        "{{ ['x'] * 10**8 }}",
        "{{ 'x'.center(10**9) }}",
        "{{ 'x' | center(10**9) }}",
        "{{ 'x'.ljust(10**9) }}{{ 'x'.zfill(10**9) }}",
        "{{ 'a\nb' | indent(10**8) }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '%s' | format('x') }}{{ '%0999999999d' | format(1) }}",
        "{{ ('x' * 10000) | replace('x', 'y' * 10000) }}",
        "{{ ('x' * 10000).replace('x', 'y' * 10000) }}",
        "{% set a = 'x' * 1000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{% set d = c ~ c %}{% set e = d ~ d %}{% set f = e ~ e %}{{ f | length }}",
        "{% set a = 'x' * 4000000 %}{% set b = a + a %}{% set c = b + b %}{% set d = c + c %}{{ d | length }}",
        "{{ 2 ** 100000000 }}",
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    ],
)
def test_memory_bombs_are_refused_before_they_allocate(text: str) -> None:
    start = time.monotonic()
    with pytest.raises(SpecError, match=r"larger than 16 MiB|too large|million bits"):
        r(text)
    assert time.monotonic() - start < RENDER_SECONDS + 1


def test_output_up_to_the_cap_renders() -> None:
    out = r("{{ 'x' * n }}", n=OUTPUT_CAP - 1)
    assert len(out) == OUTPUT_CAP - 1


def test_instance_and_index_are_deferred_in_spec_templates() -> None:
    text = (
        "echo {{ instance.LogicalID }} {{ INDEX.Sequence }} {{ instance.Tags['a'] }} {{ region }}"
    )
    out = render(text, name="spec.yaml", variables=VARS, context=DEFERRED_CONTEXT)
    assert (
        out
        == "echo {{ instance.LogicalID }} {{ INDEX.Sequence }} {{ instance.Tags['a'] }} eu-west-1"
    )
    with pytest.raises(SpecError, match="not allowed"):
        render("{{ instance._path }}", name="spec.yaml", context=DEFERRED_CONTEXT)


@pytest.mark.parametrize(
    ("text", "is_template"),
    [
        ("{{ x }}", True),
        ("{% if %}", True),
        ("{# c #}", False),
        ("${#x}", False),
        ("{x}", False),
        ("${x}", False),
        ("{ {", False),
    ],
)
def test_template_syntax_detection(text: str, is_template: bool) -> None:
    assert has_template_syntax(text) is is_template


def test_rendering_is_fast_enough_for_every_instance() -> None:
    text = "echo {{ instance.LogicalID }} {{ instance.Group }}-{{ instance.Index }}"
    context = {"instance": {"LogicalID": "10.0.0.1", "Group": "g", "Index": 3}}
    render(text, name="Init", context=context)
    start = time.perf_counter()
    for _ in range(1000):
        assert render(text, name="Init", context=context) == "echo 10.0.0.1 g-3"
    per_render = (time.perf_counter() - start) / 1000
    assert per_render < 0.005, per_render  # measured ~60 us on this machine


def test_shell_templates_keep_shells_hash_brace() -> None:
    text = 'n=${#ARR[@]}; echo "{{ instance.LogicalID }}" {## a comment ##}'
    out = render(text, name="Init", context={"instance": {"LogicalID": "a"}}, shell=True)
    assert out == 'n=${#ARR[@]}; echo "a" '
