"""The firewall plan: who may reach which port of a host, from the inventory (plugins/module_utils/firewall_plan.py).
The rules are checked by what they let in; molecule/firewall loads them into nftables and connects."""

import copy
import re

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import firewall_plan as core

PORTS = {
    "ssh": 22,
    "http": 80,
    "https": 443,
    "node_exporter": 9100,
    "nginx_exporter": 9113,
    "prometheus": 9090,
    "alertmanager": 9093,
    "alertmanager_cluster": 9094,
    "blackbox": 9115,
    "vllm_base": 8000,
    "ui_base": 7860,
    "nfs": [2049, 111, 20048, 32765, 32768],
    "nfs_probe": 2049,
}
CONFIG = {
    "admin_sources": ["192.0.2.250"],
    "client_sources": ["0.0.0.0/0", "::/0"],
    "allow": [],
    "refuse": "reject",
    "webui_ports_per_host": 8,
    "groups": {},
    "webui_instances": [],
    "ports": PORTS,
}
GROUPS = {
    "lb": ["lb1", "lb2"],
    "gpu": ["gpu1", "gpu2"],
    "monitoring": ["mon1"],
    "nfs_server": ["st1"],
    "nfs_client": ["gpu1", "gpu2"],
    "ungrouped": ["jump1"],
}
PEERS = {
    "lb1": {"ansible_host": "192.0.2.11"},
    "lb2": {"ansible_host": "192.0.2.12"},
    "gpu1": {"ansible_host": "192.0.2.21"},
    "gpu2": {"ansible_host": "2001:db8::22"},
    "mon1": {"ansible_host": "192.0.2.41"},
    "st1": {"ansible_host": "192.0.2.31"},
    "jump1": {"ansible_host": "192.0.2.99"},
}


def plan(host, changes=None, groups=None, peers=None):
    config = copy.deepcopy(CONFIG)
    config.update(changes or {})
    return core.plan(config, host, groups or GROUPS, peers or PEERS)


def allowed(result, port, proto="tcp"):
    """Every set name (or "any") a rule of ``result`` accepts ``proto``/``port`` from."""
    out = set()
    for rule in result["rules"]:
        match = re.search(r"(?:^|\s)%s dport (\{[^}]*\}|\S+)" % proto, rule)
        if not match:
            continue
        ports = match.group(1).strip("{} ").split(", ")
        hit = False
        for item in ports:
            bounds = item.split("-")
            hit = hit or int(bounds[0]) <= port <= int(bounds[-1])
        if hit:
            source = re.search(r"saddr @(\w+)_v[46]", rule)
            out.add(source.group(1) if source else ("any-" + rule.split()[2] if "nfproto" in rule else "any"))
    return out


def test_a_gpu_host_lets_the_load_balancers_reach_the_model_ports_and_monitoring_only_vllm():
    result = plan("gpu1")
    assert result["errors"] == []
    assert result["roles"] == ["gpu", "nfs_client"]
    assert allowed(result, 8000) == {"lb", "monitoring"}
    assert allowed(result, 8007) == {"lb", "monitoring"}  # instance 7 of 8
    assert allowed(result, 8008) == set()
    assert allowed(result, 7860) == {"lb"}
    assert allowed(result, 7867) == {"lb"}
    assert allowed(result, 22) == {"admin"}
    assert allowed(result, 9100) == {"monitoring"}
    assert allowed(result, 443) == set()
    assert result["sets"]["lb"] == {"v4": ["192.0.2.11", "192.0.2.12"], "v6": []}
    assert result["vrrp"] is None


def test_a_load_balancer_takes_clients_from_anywhere_and_vrrp_from_its_peers():
    result = plan("lb1")
    assert allowed(result, 443) == {"any"} and allowed(result, 80) == {"any"}
    assert allowed(result, 9113) == {"monitoring"}
    assert allowed(result, 8000) == set()
    assert result["vrrp"] == "lb"
    assert result["sets"]["lb"]["v4"] == ["192.0.2.11", "192.0.2.12"]


def test_clients_limited_to_networks_get_a_set_and_ipv4_only_any_keeps_ipv6_out():
    result = plan("lb1", {"client_sources": ["10.1.0.0/16", "@monitoring"]})
    assert allowed(result, 443) == {"clients"}
    assert result["sets"]["clients"] == {"v4": ["10.1.0.0/16", "192.0.2.41"], "v6": []}
    result = plan("lb1", {"client_sources": ["0.0.0.0/0"]})
    assert allowed(result, 443) == {"any-ipv4"}
    result = plan("lb1", {"client_sources": []})
    assert allowed(result, 443) == set()
    assert result["warnings"] == ["firewall_client_sources: empty, so no client reaches the front door"]


def test_monitoring_and_nfs_server():
    result = plan("mon1")
    assert allowed(result, 9090) == {"monitoring_admin"} == allowed(result, 9093)
    assert result["sets"]["monitoring_admin"]["v4"] == ["192.0.2.41", "192.0.2.250"]
    assert allowed(result, 9094) == {"monitoring"} == allowed(result, 9094, "udp")
    assert allowed(result, 9115) == {"monitoring"}
    result = plan("st1")
    assert allowed(result, 2049) == {"nfs_client", "monitoring"}
    assert allowed(result, 20048, "udp") == {"nfs_client"}
    assert allowed(result, 20048) == {"nfs_client"}
    # gpu2's IPv6 address lands in the IPv6 set, with an ip6 rule
    assert result["sets"]["nfs_client"] == {"v4": ["192.0.2.21"], "v6": ["2001:db8::22"]}
    assert any("ip6 saddr @nfs_client_v6 tcp dport" in rule for rule in result["rules"])


def test_a_host_in_no_service_group_takes_only_ssh_and_node_exporter():
    result = plan("jump1")
    assert result["roles"] == []
    assert [allowed(result, port) for port in (22, 9100, 443, 8000, 9090)] == [
        {"admin"},
        {"monitoring"},
        set(),
        set(),
        set(),
    ]


def test_explicit_instance_ports_and_the_span():
    result = plan(
        "gpu1", {"webui_ports_per_host": 2, "webui_instances": [{"gpu": 0, "vllm_port": 8105, "ui_port": 7905}]}
    )
    assert allowed(result, 8001) == {"lb", "monitoring"} and allowed(result, 8002) == set()
    assert allowed(result, 8105) == {"lb", "monitoring"} and allowed(result, 7905) == {"lb"}


def test_extra_rules_with_groups_and_networks():
    extra = [{"name": "dns", "ports": [53, "5300-5310"], "proto": "udp", "sources": ["@lb", "10.9.0.0/24"]}]
    result = plan("gpu1", {"allow": extra})
    assert allowed(result, 53, "udp") == {"allow0"} == allowed(result, 5305, "udp")
    assert allowed(result, 53) == set()
    assert result["sets"]["allow0"]["v4"] == ["10.9.0.0/24", "192.0.2.11", "192.0.2.12"]


def test_overlapping_sources_are_collapsed_for_nfts_interval_sets():
    result = plan("gpu1", {"admin_sources": ["10.0.0.0/24", "10.0.0.7", "10.0.1.0/24", "2001:db8::/64", "2001:db8::9"]})
    assert result["sets"]["admin"] == {"v4": ["10.0.0.0/23"], "v6": ["2001:db8::/64"]}


def test_renamed_groups():
    groups = {"frontends": ["lb1", "lb2"], "gpu": ["gpu1"], "mon": ["mon1"]}
    result = plan("lb1", {"groups": {"lb": "frontends", "monitoring": "mon"}}, groups=groups)
    assert result["vrrp"] == "lb" and result["sets"]["lb"]["v4"] == ["192.0.2.11", "192.0.2.12"]
    assert allowed(plan("gpu1", {"groups": {"lb": "frontends", "monitoring": "mon"}}, groups=groups), 8000) == {
        "lb",
        "monitoring",
    }


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        ({"qwen3vl_firewall_address": ["10.0.0.5", "10.0.1.5"], "ansible_host": "10.9.9.9"}, ["10.0.0.5", "10.0.1.5"]),
        ({"qwen3vl_firewall_address": "10.0.0.5", "qwen3vl_backend_address": "10.9.9.9"}, ["10.0.0.5"]),
        (
            {
                "qwen3vl_backend_address": "10.0.0.5",
                "qwen3vl_monitoring_address": "10.0.1.5",
                "ansible_host": "10.9.9.9",
            },
            ["10.0.0.5", "10.0.1.5"],
        ),
        ({"qwen3vl_monitoring_address": "10.0.1.5", "ansible_host": "10.9.9.9"}, ["10.0.1.5"]),
        ({"ansible_host": "10.9.9.9"}, ["10.9.9.9"]),
        ({"ansible_host": "gpu1.example", "ansible_facts": {"default_ipv4": {"address": "10.0.0.8"}}}, ["10.0.0.8"]),
    ],
)
def test_where_a_hosts_address_comes_from(host_vars, expected):
    assert core.address_of("h", host_vars) == (expected, None)


def test_a_host_without_an_address_is_named():
    peers = dict(PEERS, lb2={"ansible_host": "lb2.example.internal"})
    result = plan("gpu1", peers=peers)
    assert result["errors"] == [
        "qwen3vl_firewall_address: the rules need the address of lb2, and none of its variables holds one "
        "(ansible_host is 'lb2.example.internal'); set qwen3vl_firewall_address for it"
    ]
    # a host the rules of this host do not need is not asked for
    assert plan("gpu1", peers=dict(PEERS, st1={"ansible_host": "st1.example.internal"}))["errors"] == []
    bad = plan("gpu1", peers=dict(PEERS, lb2={"qwen3vl_firewall_address": "lb2.example"}))
    assert bad["errors"] == ["qwen3vl_firewall_address of lb2: 'lb2.example' is not an IP address"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"admin_sources": []}, "firewall_admin_sources: must list at least one address"),
        ({"admin_sources": "10.0.0.1"}, "firewall_admin_sources: must list at least one address"),
        ({"admin_sources": ["10.0.0.300"]}, "firewall_admin_sources[0]: '10.0.0.300' is not an IP network"),
        ({"client_sources": ["@nope"]}, "firewall_client_sources[0]: @nope names no inventory group"),
        ({"webui_ports_per_host": 0}, "firewall_webui_ports_per_host: 0"),
        ({"refuse": "ignore"}, "firewall_refuse: must be one of reject, drop"),
        ({"groups": {"lbs": "x"}}, "firewall_groups: unknown key(s) lbs"),
        ({"allow": {"ports": [1]}}, "firewall_allow: must be a list of rules"),
        ({"allow": [{"port": 53, "sources": ["10.0.0.0/8"]}]}, "firewall_allow[0]: unknown key(s) port"),
        ({"allow": [{"ports": [53]}]}, "firewall_allow[0].sources: must list who may connect"),
        (
            {"allow": [{"ports": ["9-2"], "sources": ["10.0.0.0/8"]}]},
            "firewall_allow[0].ports: '9-2' is not a port range",
        ),
        ({"allow": [{"ports": [], "sources": ["10.0.0.0/8"]}]}, "firewall_allow[0].ports: must name at least one port"),
        ({"allow": [{"ports": [70000], "sources": ["10.0.0.0/8"]}]}, "firewall_allow[0].ports: 70000"),
        (
            {"allow": [{"ports": [53], "proto": "icmp", "sources": ["10.0.0.0/8"]}]},
            "firewall_allow[0].proto: must be one of tcp, udp",
        ),
        ({"ports": dict(PORTS, ssh=0)}, "firewall ports.ssh[0]: 0"),
    ],
)
def test_each_check_names_its_variable(changes, message):
    result = plan("gpu1", changes)
    assert any(error.startswith(message) for error in result["errors"]), result["errors"]
    assert result["rules"] == []


def test_all_problems_come_at_once():
    result = plan("gpu1", {"admin_sources": [], "refuse": "x", "webui_ports_per_host": 99})
    assert len(result["errors"]) == 3, result["errors"]
