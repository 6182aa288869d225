"""The Grafana dashboards shipped in dashboards/: well-formed for import, and every panel asks Prometheus
something. (That every query parses and returns data is checked against the lab's Prometheus in
tests/lab/test_lab.py.)"""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))


def test_there_is_a_dashboard():
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_importable_and_every_panel_queries_the_chosen_prometheus(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], "%s has no query" % panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), (panel["title"], target["expr"])
            used = {name for name in variables if "$" + name in target["expr"]}
            assert used <= set(variables), (panel["title"], used)


def test_the_service_dashboard_covers_what_the_issue_asks_for():
    text = (REPO / "dashboards" / "qwen3vl-service.json").read_text()
    for metric in (
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "qwen3vl_gpu_health",
        "qwen3vl_gpu_temperature_celsius",
        "qwen3vl_gpu_memory_used_bytes",
        "qwen3vl_keepalived_vrrp_state",
        "qwen3vl_lb_backend_in_rotation",
    ):
        assert metric in text, metric
