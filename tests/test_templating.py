"""Templates in inventory and playbook values run in a sandbox with a bounded cost.

Before: ``{{ lipsum.__globals__.os.system(...) }}`` in a host_vars file ran a
command on the runner, a huge power or range hung it, and a variable
referring to itself was silently kept as its literal template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
from jinja2.sandbox import SecurityError

from fleet.errors import PlaybookError
from fleet.inventory import load_inventory
from fleet.playbook import build_plan, load_playbook
from fleet.templating import Renderer, TemplateLimitError
from tests.test_bounds import PLAYBOOK, audit, refused

CONTEXT: dict[str, Any] = {
    "groups": {"mail": ["mx1", "mx2", "mx3"]},
    "inventory_hostname": "mx1",
    "fleet_ping_targets": ["gw1", "gw2"],
}


def render(template: str, **extra: Any) -> Any:
    return Renderer().render(template, {**CONTEXT, **extra})


ESCAPES = [
    "{{ lipsum.__globals__.os.system('touch MARK') }}",
    "{{ cycler.__init__.__globals__.os.system('touch MARK') }}",
    "{{ joiner.__init__.__globals__.os.popen('touch MARK').read() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').system('touch MARK') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ namespace.__init__.__globals__.os.system('touch MARK') }}",
    "{{ range.__self__.__import__('os').system('touch MARK') }}",
    "{{ lookup.__globals__.os.system('touch MARK') }}",
    "{% set x = groups.update({'mail': []}) %}{{ groups }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_a_template_cannot_reach_python(tmp_path: Path, template: str) -> None:
    mark = tmp_path / "touched"
    with pytest.raises((SecurityError, jinja2.UndefinedError, TemplateLimitError)):
        render(template.replace("MARK", str(mark)))
    assert not mark.exists()


@pytest.mark.parametrize("template", ESCAPES[:3])
def test_a_host_vars_template_runs_no_command_on_the_runner(tmp_path: Path, template: str) -> None:
    mark = tmp_path / "touched"
    (tmp_path / "hosts").write_text("[mail]\nh1 ansible_connection=local\n")
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "h1.yml").write_text(
        f'fleet_smtp_port: "{template.replace("MARK", str(mark))}"\n'
    )
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    result = audit(tmp_path, "-i", tmp_path / "hosts", "-p", tmp_path / "play.yml")
    refused(result, "host_vars/h1.yml", "fleet_smtp_port")
    assert not mark.exists()


@pytest.mark.parametrize(
    ("template", "limit"),
    [
        ("{{ 10 ** (10 ** 10) }}", "MAX_TEMPLATE_INT_BITS"),
        ("{{ 2 ** 99999999 }}", "MAX_TEMPLATE_INT_BITS"),
        ("{{ 'x' * 10**10 }}", "MAX_TEMPLATE_SIZE"),
        ("{{ [0] * 10**9 }}", "MAX_TEMPLATE_SIZE"),
        ("{{ range(10**10) | list }}", "MAX_TEMPLATE_SIZE"),
        ("{{ 'x'.center(10**9) }}", "MAX_TEMPLATE_SIZE"),
        ("{{ 'x' | center(10**9) }}", "MAX_TEMPLATE_SIZE"),
        ("{{ '%0999999999d' % 1 }}", "MAX_TEMPLATE_SIZE"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "MAX_TEMPLATE_STEPS",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "MAX_TEMPLATE_SIZE",
        ),
        ("{% for i in range(99999) %}{{ 'x' * 999 }}{% endfor %}", "MAX_TEMPLATE_SIZE"),
        ("{{ ('x' * 999999) + ('x' * 999999) }}", "MAX_TEMPLATE_SIZE"),
    ],
)
def test_an_expensive_template_is_an_error_not_a_hang(template: str, limit: str) -> None:
    with pytest.raises(TemplateLimitError, match=limit):
        render(template)


def test_10_to_the_10_to_the_10_is_left_to_right_in_jinja_and_small() -> None:
    # Jinja2 reads 10 ** 10 ** 10 as (10 ** 10) ** 10: 10**100, harmless.
    assert render("{{ 10 ** 10 ** 10 }}") == 10**100


@pytest.mark.parametrize(
    ("variables", "name"),
    [
        ({"a": "{{ a }}"}, "a"),
        ({"a": "{{ b }}", "b": "{{ c }}", "c": "{{ a }}"}, "a"),
        ({"a": "{{ a }}{{ a }}"}, "a"),
        ({"a": ["{{ a }}"]}, "a"),
    ],
)
def test_a_variable_that_refers_to_itself_is_an_error(variables: dict, name: str) -> None:
    with pytest.raises(TemplateLimitError, match="itself"):
        render(f"{{{{ {name} }}}}", **variables)


def test_a_recursive_inventory_variable_names_the_variable_and_its_file(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("[mail]\nh1 ansible_connection=local\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "mail.yml").write_text(
        'fleet_ping_targets: "{{ fleet_smtp_targets }}"\n'
        'fleet_smtp_targets: "{{ fleet_ping_targets }}"\n'
    )
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    result = audit(tmp_path, "-i", tmp_path / "hosts", "-p", tmp_path / "play.yml")
    refused(result, "group_vars/mail.yml", "fleet_ping_targets", "itself")


def test_a_check_parameter_from_a_recursive_variable_is_a_playbook_error(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("[mail]\nh1\n\n[mail:vars]\nfleet_loop='{{ fleet_loop }}'\n")
    (tmp_path / "play.yml").write_text(
        "- hosts: all\n  checks:\n    - ping: {targets: '{{ fleet_loop }}'}\n"
    )
    with pytest.raises(PlaybookError, match=r"play.yml:3: check ping for host h1: .*itself"):
        build_plan(load_playbook(tmp_path / "play.yml"), load_inventory(tmp_path / "hosts"))


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ groups['mail'] | difference([inventory_hostname]) }}", ["mx2", "mx3"]),
        ("{{ fleet_ping_targets | union(['gw3']) | unique }}", ["gw1", "gw2", "gw3"]),
        ("{{ missing | default(fleet_ping_targets) | flatten }}", ["gw1", "gw2"]),
        ("{{ 'mx' ~ 1 ~ '.example.com' }}", "mx1.example.com"),
        (
            "{% for h in groups.mail %}{{ h }}{% if not loop.last %},{% endif %}{% endfor %}",
            "mx1,mx2,mx3",
        ),
        ("{{ range(3) | list }}", [0, 1, 2]),
        ("{{ 2 ** 10 * 3 }}", 3072),
        ("{{ '%05d' % 42 }}", "00042"),
        ("{{ 'x' * 3 }}", "xxx"),
        ("{{ groups.mail | length }}", 3),
        ("{{ 'Yes' | bool }}", True),
        ("{{ {'a': 1}.items() | list }}", [("a", 1)]),
    ],
)
def test_ordinary_ansible_templates_still_render(template: str, expected: Any) -> None:
    assert render(template) == expected


def test_a_value_holding_a_template_is_rendered_again() -> None:
    assert render("{{ a }}", a="{{ b }}", b="{{ 'deep' }}") == "deep"


def test_set_filters_keep_order_and_take_unhashable_items() -> None:
    assert render("{{ [1, 2, [3], 2, 'a'] | difference([2, [3]]) }}") == [1, "a"]
    assert render("{{ ['a', 'b', {'x': 1}] | intersect(['b', {'x': 1}]) }}") == ["b", {"x": 1}]
    assert render("{{ [[1], [1], 'h', 'h'] | unique }}") == [[1], "h"]


def test_difference_on_a_big_group_stays_linear() -> None:
    hosts = [f"mx{i:05d}" for i in range(50_000)]
    # Quadratic membership took minutes here; a set answers at once.
    assert render("{{ hosts | difference(hosts[1:]) }}", hosts=hosts) == ["mx00000"]
