"""The plan filters of webui, docker_engine and nvidia_container_toolkit: one calling convention
(settings mapping | filter(host context...) -> dict with errors and warnings), errors for bad settings,
AnsibleFilterError only for a wrong call."""

from collections.abc import Mapping

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.filter.docker_engine_plan import FilterModule as DockerEngineFilters
from ansible_collections.qwen3vl.ha.plugins.filter.nfs_plan import FilterModule as NfsFilters
from ansible_collections.qwen3vl.ha.plugins.filter.nginx_lb import FilterModule as NginxLbFilters
from ansible_collections.qwen3vl.ha.plugins.filter.nvidia_container_toolkit_plan import FilterModule as NvidiaFilters
from ansible_collections.qwen3vl.ha.plugins.filter.webui_plan import FilterModule as WebuiFilters

FACTS = {"count": 2, "indices": [0, 1], "uuids": ["GPU-a", "GPU-b"]}
WEBUI = {
    "gpus": "auto",
    "gpu_check": True,
    "model_dir": "/srv/models/m",
    "ui_image": "webui:1",
    "vllm_api_key_set": True,
}


class Strict(Mapping):
    """A mapping that fails on reading the keys it is told to, like a variable that cannot be templated."""

    def __init__(self, data, forbidden):
        self.data, self.forbidden = data, forbidden

    def __getitem__(self, key):
        if key in self.forbidden:
            raise AssertionError("%s was read" % key)
        return self.data[key]

    def __iter__(self):
        return iter(self.data)

    def __len__(self):
        return len(self.data)


FILTERS = [
    (DockerEngineFilters, "docker_engine_plan"),
    (NvidiaFilters, "nvidia_container_toolkit_plan"),
    (WebuiFilters, "webui_plan"),
    (NginxLbFilters, "nginx_lb_plan"),
    (NfsFilters, "nfs_server_plan"),
]


def test_nginx_lb_plan_names_the_variable():
    errors = NginxLbFilters().filters()["nginx_lb_plan"]({"tls_certificate": "x"})["errors"]
    assert errors and all(e.startswith("nginx_lb_") for e in errors), errors


@pytest.mark.parametrize(("module", "name"), FILTERS)
def test_every_plan_filter_returns_errors_and_warnings(module, name):
    result = module().filters()[name]({})
    assert isinstance(result["errors"], list) and isinstance(result["warnings"], list)


@pytest.mark.parametrize(("module", "name"), FILTERS)
def test_a_wrong_call_raises(module, name):
    with pytest.raises(AnsibleFilterError, match="%s: the input must be a mapping" % name):
        module().filters()[name](["not", "a", "mapping"])


def test_docker_engine_plan_names_the_variable_and_reads_the_repository_only_for_docker_source():
    f = DockerEngineFilters().filters()["docker_engine_plan"]
    assert f({"registry_mirrors": ["m"]})["errors"] == ["docker_engine_registry_mirrors: m is not an http(s) URL"]
    lazy = Strict({"source": "distribution", "repo_url": None, "version": ""}, {"repo_url", "repo_key_url"})
    assert f(lazy)["errors"] == []


def test_nvidia_container_toolkit_plan_names_the_variable():
    f = NvidiaFilters().filters()["nvidia_container_toolkit_plan"]
    assert f({"version": "1.17.8"})["errors"][0].startswith("nvidia_container_toolkit_version must be empty")
    assert f({"version": "1.17.8-1"})["errors"] == []


def test_webui_plan_takes_the_host_context_in_order():
    f = WebuiFilters().filters()["webui_plan"]
    assert f(WEBUI)["instances"] == []  # before the GPU check
    planned = f(WEBUI, FACTS)["instances"]
    assert [i["gpu_uuid"] for i in planned] == ["GPU-a", "GPU-b"]
    checksums = [{"item": "/srv/models/m", "ok": False, "msg": "mismatch"}]
    gated = f(WEBUI, FACTS, checksums, None)["instances"]
    assert [i["blocked"] for i in gated] == ["model checksum failed for /srv/models/m: mismatch"] * 2
    # values Ansible hands over when a task was skipped are no host context
    assert f(WEBUI, None, None, "")["instances"] == []


def test_webui_gate_still_gates_planned_instances():
    filters = WebuiFilters().filters()
    planned = filters["webui_plan"](WEBUI, FACTS)["instances"]
    gated = filters["webui_gate"](planned, [], {"gpus": [{"index": 0, "status": "healthy"}]})
    assert [i["blocked"] for i in gated] == ["", "GPU 1 is missing: gpu_health did not report it"]
    with pytest.raises(AnsibleFilterError):
        filters["webui_gate"]("x")


def test_webui_gate_with_mounts_and_the_gate_config_and_missing_mounts_filters():
    filters = WebuiFilters().filters()
    planned = filters["webui_plan"](WEBUI, FACTS)["instances"]
    table = "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
    mounts = {"mounts": ["/mnt/qwen3vl-data"], "mountinfo": table, "data_dir": "/mnt/qwen3vl-data/webui"}
    gated = filters["webui_gate"](planned, [], None, mounts)
    assert [i["blocked_by"] for i in gated] == [["mount"], ["mount"]]
    with pytest.raises(AnsibleFilterError):
        filters["webui_gate"](planned, [], None, "not a mapping")
    config = filters["webui_gate_config"](gated, {"gate_dir": "/run/qwen3vl-gate"})
    assert [i["id"] for i in config["instances"]] == ["0", "1"]
    with pytest.raises(AnsibleFilterError):
        filters["webui_gate_config"](gated, {})
    missing = filters["missing_mounts"]
    assert missing(table, ["/mnt/qwen3vl-data/webui"], ["/mnt/qwen3vl-data"]) == ["/mnt/qwen3vl-data"]
    mounted = table + "45 22 0:52 / /mnt/qwen3vl-data rw - nfs4 s:/d rw\n"
    assert missing(mounted, ["/mnt/qwen3vl-data/webui"], ["/mnt/qwen3vl-data"]) == []
    assert missing("", ["/srv/x"], []) == []
    with pytest.raises(AnsibleFilterError):
        missing(None, [], [])
