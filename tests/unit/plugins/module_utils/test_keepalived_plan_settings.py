"""keepalived_plan core: the settings that used to be checked in Jinja in the role's preflight (the host's
group membership and the check and notify scripts' settings). Each check has a case that fires and one
that does not; a setting the caller does not pass is not checked."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.filter.keepalived_plan import keepalived_plan
from ansible_collections.qwen3vl.ha.plugins.module_utils import keepalived_plan as core

BASE = {
    "group": "lb",
    "group_hosts": ["lb1", "lb2"],
    "instances": [],
    "vip": "192.0.2.100",
    "vip_prefix": None,
    "virtual_router_id": 51,
    "foreign_router_ids": [],
    "vrrp_version": 3,
    "advert_int": 0.2,
    "unicast": True,
    "preempt": True,
    "preempt_delay": 0,
    "check_interval": 1,
    "check_timeout": 1,
    "check_fall": 2,
    "check_rise": 2,
}
SCRIPTS = {
    "script_user": "keepalived_script",
    "textfile_dir": "/var/lib/prometheus/node-exporter",
    "check_url": "http://127.0.0.1:8081/healthz",
    "check_process": "nginx",
    "extra_global_defs": ["vrrp_garp_master_refresh 60"],
}


def _facts(address):
    return {
        "interfaces": ["lo", "eth0"],
        "default_ipv4": {"interface": "eth0"},
        "eth0": {"ipv4": {"address": address, "prefix": "24"}},
    }


HOSTS = {"lb1": core.host_view(_facts("192.0.2.11")), "lb2": core.host_view(_facts("192.0.2.12"))}


def plan(host=None, **settings):
    return core.plan(dict(BASE, **dict(SCRIPTS, **settings)), HOSTS, host)


def only_error(result):
    assert result["instances"] == [] and result["hosts"] == {}
    assert len(result["errors"]) == 1, result["errors"]
    return result["errors"][0]


def test_the_role_defaults_pass():
    result = plan("lb1")
    assert result["errors"] == [] and result["warnings"] == []
    assert result["hosts"]["lb1"]["instances"][0]["state"] == "MASTER"


def test_a_host_outside_the_group_is_refused():
    assert only_error(plan("web1")) == (
        "keepalived_group: web1 is not in group 'lb' (hosts: lb1, lb2); run the role on that group or set "
        "keepalived_group"
    )


@pytest.mark.parametrize("host", ["lb1", "lb2", None])
def test_a_host_in_the_group_or_none_given_passes(host):
    assert plan(host)["errors"] == []


def test_an_empty_group_says_so_once_not_also_that_the_host_is_outside_it():
    result = core.plan(dict(BASE, group_hosts=[]), {}, "lb1")
    assert result["errors"] == ["keepalived_group: group 'lb' has no hosts in the inventory"]


@pytest.mark.parametrize("user", ["root", "Keepalived", "1abc", "a" * 33, "", "ka script", "ka\n", None])
def test_script_user_must_be_a_system_user_other_than_root(user):
    assert only_error(plan(script_user=user)).startswith("keepalived_script_user: %r is not a system user name" % user)
    assert "other than root (scripts must not run as root)" in only_error(plan(script_user=user))


@pytest.mark.parametrize("user", ["keepalived_script", "_ka", "rootless", "a" * 32, "ka-1"])
def test_good_script_users_pass(user):
    assert plan(script_user=user)["errors"] == []


@pytest.mark.parametrize(
    "path", ["var/lib/node-exporter", "/var/lib/node exporter", "/var/lib/it's", '/var/"x"', "/x\n", "", None]
)
def test_textfile_dir_must_be_an_absolute_path_without_spaces_or_quotes(path):
    assert only_error(plan(textfile_dir=path)) == (
        "keepalived_textfile_dir: %r is not an absolute path without spaces or quotes" % path
    )


@pytest.mark.parametrize("path", ["/var/lib/prometheus/node-exporter", "/srv/textfile_collector", "/"])
def test_good_textfile_dirs_pass(path):
    assert plan(textfile_dir=path)["errors"] == []


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:8081/healthz",
        "ftp://127.0.0.1/healthz",
        "http://",
        "http://127.0.0.1:99999/healthz",
        "http://127.0.0.1/health z",
        "http://127.0.0.1/it's",
        'http://127.0.0.1/"x"',
        None,
    ],
)
def test_check_url_must_be_an_http_url_without_quotes(url):
    assert only_error(plan(check_url=url)) == (
        'keepalived_check_url: %r is not an http(s):// URL without quotes, or ""' % url
    )


@pytest.mark.parametrize("url", ["", "http://127.0.0.1:8081/healthz", "https://lb1.example.com/healthz?deep=1"])
def test_good_check_urls_and_none_pass(url):
    assert plan(check_url=url)["errors"] == []


@pytest.mark.parametrize("process", ["nginx: master", "a" * 16, "ng/inx", None])
def test_check_process_must_be_a_process_name(process):
    assert only_error(plan(check_process=process)) == (
        'keepalived_check_process: %r is not a process name (pidof; at most 15 characters) or ""' % process
    )


@pytest.mark.parametrize("process", ["", "nginx", "haproxy", "a" * 15, "python3.11"])
def test_good_check_processes_and_none_pass(process):
    assert plan(check_process=process)["errors"] == []


@pytest.mark.parametrize(
    "lines, message",
    [
        (["vrrp_garp_master_refresh 60", "script_user root {"], "[1]: one setting per line, without braces: "),
        (["a\nb"], "[0]: one setting per line, without braces: 'a\\nb'"),
        (["a}"], "[0]: one setting per line, without braces: 'a}'"),
        (["a\r"], "[0]: one setting per line, without braces: 'a\\r'"),
        ([5], "[0]: one setting per line, without braces: 5"),
        ("vrrp_garp_master_refresh 60", ": must be a list of global_defs settings"),
    ],
)
def test_extra_global_defs_one_setting_per_line_without_braces(lines, message):
    assert only_error(plan(extra_global_defs=lines)).startswith("keepalived_extra_global_defs" + message)


@pytest.mark.parametrize("lines", [[], ["vrrp_garp_master_refresh 60", "vrrp_garp_master_delay 1"]])
def test_good_extra_global_defs_pass(lines):
    assert plan(extra_global_defs=lines)["errors"] == []


def test_settings_not_given_are_not_checked():
    assert core.plan(BASE, HOSTS, "lb1")["errors"] == []


def test_all_problems_come_at_once_membership_first_then_scripts_then_vrrp():
    result = plan("web1", script_user="root", check_process="x" * 16, vip="")
    assert [e.split(":")[0] for e in result["errors"]] == [
        "keepalived_group",
        "keepalived_script_user",
        "keepalived_check_process",
        "keepalived_vip",
    ]


def test_the_filter_passes_the_host_on():
    hostvars = {"lb1": {"ansible_facts": _facts("192.0.2.11")}, "lb2": {"ansible_facts": _facts("192.0.2.12")}}
    config = dict(BASE, **SCRIPTS)
    assert keepalived_plan(config, hostvars, "lb2")["errors"] == []
    assert keepalived_plan(config, hostvars, "web1")["errors"][0].startswith("keepalived_group: web1 is not in")
    assert keepalived_plan(dict(config, script_user="root"), hostvars, "lb1")["errors"][0].startswith(
        "keepalived_script_user: 'root'"
    )
