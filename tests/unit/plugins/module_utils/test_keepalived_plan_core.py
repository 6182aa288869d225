"""keepalived_plan core: VRRP settings per host from the role's variables, and a message naming the variable
for each problem."""

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


def host(address, prefix=24, interface="eth0", **extra):
    entry = {
        "interface": interface,
        "priority": None,
        "unicast_address": None,
        "interfaces": {interface: {"address": address, "prefix": prefix}, "lo": {"address": "127.0.0.1", "prefix": 8}},
        "has_facts": True,
    }
    entry.update(extra)
    return entry


HOSTS = {"lb1": host("192.0.2.11"), "lb2": host("192.0.2.12")}


def plan(hosts=None, **config):
    return core.plan(dict(BASE, **config), HOSTS if hosts is None else hosts)


def only_error(result):
    assert result["instances"] == [] and result["hosts"] == {}
    assert len(result["errors"]) == 1, result["errors"]
    return result["errors"][0]


def test_default_instance_from_scalars_first_host_is_master_with_unicast_peers():
    result = plan()
    assert result["errors"] == [] and result["warnings"] == []
    assert result["instances"] == [
        {
            "name": "qwen3vl",
            "virtual_router_id": 51,
            "vips": ["192.0.2.100/24"],
            "preferred_master": "lb1",
            "priorities": {"lb1": 150, "lb2": 140},
        }
    ]
    lb1, lb2 = result["hosts"]["lb1"]["instances"][0], result["hosts"]["lb2"]["instances"][0]
    assert (lb1["state"], lb1["priority"], lb1["unicast_src_ip"], lb1["unicast_peers"]) == (
        "MASTER",
        150,
        "192.0.2.11",
        ["192.0.2.12"],
    )
    assert (lb2["state"], lb2["priority"], lb2["unicast_src_ip"], lb2["unicast_peers"]) == (
        "BACKUP",
        140,
        "192.0.2.12",
        ["192.0.2.11"],
    )
    assert lb1["interface"] == "eth0" and lb1["vips"] == ["192.0.2.100/24"]
    assert (result["advert_int"], result["preempt_delay"], result["vrrp_version"]) == ("0.2", "0", 3)
    assert result["auto_priority_delay_us"] == 100000


@pytest.mark.parametrize("preempt, delay", [(False, 0), (True, 5), (False, 5)])
def test_nopreempt_or_preempt_delay_start_every_node_as_backup(preempt, delay):
    # keepalived ignores nopreempt / preempt_delay on a node whose initial state is MASTER
    result = plan(preempt=preempt, preempt_delay=delay)
    assert result["errors"] == []
    assert [result["hosts"][h]["instances"][0]["state"] for h in ("lb1", "lb2")] == ["BACKUP", "BACKUP"]
    assert result["instances"][0]["preferred_master"] == "lb1"


def test_multicast_has_no_unicast_addresses():
    inst = plan(unicast=False)["hosts"]["lb2"]["instances"][0]
    assert (inst["unicast_src_ip"], inst["unicast_peers"]) == (None, [])


def test_active_active_each_host_master_of_one_instance():
    instances = [
        {"name": "vip_a", "vips": ["192.0.2.100"], "virtual_router_id": 51, "priority_order": ["lb1", "lb2"]},
        {"name": "vip_b", "vips": ["192.0.2.101"], "virtual_router_id": 52, "priority_order": ["lb2", "lb1"]},
    ]
    result = plan(instances=instances)
    assert result["errors"] == []
    assert [(i["name"], i["preferred_master"], i["priorities"]) for i in result["instances"]] == [
        ("vip_a", "lb1", {"lb1": 150, "lb2": 140}),
        ("vip_b", "lb2", {"lb2": 150, "lb1": 140}),
    ]
    assert [(i["name"], i["state"]) for i in result["hosts"]["lb2"]["instances"]] == [
        ("vip_a", "BACKUP"),
        ("vip_b", "MASTER"),
    ]


def test_priority_override_per_host_and_per_instance():
    hosts = {"lb1": host("192.0.2.11", priority=100), "lb2": host("192.0.2.12", priority={"qwen3vl": 200})}
    result = plan(hosts)
    assert result["errors"] == []
    assert result["instances"][0]["priorities"] == {"lb2": 200, "lb1": 100}
    assert result["instances"][0]["preferred_master"] == "lb2"
    assert result["hosts"]["lb2"]["instances"][0]["state"] == "MASTER"


def test_unicast_address_override_is_used_for_source_and_peers():
    hosts = {"lb1": host("192.0.2.11", unicast_address="192.0.2.21"), "lb2": host("192.0.2.12")}
    result = plan(hosts)
    assert result["hosts"]["lb1"]["instances"][0]["unicast_src_ip"] == "192.0.2.21"
    assert result["hosts"]["lb2"]["instances"][0]["unicast_peers"] == ["192.0.2.21"]


def test_vip_prefix_override_and_per_host_interface_names():
    hosts = {"lb1": host("192.0.2.11", interface="ens3"), "lb2": host("192.0.2.12", interface="eth1")}
    result = plan(hosts, vip_prefix=32)
    assert result["errors"] == []
    assert [result["hosts"][h]["instances"][0]["interface"] for h in ("lb1", "lb2")] == ["ens3", "eth1"]
    assert result["hosts"]["lb1"]["instances"][0]["vips"] == ["192.0.2.100/32"]
    assert result["warnings"] == [
        "keepalived_vip_prefix: 32 differs from lb1's prefix /24 on ens3; the VIP gets /32",
        "keepalived_vip_prefix: 32 differs from lb2's prefix /24 on eth1; the VIP gets /32",
    ]


def test_one_host_is_a_warning_not_an_error():
    result = plan({"lb1": HOSTS["lb1"]}, group_hosts=["lb1"])
    assert result["errors"] == []
    assert result["warnings"] == [
        "keepalived_group: group 'lb' has only lb1; the VIP has no second host to move to (no failover)"
    ]
    assert result["hosts"]["lb1"]["instances"][0]["unicast_peers"] == []


def test_empty_group_is_an_error():
    assert only_error(plan({}, group_hosts=[])) == "keepalived_group: group 'lb' has no hosts in the inventory"


def test_empty_vip_names_the_variable():
    assert only_error(plan(vip="")).startswith("keepalived_vip: empty; set the virtual IPv4 address")


def test_vip_outside_the_subnet_names_the_variable_host_and_subnet():
    # every host whose subnet misses the VIP is named
    errors = plan(vip="198.51.100.7")["errors"]
    assert [e.split(" is not in ")[1].split("'s")[0] for e in errors] == ["lb1", "lb2"]
    assert errors[0] == (
        "keepalived_vip: 198.51.100.7 is not in lb1's subnet 192.0.2.0/24 on eth0 (keepalived_interface); "
        "the VIP must be on the VRRP interface's subnet"
    )


def test_vip_in_one_hosts_subnet_only():
    hosts = {"lb1": HOSTS["lb1"], "lb2": host("192.0.3.12")}
    assert only_error(plan(hosts)).startswith("keepalived_vip: 192.0.2.100 is not in lb2's subnet 192.0.3.0/24")


def test_vip_equal_to_a_host_address():
    assert only_error(plan(vip="192.0.2.12")) == (
        "keepalived_vip: 192.0.2.12 is lb2's own address on eth0; the VIP must be a free address"
    )


def test_vip_is_the_broadcast_address():
    assert "broadcast" in only_error(plan(vip="192.0.2.255"))


@pytest.mark.parametrize("vip", ["192.0.2.100/24", "vip.example.com", "2001:db8::1", "192.0.2.300"])
def test_vip_that_is_not_a_plain_ipv4_address(vip):
    assert only_error(plan(vip=vip)).startswith("keepalived_vip: %r is not an IPv4 address" % vip)


@pytest.mark.parametrize("vrid", [0, 256, "x", None, True])
def test_router_id_out_of_range(vrid):
    assert only_error(plan(virtual_router_id=vrid)) == (
        "keepalived_virtual_router_id: %r must be a whole number 1..255" % (vrid,)
    )


def test_router_id_as_a_numeric_string_is_accepted():
    assert plan(virtual_router_id="51")["instances"][0]["virtual_router_id"] == 51


def test_router_id_used_by_another_router_on_the_lan():
    assert only_error(plan(foreign_router_ids=[50, 51])) == (
        "keepalived_virtual_router_id: 51 is in keepalived_foreign_router_ids (another VRRP router on this LAN "
        "uses it); pick a free id"
    )


def test_duplicate_router_id_between_instances():
    instances = [
        {"name": "a", "vips": ["192.0.2.100"], "virtual_router_id": 51},
        {"name": "b", "vips": ["192.0.2.101"], "virtual_router_id": 51},
    ]
    assert only_error(plan(instances=instances)) == (
        "keepalived_instances[1].virtual_router_id: 51 is already used by keepalived_instances[0].virtual_router_id "
        "(one virtual router id per instance on a LAN)"
    )


def test_duplicate_names_and_vips_between_instances():
    instances = [
        {"name": "a", "vips": ["192.0.2.100"], "virtual_router_id": 51},
        {"name": "a", "vips": ["192.0.2.100"], "virtual_router_id": 52},
    ]
    assert plan(instances=instances)["errors"] == [
        "keepalived_instances[1].name: 'a' is already used by keepalived_instances[0]",
        "keepalived_instances[1].vips[0]: 192.0.2.100 is already a VIP of keepalived_instances[0]",
    ]


def test_instance_with_unknown_key_and_bad_name():
    instances = [{"name": "a b", "vips": ["192.0.2.100"], "virtual_router_id": 51, "vrid": 3}]
    assert plan(instances=instances)["errors"] == [
        "keepalived_instances[0]: unknown key(s) vrid (known: name, vips, virtual_router_id, interface, "
        "priority_order, vip_prefix)",
        "keepalived_instances[0].name: 'a b' must be 1-32 letters, digits, '_', '.' or '-' (it names the instance "
        "and its metric file)",
    ]


def test_instance_without_vips():
    instances = [{"name": "a", "vips": [], "virtual_router_id": 51}]
    assert only_error(plan(instances=instances)) == (
        "keepalived_instances[0].vips: list at least one virtual IPv4 address"
    )


@pytest.mark.parametrize("priority", [0, 255, 300, -5])
def test_priority_out_of_range_names_the_host(priority):
    hosts = {"lb1": host("192.0.2.11", priority=priority), "lb2": HOSTS["lb2"]}
    assert only_error(plan(hosts)) == "keepalived_priority on lb1: %d is outside 1..254" % priority


def test_priority_that_is_not_a_number():
    hosts = {"lb1": host("192.0.2.11", priority="high"), "lb2": HOSTS["lb2"]}
    assert only_error(plan(hosts)) == "keepalived_priority on lb1: 'high' is not a whole number"


def test_duplicate_priorities_name_both_hosts_and_where_they_come_from():
    hosts = {"lb1": HOSTS["lb1"], "lb2": host("192.0.2.12", priority=150)}
    assert only_error(plan(hosts)) == (
        "keepalived_priority: lb1 and lb2 both have priority 150 in instance qwen3vl (from keepalived_group "
        "(lb1 is number 1 in it) and keepalived_priority on lb2); priorities of an instance's hosts must differ"
    )


def test_priority_order_with_unknown_duplicate_and_missing_hosts():
    instances = [
        {"name": "a", "vips": ["192.0.2.100"], "virtual_router_id": 51, "priority_order": ["lb1", "lb9", "lb1"]}
    ]
    assert plan(instances=instances)["errors"] == [
        "keepalived_instances[0].priority_order: lb9 not in group 'lb' (hosts: lb1, lb2)",
        "keepalived_instances[0].priority_order: lb1 listed more than once",
        "keepalived_instances[0].priority_order: lb2 of group 'lb' missing (list every host of the group, most "
        "preferred master first)",
    ]


def test_interface_missing_on_a_host():
    hosts = {"lb1": HOSTS["lb1"], "lb2": host("192.0.2.12", interface="ens3")}
    instances = [{"name": "a", "vips": ["192.0.2.100"], "virtual_router_id": 51, "interface": "eth0"}]
    assert only_error(plan(hosts, instances=instances)) == (
        "keepalived_instances[0].interface: lb2 has no interface 'eth0' with an IPv4 address (its IPv4 interfaces: "
        "ens3, lo)"
    )


def test_host_without_facts():
    hosts = {"lb1": HOSTS["lb1"], "lb2": core.host_view({})}
    assert only_error(plan(hosts)).startswith("lb2: no facts for this host of the VRRP group")


@pytest.mark.parametrize(
    "version, advert, message",
    [
        (3, 0, "keepalived_advert_int: 0 is not a positive number of seconds"),
        (3, "fast", "keepalived_advert_int: 'fast' is not a positive number of seconds"),
        (3, 0.005, "keepalived_advert_int: 0.005 must be between 0.01 and 40.95 seconds in steps of 0.01 with VRRPv3"),
        (3, 41, "keepalived_advert_int: 41 must be between 0.01 and 40.95 seconds in steps of 0.01 with VRRPv3"),
        (
            2,
            0.2,
            "keepalived_advert_int: 0.2 must be whole seconds 1..255 with VRRPv2 (sub-second intervals need "
            "keepalived_vrrp_version: 3)",
        ),
        (4, 1, "keepalived_vrrp_version: 4 must be 2 or 3"),
    ],
)
def test_bad_advert_int(version, advert, message):
    assert only_error(plan(vrrp_version=version, advert_int=advert)) == message


@pytest.mark.parametrize("advert, text", [(0.2, "0.2"), ("0.25", "0.25"), (1, "1"), (1.0, "1"), (0.1 + 0.2, "0.3")])
def test_good_advert_int_is_written_as_keepalived_reads_it(advert, text):
    assert plan(advert_int=advert)["advert_int"] == text


def test_whole_seconds_for_the_check_timers_on_keepalived_2_2():
    assert plan(check_interval=0.5, check_fall=0)["errors"] == [
        "keepalived_check_interval: 0.5 must be a whole number >= 1",
        "keepalived_check_fall: 0 must be a whole number >= 1",
    ]


def test_preempt_delay_range():
    assert only_error(plan(preempt_delay=2000)) == "keepalived_preempt_delay: 2000 must be 0..1000 seconds"


def test_more_hosts_than_automatic_priorities():
    names = ["lb%d" % n for n in range(16)]
    hosts = {n: host("192.0.2.%d" % (10 + i)) for i, n in enumerate(names)}
    assert only_error(plan(hosts, group_hosts=names)) == (
        "keepalived_priority: lb15 gets no automatic priority (more than 15 hosts); set it for the host"
    )


def test_host_view_reads_ipv4_per_interface_from_facts():
    facts = {
        "interfaces": ["lo", "eth0", "br-1a2b", "eth1"],
        "default_ipv4": {"interface": "eth0"},
        "eth0": {"ipv4": {"address": "192.0.2.11", "prefix": "24"}},
        "br_1a2b": {"ipv4": {"address": "172.17.0.1", "prefix": "16"}},
        "lo": {"ipv4": {"address": "127.0.0.1", "prefix": "8"}},
        "eth1": {"active": False},
    }
    view = core.host_view(facts, priority=120)
    assert view == {
        "interface": "eth0",
        "priority": 120,
        "unicast_address": None,
        "interfaces": {
            "lo": {"address": "127.0.0.1", "prefix": "8"},
            "eth0": {"address": "192.0.2.11", "prefix": "24"},
            "br-1a2b": {"address": "172.17.0.1", "prefix": "16"},
        },
        "has_facts": True,
    }
    result = core.plan(BASE, {"lb1": view, "lb2": HOSTS["lb2"]})
    assert result["errors"] == []
    assert result["instances"][0]["priorities"] == {"lb2": 140, "lb1": 120}


def _facts(address):
    return {
        "interfaces": ["lo", "eth0"],
        "default_ipv4": {"interface": "eth0"},
        "eth0": {"ipv4": {"address": address, "prefix": "24"}},
    }


def test_filter_reads_own_settings_of_play_hosts_and_inventory_vars_of_the_others():
    """The filter's adapter: a host in the play brings its own settings (set_fact), a host outside it (--limit)
    its inventory variables; both bring their facts."""
    hostvars = {
        "lb1": {
            "ansible_facts": _facts("192.0.2.11"),
            "_keepalived_host_settings": {"interface": "eth0", "priority": 90},
        },
        "lb2": {
            "ansible_facts": _facts("192.0.2.12"),
            "keepalived_priority": 100,
            "keepalived_unicast_address": "192.0.2.22",
        },
    }
    result = keepalived_plan(BASE, hostvars)
    assert result["errors"] == []
    assert result["instances"][0]["priorities"] == {"lb2": 100, "lb1": 90}
    assert result["hosts"]["lb1"]["instances"][0]["unicast_peers"] == ["192.0.2.22"]


def test_filter_reports_a_group_host_without_facts():
    result = keepalived_plan(BASE, {"lb1": {"ansible_facts": _facts("192.0.2.11")}})
    assert result["errors"][0].startswith("lb2: no facts for this host of the VRRP group")
