"""monitoring_plan core: Prometheus' scrape jobs from the inventory, the role settings' checks, and
Alertmanager's configuration (routing, inhibition, receivers)."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import monitoring_plan as core

PORTS = {
    "port": 9090,
    "alertmanager_port": 9093,
    "node_exporter_port": 9100,
    "nginx_exporter_port": 9113,
    "blackbox_exporter_port": 9115,
    "blackbox_nfs_port": 2049,
}


def gpu_host(name, address, *instances, via="webui_deployed"):
    record = {"instances": [{"id": n, "gpu_index": n, "vllm_port": 8000 + n, "ui_port": 7860 + n} for n in instances]}
    host = {"inventory_hostname": name, "qwen3vl_backend_address": address}
    if via == "webui_deployed":
        host["webui_deployed"] = record
    else:
        host["ansible_local"] = {"qwen3vl_webui": record}
    return host


def job(result, name):
    found = [j for j in result["scrape_configs"] if j["job_name"] == name]
    return found[0] if found else None


def targets(result, name):
    entry = job(result, name)
    return [] if entry is None else [(c["targets"][0], c["labels"]) for c in entry["static_configs"]]


def site(**settings):
    hosts = {
        "lb1": {"inventory_hostname": "lb1", "ansible_host": "10.0.0.11"},
        "gpu1": gpu_host("gpu1", "10.0.0.21", 0, 1),
        "gpu2": gpu_host("gpu2", "10.0.0.22", 0, via="local"),
        "nfs1": {"inventory_hostname": "nfs1", "ansible_host": "nfs1.example"},
        "mon1": {"inventory_hostname": "mon1", "ansible_host": "10.0.0.41", "qwen3vl_monitoring_address": "10.1.0.41"},
    }
    groups = {
        "all": list(hosts),
        "gpu": ["gpu1", "gpu2"],
        "lb": ["lb1"],
        "monitoring": ["mon1"],
        "nfs_server": ["nfs1"],
    }
    return core.scrape_configs(hosts, groups, dict(PORTS, **settings))


def test_every_host_gets_a_node_target_labelled_with_its_name_at_its_monitoring_address():
    result = site()
    assert targets(result, "node") == [
        ("10.0.0.11:9100", {"host": "lb1"}),
        ("10.0.0.21:9100", {"host": "gpu1"}),
        ("10.0.0.22:9100", {"host": "gpu2"}),
        ("nfs1.example:9100", {"host": "nfs1"}),
        ("10.1.0.41:9100", {"host": "mon1"}),
    ]


def test_each_recorded_model_instance_is_a_vllm_target_with_host_instance_and_gpu_labels():
    assert targets(site(), "vllm") == [
        ("10.0.0.21:8000", {"host": "gpu1", "model_instance": "0", "gpu": "0"}),
        ("10.0.0.21:8001", {"host": "gpu1", "model_instance": "1", "gpu": "1"}),
        ("10.0.0.22:8000", {"host": "gpu2", "model_instance": "0", "gpu": "0"}),
    ]


def test_monitoring_hosts_are_prometheus_and_alertmanager_targets_and_receive_the_alerts():
    result = site()
    assert targets(result, "prometheus") == [("10.1.0.41:9090", {"host": "mon1"})]
    assert targets(result, "alertmanager") == [("10.1.0.41:9093", {"host": "mon1"})]
    assert result["alertmanagers"] == ["10.1.0.41:9093"]


def test_a_gpu_host_without_a_record_is_left_out_and_reported_not_an_error():
    hosts = {"gpu9": {"inventory_hostname": "gpu9"}}
    groups = {"all": ["gpu9"], "gpu": ["gpu9"]}
    result = core.scrape_configs(hosts, groups, dict(PORTS))
    assert job(result, "vllm") is None
    assert result["skipped"] == ["gpu9: no model instances recorded (the webui role has not run there)"]
    assert targets(result, "node") == [("gpu9:9100", {"host": "gpu9"})]
    checked = core.scrape_configs(hosts, groups, dict(PORTS, check_mode=True))
    assert "check mode" in checked["skipped"][0]


def test_an_ipv6_address_is_bracketed():
    hosts = {"gpu1": gpu_host("gpu1", "2001:db8::21", 0)}
    result = core.scrape_configs(hosts, {"all": ["gpu1"], "gpu": ["gpu1"]}, dict(PORTS))
    assert targets(result, "vllm")[0][0] == "[2001:db8::21]:8000"


def test_probe_jobs_only_with_blackbox_and_they_go_through_the_local_exporter():
    assert job(site(), "blackbox_nfs") is None
    result = site(blackbox=True, blackbox_vip_url="https://192.0.2.10/healthz")
    nfs = job(result, "blackbox_nfs")
    assert nfs["metrics_path"] == "/probe" and nfs["params"] == {"module": ["qwen3vl_tcp"]}
    assert targets(result, "blackbox_nfs") == [("nfs1.example:2049", {"host": "nfs1"})]
    assert {"target_label": "__address__", "replacement": "127.0.0.1:9115"} in nfs["relabel_configs"]
    assert [t for t, _labels in targets(result, "blackbox_instance")] == [
        "http://10.0.0.21:8000/health",
        "http://10.0.0.21:8001/health",
        "http://10.0.0.22:8000/health",
    ]
    assert targets(result, "blackbox_vip") == [("https://192.0.2.10/healthz", {"vip": "192.0.2.10"})]


def test_nginx_targets_are_the_lb_group_and_extra_jobs_are_appended():
    extra = {"job_name": "mine", "static_configs": [{"targets": ["x:1"]}]}
    result = site(extra=[extra])
    assert targets(result, "nginx") == [("10.0.0.11:9113", {"host": "lb1"})]
    assert result["scrape_configs"][-1] == extra


GOOD = {
    "scrape_interval": "15s",
    "scrape_timeout": "10s",
    "evaluation_interval": "15s",
    "alert_down_for": "1m",
    "alert_gpu_memory_ratio": 0.9,
    "alert_http_5xx_ratio": 0.01,
    "alert_cpu_ratio": 0.8,
    "alert_kv_cache_ratio": 0.95,
    "alert_disk_free_ratio": 0.1,
    "alert_latency_p95_seconds": 5,
    "alert_queue_waiting": 10,
    "external_labels": {"site": "dc1"},
    **PORTS,
}


def test_good_settings_pass():
    assert core.settings_errors(dict(GOOD)) == []


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"scrape_timeout": "20s"},
            "prometheus_scrape_timeout (20s) must not be longer than prometheus_scrape_interval",
        ),
        ({"scrape_interval": "15"}, "prometheus_scrape_interval must be a Prometheus duration"),
        ({"alert_down_for": "0s"}, "prometheus_alert_down_for must be a Prometheus duration"),
        ({"port": 70000}, "prometheus_port must be a TCP port"),
        ({"alertmanager_port": True}, "prometheus_alertmanager_port must be a TCP port"),
        ({"alert_cpu_ratio": 80}, "prometheus_alert_cpu_ratio must be a ratio between 0 and 1"),
        ({"alert_queue_waiting": 0}, "prometheus_alert_queue_waiting must be a positive number"),
        ({"external_labels": {"bad-name": "x"}}, "prometheus_external_labels: 'bad-name' is not a valid label name"),
    ],
)
def test_each_bad_setting_is_named(change, message):
    errors = core.settings_errors(dict(GOOD, **change))
    assert len(errors) == 1 and message in errors[0], errors


def test_durations_are_read_as_prometheus_reads_them():
    assert core.duration_seconds("1m30s") == 90
    assert core.duration_seconds("500ms") == 0.5
    assert core.duration_seconds("1.5m") is None
    assert core.duration_seconds(15) is None


AM = {
    "receivers": [{"name": "chat", "webhook_configs": [{"url": "http://127.0.0.1:9/x"}]}, {"name": "pager"}],
    "receiver": "chat",
    "critical_receiver": "pager",
    "warning_receiver": "",
    "watchdog_receiver": "",
    "group_by": ["alertname", "host"],
    "group_wait": "30s",
    "group_interval": "5m",
    "repeat_interval": "4h",
}


def test_alertmanager_routes_the_watchdog_first_then_by_severity():
    config, errors = core.alertmanager_config(dict(AM))
    assert errors == []
    routes = config["route"]["routes"]
    assert routes[0]["matchers"] == ['alertname="Watchdog"'] and routes[0]["repeat_interval"] == "1m"
    # no watchdog receiver given: a receiver that sends nothing is added for it
    assert routes[0]["receiver"] == "qwen3vl-watchdog-null"
    assert {"name": "qwen3vl-watchdog-null"} in config["receivers"]
    assert routes[1:] == [
        {"receiver": "pager", "matchers": ['severity="critical"']},
        {"receiver": "chat", "matchers": ['severity="warning"']},
    ]
    assert config["route"]["receiver"] == "chat" and config["route"]["group_by"] == ["alertname", "host"]


def test_alertmanager_inhibits_a_dead_hosts_other_alerts_by_host():
    config, _errors = core.alertmanager_config(dict(AM))
    host_down = config["inhibit_rules"][0]
    assert host_down["source_matchers"] == ['alertname="QwenHostDown"'] and host_down["equal"] == ["host"]
    vllm_down = config["inhibit_rules"][1]
    assert vllm_down["equal"] == ["host", "model_instance"]


def test_alertmanager_extra_routes_come_before_severity_and_global_is_kept():
    extra = {"receiver": "pager", "matchers": ['team="ml"']}
    config, errors = core.alertmanager_config(dict(AM, routes_extra=[extra], **{"global": {"smtp_from": "a@b"}}))
    assert errors == [] and config["route"]["routes"][1] == extra and config["global"] == {"smtp_from": "a@b"}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"receiver": "nobody"}, "alertmanager_receiver 'nobody' is not one of alertmanager_receivers (chat, pager)"),
        ({"critical_receiver": "nobody"}, "alertmanager_critical_receiver 'nobody' is not one of"),
        ({"receivers": [{"name": "chat"}, {"name": "chat"}], "critical_receiver": ""}, "the name 'chat' is used twice"),
        ({"receivers": [{"name": "chat"}, {}], "critical_receiver": ""}, "alertmanager_receivers[1] needs a name"),
        ({"group_wait": "soon"}, "alertmanager_group_wait must be a duration"),
        ({"group_by": ["bad-label"]}, "alertmanager_group_by must be a list of label names"),
    ],
)
def test_alertmanager_bad_settings_are_named(change, message):
    _config, errors = core.alertmanager_config(dict(AM, **change))
    assert any(message in e for e in errors), errors
