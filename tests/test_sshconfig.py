"""ssh_config files and ssh's arguments, read as OpenSSH reads them (fleet.transports.sshconfig).

The snippets are shaped like the bastion setups Ansible users publish
(a ``Host`` block per jump host, a wildcard block sending a private
network through it, ``-o ProxyCommand`` in ``ansible_ssh_common_args``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.errors import ConfigError
from fleet.model import Status
from fleet.plan import HostPlan, RunOptions
from fleet.transports.sshcommon import SshSettings
from fleet.transports.sshconfig import Hop, SshConfigFile, SshOptions, apply_args, ssh_options

BASTION_CONFIG = """\
# DMZ relays go through the bastion
Host bastion bast1
    HostName 198.18.0.70
    User jump
    IdentityFile ~/.ssh/bastion_ed25519
    UserKnownHostsFile ~/.ssh/known_hosts.dmz

Host 198.18.2.* relay-*
    ProxyJump bast1
    User mailadm
    StrictHostKeyChecking accept-new
    ServerAliveInterval 30

Match host 10.9.*.*
    ProxyCommand ssh -W %h:%p jump@bast1

Host *
    Port 2222
    User everybody
    ControlMaster auto
"""


def options_for(name: str, text: str = BASTION_CONFIG, **variables: object) -> SshOptions:
    parsed = SshConfigFile.parse(text, "test_config")
    found, _ = ssh_options(name, {"fleet_ssh_config": "test_config", **variables}, lambda p: parsed)
    return found


def test_host_block_fills_what_is_unset_and_first_value_wins() -> None:
    found = options_for("relay-1")
    assert found.proxy_jump == "bast1"
    assert found.user == "mailadm"  # the relay block comes before Host *
    assert found.port == 2222  # from Host *: nothing earlier set it
    assert found.hostname is None


def test_unhonoured_keywords_are_listed_not_dropped_silently() -> None:
    found = options_for("relay-1")
    assert "ServerAliveInterval (test_config)" in found.ignored
    assert "ControlMaster (test_config)" in found.ignored


def test_host_patterns_with_negation() -> None:
    text = "Host 198.18.2.* !198.18.2.9\n  ProxyJump bast1\n"
    assert options_for("198.18.2.5", text).proxy_jump == "bast1"
    assert options_for("198.18.2.9", text).proxy_jump is None
    assert options_for("198.18.3.5", text).proxy_jump is None


def test_match_host_matches_the_hostname_set_so_far() -> None:
    text = "Host mx9\n  HostName 10.9.0.4\nMatch host 10.9.*.*\n  ProxyJump bast1\n"
    assert options_for("mx9", text).proxy_jump == "bast1"
    assert options_for("mx8", text).proxy_jump is None


def test_match_exec_is_not_run_and_is_reported() -> None:
    found = options_for("mx1", 'Match exec "true"\n  ProxyJump bast1\n')
    assert found.proxy_jump is None
    assert any(item.startswith("Match exec") for item in found.ignored)


def test_arguments_win_over_the_file() -> None:
    found = options_for("relay-1", ansible_ssh_common_args="-o User=root -J other:2200")
    assert found.user == "root"
    assert found.jumps() == (Hop("other", None, 2200),)


def test_arguments_in_ansibles_order_ssh_args_first() -> None:
    found, _ = apply_args(SshOptions(), "-o ProxyJump=a", "ansible_ssh_args")
    found, _ = apply_args(found, "-o ProxyJump=b", "ansible_ssh_common_args")
    assert found.proxy_jump == "a"


def test_proxycommand_quoted_in_common_args() -> None:
    found, _ = apply_args(
        SshOptions(), '-o ProxyCommand="ssh -W %h:%p -q jump@bast1" -o Port=22', "common"
    )
    assert found.proxy_command == "ssh -W %h:%p -q jump@bast1"
    assert found.port == 22


def test_ansibles_default_ssh_args_are_all_ignored_and_shown() -> None:
    found, config = apply_args(
        SshOptions(), "-C -o ControlMaster=auto -o ControlPersist=60s", "ansible.cfg"
    )
    assert config is None
    assert found == SshOptions(
        ignored=(
            "-C (ansible.cfg)",
            "ControlMaster (ansible.cfg)",
            "ControlPersist (ansible.cfg)",
        )
    )


def test_dash_f_names_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "cfg"
    config.write_text("Host mx1\n  HostName 198.18.2.11\n")
    found, read = ssh_options("mx1", {"ansible_ssh_extra_args": f"-F {config}"})
    assert (found.hostname, read) == ("198.18.2.11", str(config))


def test_a_named_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        ssh_options("mx1", {"fleet_ssh_config": str(tmp_path / "nope")})


@pytest.mark.parametrize(
    ("spec", "hop"),
    [
        ("bast1", Hop("bast1")),
        ("jump@bast1:2222", Hop("bast1", "jump", 2222)),
        ("ssh://jump@bast1:22", Hop("bast1", "jump", 22)),
        ("[2001:db8::1]:2200", Hop("2001:db8::1", None, 2200)),
    ],
)
def test_proxyjump_specs(spec: str, hop: Hop) -> None:
    assert Hop.parse(spec) == hop


def test_proxyjump_none_turns_jumping_off() -> None:
    text = "Host bast1\n  ProxyJump none\nHost *\n  ProxyJump bast1\n"
    assert options_for("bast1", text).jumps() == ()


def test_proxyjump_and_proxycommand_first_obtained_wins() -> None:
    found, _ = apply_args(SshOptions(), "-o ProxyCommand=nc -J bast1", "args")
    assert (found.proxy_command, found.proxy_jump) == ("nc", None)


def _host(tmp_path: Path, name: str, **variables: object) -> HostPlan:
    config = tmp_path / "ssh_config"
    config.write_text(BASTION_CONFIG.replace("~/.ssh", str(tmp_path)))
    merged = {"fleet_ssh_config": str(config), **variables}
    return HostPlan(name, "ssh", str(variables.get("ansible_host", name)), None, None, merged)


def test_inventory_user_and_port_win_over_ssh_config(tmp_path: Path) -> None:
    host = _host(tmp_path, "relay-1")
    plain = SshSettings.from_host(host, RunOptions())
    assert (plain.user, plain.port) == ("mailadm", 2222)
    given = SshSettings.from_host(
        HostPlan("relay-1", "ssh", "relay-1", 22, "ops", host.vars), RunOptions()
    )
    assert (given.user, given.port) == ("ops", 22)


def test_a_chain_of_jumps_is_one_settings_per_hop(tmp_path: Path) -> None:
    host = _host(tmp_path, "mx", ansible_ssh_common_args="-J first,bast1:2200")
    settings = SshSettings.from_host(host, RunOptions())
    assert settings.bastion == "bast1"
    assert settings.via is not None and settings.via.via is not None
    bast1, first = settings.via, settings.via.via
    assert (bast1.address, bast1.port, bast1.user) == ("198.18.0.70", 2200, "jump")
    assert bast1.key_file == tmp_path / "bastion_ed25519"
    assert bast1.known_hosts == tmp_path / "known_hosts.dmz"
    assert (first.address, first.port, first.via) == ("first", 2222, None)


def test_strict_host_key_checking_no_turns_checking_off(tmp_path: Path) -> None:
    host = _host(tmp_path, "mx", ansible_ssh_common_args="-o StrictHostKeyChecking=no")
    assert SshSettings.from_host(host, RunOptions()).host_key_checking is False
    accept_new = SshSettings.from_host(_host(tmp_path, "relay-2"), RunOptions())
    assert accept_new.host_key_checking is True


def test_a_targets_own_opt_outs_never_reach_its_jump_host(tmp_path: Path) -> None:
    args = "-J bast1 -o StrictHostKeyChecking=no"
    relaxed = _host(tmp_path, "mx", ansible_ssh_common_args=args, ansible_host_key_checking=False)
    settings = SshSettings.from_host(relaxed, RunOptions())
    assert settings.host_key_checking is False
    assert settings.via is not None and settings.via.host_key_checking is True
    # The run's own switch covers every hop.
    off = SshSettings.from_host(relaxed, RunOptions(host_key_checking=False))
    assert off.via is not None and off.via.host_key_checking is False


def test_proxycommand_tokens_are_expanded_and_shell_metacharacters_refused(
    tmp_path: Path,
) -> None:
    host = _host(tmp_path, "mx", ansible_host="10.9.1.2")
    settings = SshSettings.from_host(host, RunOptions())
    assert settings.proxy_command == "ssh -W 10.9.1.2:2222 jump@bast1"
    # The command line quotes %r itself: quoting the value again would break out of it.
    args = '-o "User=o\'neil" -o "ProxyCommand=nc %h %p # \'%r\'"'
    other = _host(tmp_path, "mx", ansible_ssh_common_args=args)
    with pytest.raises(ConfigError, match=r"^host mx: ProxyCommand: the user name \"o'neil\""):
        SshSettings.from_host(other, RunOptions())


def test_an_unbalanced_quote_in_ssh_config_is_one_line_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text('Host "relay\n  User x\n')
    host = HostPlan("mx", "ssh", "mx", None, None, {"fleet_ssh_config": str(config)})
    with pytest.raises(ConfigError, match='ssh_config: Host "relay: No closing quotation'):
        SshSettings.from_host(host, RunOptions())


def test_ansible_cfg_ssh_args_apply_where_the_inventory_sets_none(tmp_path: Path) -> None:
    from fleet.ansiblecfg import load_config
    from fleet.app.request import audit_request, with_login_defaults

    (tmp_path / "ansible.cfg").write_text("[ssh_connection]\nssh_args = -C -J jump@bast1\n")
    request = audit_request({}, load_config(env={}, cwd=tmp_path, home=tmp_path))
    plain = HostPlan("mx", "ssh", "mx", None, None, {"fleet_ssh_config": "none"})
    own = HostPlan("mx2", "ssh", "mx2", None, None, {**plain.vars, "ansible_ssh_args": "-4"})
    mx, mx2 = with_login_defaults([plain, own], request)
    settings = SshSettings.from_host(mx, RunOptions())
    assert (settings.bastion, settings.via and settings.via.user) == ("bast1", "jump")
    assert settings.ignored == ("-C (ansible_ssh_args)",)
    assert SshSettings.from_host(mx2, RunOptions()).bastion is None


def test_fleet_config_shows_the_ssh_args_it_ignores(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "ansible.cfg").write_text(
        "[ssh_connection]\nssh_args = -C -o ControlMaster=auto -J bast1\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("ANSIBLE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "fleet", "config"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "ssh_args ignored         -C, ControlMaster" in done.stdout
    assert "~/.ssh/config (none found)" in done.stdout


def test_verbose_lists_the_ssh_options_fleet_ignores_per_host() -> None:
    from fleet.transports.sshconfig import ignored_lines

    args = {"ansible_ssh_common_args": "-o ServerAliveInterval=5", "fleet_ssh_config": "none"}
    hosts = [HostPlan(f"mx{i}", "ssh", f"mx{i}", None, None, args) for i in range(5)]
    hosts.append(HostPlan("win", "winrm", "win", None, None, args))
    assert ignored_lines(hosts) == [
        "fleet: ssh option ignored: ServerAliveInterval (ansible_ssh_common_args), "
        "for 5 host(s): mx0, mx1, mx2, ..."
    ]


def test_reach_probes_the_address_ssh_config_names(tmp_path: Path, listening: int) -> None:
    from fleet.checks.reach import ReachCheck

    config = tmp_path / "ssh_config"
    config.write_text(f"Host mx-alias\n  HostName 127.0.0.1\n  Port {listening}\n")
    host = HostPlan("mx-alias", "ssh", "mx-alias", None, None, {"fleet_ssh_config": str(config)})
    port = SshSettings.login_port(host)
    results, kept = ReachCheck().reach(host, {"ports": [port]}, 3.0, port, keep=True)
    assert kept is not None and (kept.address, kept.port) == ("127.0.0.1", listening)
    kept.close()
    assert [(r.status, r.summary) for r in results] == [(Status.OK, f"port {listening} open")]
    assert SshSettings.from_host(host, RunOptions()).address == "127.0.0.1"  # the handoff fits
