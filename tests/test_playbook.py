"""Playbooks: loaded, rendered per host with Ansible's names, validated before contact."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import PlaybookError
from fleet.inventory import load_inventory
from fleet.playbook import Renderer, build_plan, load_playbook

INVENTORY = """
[mail]
mx1 ansible_host=198.18.0.11
mx2 ansible_host=198.18.0.12
mx3 ansible_host=198.18.0.13

[edge]
relay1 ansible_host=198.18.0.40 fleet_smtp_targets='["smarthost.example.net"]'

[windows]
ex1 ansible_connection=winrm ansible_port=5985
"""

DEFAULT = Path(__file__).resolve().parent.parent / "playbooks" / "mail-connectivity.yml"


@pytest.fixture
def inventory(tmp_path: Path):
    path = tmp_path / "hosts"
    path.write_text(INVENTORY)
    return load_inventory(path)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "play.yml"
    path.write_text(text)
    return path


def default_plan(tmp_path: Path, hosts: str):
    """The bundled playbook's plan over an INI inventory written from ``hosts``."""
    inv = tmp_path / "hosts"
    inv.write_text(hosts)
    return build_plan(load_playbook(DEFAULT), load_inventory(inv))


def params(plan, host: str, check: str) -> dict:
    [host_plan] = [h for h in plan if h.name == host]
    [check_plan] = [c for c in host_plan.checks if c.name == check]
    return dict(check_plan.params)


def test_default_playbook_targets_the_other_members_of_the_mail_group(inventory) -> None:
    plan = build_plan(load_playbook(DEFAULT), inventory)
    assert params(plan, "mx1", "smtp")["targets"] == ["mx2", "mx3"]
    assert params(plan, "mx2", "ping")["targets"] == ["mx1", "mx3"]
    assert params(plan, "mx2", "ping")["gateway"] is True


def test_group_vars_override_the_default_targets(inventory) -> None:
    plan = build_plan(load_playbook(DEFAULT), inventory)
    assert params(plan, "relay1", "smtp")["targets"] == ["smarthost.example.net"]


def test_plan_carries_connection_variables(inventory) -> None:
    plan = build_plan(load_playbook(DEFAULT), inventory, limit="windows:mx1")
    assert [h.name for h in plan] == ["mx1", "ex1"]
    ex1 = plan[1]
    assert (ex1.connection, ex1.port, ex1.platform.value) == ("winrm", 5985, "windows")
    assert plan[0].address == "198.18.0.11" and plan[0].connection == "ssh"


def test_hostvars_and_groups_are_available_to_templates(tmp_path: Path, inventory) -> None:
    path = write(
        tmp_path,
        """
- hosts: mail
  checks:
    - smtp:
        targets: "{{ groups['mail'] | map('extract', hostvars, 'ansible_host') | list }}"
""",
    )
    # extract is not a filter we ship: the error names the file, the line and the host
    with pytest.raises(PlaybookError) as caught:
        build_plan(load_playbook(path), inventory)
    assert f"{path}:4:" in str(caught.value) and "mx1" in str(caught.value)
    path = write(
        tmp_path,
        """
- hosts: mail
  checks:
    - smtp:
        targets: ["{{ hostvars['mx3'].ansible_host }}"]
""",
    )
    plan = build_plan(load_playbook(path), inventory)
    assert params(plan, "mx1", "smtp")["targets"] == ["198.18.0.13"]


def test_unknown_check_is_rejected_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "- hosts: all\n  checks:\n    - binding: {}\n    - telnet: {}\n")
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path)
    assert str(caught.value).startswith(f"{path}:4: unknown check 'telnet'")


def test_bad_static_parameter_is_rejected_before_any_host(tmp_path: Path) -> None:
    path = write(tmp_path, "- hosts: all\n  checks:\n    - smtp: {port: many}\n")
    with pytest.raises(PlaybookError, match=r"play.yml:3: check smtp"):
        load_playbook(path)


def test_undefined_variable_names_the_host(tmp_path: Path, inventory) -> None:
    path = write(tmp_path, "- hosts: mail\n  checks:\n    - ping: {targets: '{{ nope }}'}\n")
    with pytest.raises(PlaybookError, match=r"check ping for host mx1: 'nope' is undefined"):
        build_plan(load_playbook(path), inventory)


def test_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "- hosts: all\n  checks:\n    - binding: {\n")
    with pytest.raises(PlaybookError, match=r"play.yml:4: not valid YAML"):
        load_playbook(path)


def test_a_play_without_checks_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "- hosts: all\n")
    with pytest.raises(PlaybookError, match="'checks' must be a non-empty list"):
        load_playbook(path)


def test_connection_variables_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WINRM_PASSWORD", "from-the-ci-secret")
    plan = default_plan(
        tmp_path,
        "[windows]\nex1 ansible_connection=winrm\n"
        "[windows:vars]\nansible_password=\"{{ lookup('env', 'WINRM_PASSWORD') }}\"\n",
    )
    assert plan[0].vars["ansible_password"] == "from-the-ci-secret"


def test_a_secret_that_cannot_be_rendered_is_named_not_shown(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError) as caught:
        default_plan(tmp_path, "[windows]\nex1 ansible_password='{{ Secret-Value-123 }}'\n")
    assert "ansible_password" in str(caught.value)
    assert "Secret-Value" not in str(caught.value)


def test_route_guard_refuses_when_the_lab_bridge_is_missing(tmp_path: Path) -> None:
    from fleet.errors import ConfigError
    from fleet.plan import HostPlan, check_route_guards

    (tmp_path / "fleetbr0").mkdir()
    guarded = HostPlan("mx1", "ssh", "198.18.0.11", None, None, {"fleet_route_via": "fleetbr0"})
    check_route_guards([guarded], sys_net=tmp_path)  # the bridge exists: fine
    (tmp_path / "fleetbr0").rmdir()
    with pytest.raises(ConfigError, match=r"interface fleetbr0 .* invoke lab.up"):
        check_route_guards([guarded], sys_net=tmp_path)


def test_lab_inventory_is_guarded() -> None:
    lab = load_inventory(Path(__file__).resolve().parent.parent / "inventories" / "lab")
    assert all(lab.host_vars(h)["fleet_route_via"] == "fleetbr0" for h in lab.hosts)


def test_a_password_from_the_environment_stays_a_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WINRM_PASSWORD", "0x1F")  # native rendering would make it 31
    plan = default_plan(
        tmp_path,
        "[windows]\nex1 ansible_connection=winrm "
        "ansible_password=\"{{ lookup('env', 'WINRM_PASSWORD') }}\"\n",
    )
    assert plan[0].vars["ansible_password"] == "0x1F"


def test_a_template_type_error_is_a_playbook_error_with_its_line(tmp_path: Path, inventory) -> None:
    path = write(tmp_path, "- hosts: mail\n  checks:\n    - ping: {targets: '{{ 1 + \"a\" }}'}\n")
    with pytest.raises(PlaybookError, match=r"play.yml:3: check ping for host mx1"):
        build_plan(load_playbook(path), inventory)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mx1 ansible_port=70000", "not a port number"),
        ("mx1 ansible_connection=smart", "is not one of"),
        ("mx1 fleet_platform=windows", "Windows hosts are audited over winrm"),
    ],
)
def test_bad_connection_variables_are_refused_before_any_host(
    tmp_path: Path, line: str, message: str
) -> None:
    from fleet.errors import InventoryError

    with pytest.raises(InventoryError, match=message):
        default_plan(tmp_path, f"[mail]\n{line}\n")


def test_malformed_winrm_settings_are_caught_before_any_host(tmp_path: Path) -> None:
    from fleet.errors import ConfigError
    from fleet.plan import RunOptions
    from fleet.transports.base import check_transport_settings

    plan = default_plan(
        tmp_path, "[windows]\nex1 ansible_connection=winrm ansible_winrm_scheme=htps\n"
    )
    with pytest.raises(ConfigError, match="ansible_winrm_scheme"):
        check_transport_settings(plan, RunOptions())


def test_a_password_pointing_at_another_templated_variable_is_rendered_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WINRM_PASSWORD", "s3cret")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "windows.yml").write_text(
        "ansible_password: '{{ vault_winrm_password }}'\n"
        "vault_winrm_password: \"{{ lookup('env', 'WINRM_PASSWORD') }}\"\n"
    )
    (tmp_path / "hosts").write_text("[windows]\nex1 ansible_connection=winrm\n")
    plan = build_plan(load_playbook(DEFAULT), load_inventory(tmp_path))
    assert plan[0].vars["ansible_password"] == "s3cret"


def test_variables_for_ansible_only_are_left_alone(tmp_path: Path) -> None:
    plan = default_plan(
        tmp_path,
        '[mail]\nmx1\n[all:vars]\nansible_python_interpreter="{{ ansible_playbook_python }}"\n',
    )
    assert plan[0].vars["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"


def test_unsafe_values_are_taken_literally_as_in_ansible(tmp_path: Path) -> None:
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    ex1:\n      ansible_connection: winrm\n"
        "      ansible_password: !unsafe 'pa{{ss'\n"
        "      fleet_smtp_targets: [mx1]\n"
        "      fleet_note: !unsafe '{{ 7 * 7 }}'\n"
    )
    plan = build_plan(load_playbook(DEFAULT), load_inventory(tmp_path / "hosts.yml"))
    assert plan[0].vars["ansible_password"] == "pa{{ss"
    assert plan[0].vars["fleet_note"] == "{{ 7 * 7 }}"


def test_a_bad_value_from_the_inventory_names_the_variables_to_check(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match=r"count must be a number.*fleet_ping_count"):
        default_plan(tmp_path, "[mail]\nmx1 fleet_ping_count=abc\n")


@pytest.mark.parametrize(
    ("layout", "where"),
    [
        ({"hosts": "[mail]\nmx1 fleet_ping_count=abc\n"}, "hosts"),
        (
            {"hosts": "[mail]\nmx1\n", "group_vars/mail.yml": "fleet_ping_count: abc\n"},
            "group_vars/mail.yml",
        ),
        (
            {
                "hosts": "[mail]\nmx1\n[mail:vars]\nfleet_ping_count=2\n",
                "group_vars/all.yml": "fleet_ping_count: 3\n",
                "host_vars/mx1.yml": "fleet_ping_count: abc\n",
            },
            "host_vars/mx1.yml",
        ),
        (
            {"hosts": "[mail]\nmx1\n[mail:vars]\nfleet_ping_count=abc\n"},
            "hosts (vars of group mail)",
        ),
    ],
)
def test_a_bad_value_names_the_file_that_set_it(tmp_path: Path, layout, where) -> None:
    # The operator is told which file to open, wherever in Ansible's layering it was set.
    for name, text in layout.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    with pytest.raises(PlaybookError) as caught:
        build_plan(load_playbook(DEFAULT), load_inventory(tmp_path / "hosts"))
    assert f"fleet_ping_count, set in {tmp_path / where}" in str(caught.value)


def test_a_bad_value_from_the_plays_vars_names_the_play(tmp_path: Path) -> None:
    # The play's vars win over the inventory's, so the hint must not blame the inventory.
    (tmp_path / "hosts").write_text("[mail]\nmx1 fleet_ping_count=2\n")
    book = tmp_path / "play.yml"
    book.write_text(
        "- name: counts\n  hosts: all\n  vars:\n    fleet_ping_count: lots\n"
        "  checks:\n    - ping: {count: '{{ fleet_ping_count }}'}\n"
    )
    with pytest.raises(PlaybookError) as caught:
        build_plan(load_playbook(book), load_inventory(tmp_path / "hosts"))
    assert f"fleet_ping_count, set in {book}:1 (vars of play 'counts')" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yes", True),
        ("Y", True),
        ("t", True),
        (1, True),
        (True, True),
        ("Off", False),
        ("n", False),
        (0, False),
        ("maybe", False),  # Ansible's filter coerces a value it does not know to False
        (None, False),
    ],
)
def test_bool_filter_reads_the_projects_true_false_words(value, expected) -> None:
    assert Renderer().render("{{ v | bool }}", {"v": value}) is expected


def big_group(size: int, extra: str = "") -> str:
    """An INI inventory of one mail group of ``size`` hosts over four /24 subnets."""
    hosts = "\n".join(f"mx{i:03d} ansible_host=198.18.{i % 4}.{i // 4 + 10}" for i in range(size))
    return f"[mail]\n{hosts}\n{extra}"


def test_default_playbook_probes_k_peers_of_a_large_mail_group(tmp_path: Path) -> None:
    plan = default_plan(tmp_path, big_group(40))
    probed_by: dict[str, list[str]] = {}
    for host in plan:
        smtp, ping = params(plan, host.name, "smtp"), params(plan, host.name, "ping")
        assert smtp["targets"] == ping["targets"] and host.name not in smtp["targets"]
        for target in smtp["targets"]:
            probed_by.setdefault(target, []).append(host.name)
    # about 40 * 4 SMTP sessions instead of 40 * 39; each server greets 4 sources or a few more
    assert 160 <= sum(map(len, probed_by.values())) <= 200
    assert len(probed_by) == 40 and min(map(len, probed_by.values())) >= 4
    # sources come from more than one /24 (ansible_host's subnet is the zone)
    assert all(len({int(s[2:]) % 4 for s in sources}) >= 3 for sources in probed_by.values())


def test_fleet_peer_probes_sets_how_many_peers_each_host_probes(tmp_path: Path) -> None:
    # one subnet: no zone to spread over, so exactly k each way
    hosts = "\n".join(f"mx{i:03d} ansible_host=198.18.0.{i + 10}" for i in range(40))
    plan = default_plan(tmp_path, f"[mail]\n{hosts}\n[mail:vars]\nfleet_peer_probes=2\n")
    counted: dict[str, int] = {}
    for host in plan:
        for target in params(plan, host.name, "smtp")["targets"]:
            counted[target] = counted.get(target, 0) + 1
    assert set(counted.values()) == {2} and len(counted) == 40
    assert all(len(params(plan, h.name, "ping")["targets"]) == 2 for h in plan)


def test_explicit_targets_win_over_the_peer_plan(tmp_path: Path) -> None:
    extra = "[mail:vars]\nfleet_smtp_targets='[\"relay.example.net\"]'\n"
    plan = default_plan(tmp_path, big_group(40, extra))
    assert params(plan, "mx007", "smtp")["targets"] == ["relay.example.net"]
    assert len(params(plan, "mx007", "ping")["targets"]) >= 1  # ping still follows the plan


def test_a_bad_peer_probe_count_is_refused_before_any_host(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="fleet_peer_probes must be a positive integer"):
        default_plan(tmp_path, big_group(10, "[mail:vars]\nfleet_peer_probes=0\n"))
