"""webui_plan core: instances from the role's variables, and a message naming the variable for each problem."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import gpu_watch, instance_gate
from ansible_collections.qwen3vl.ha.plugins.module_utils import webui_plan as core

UUID0 = "GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13"
UUID1 = "GPU-a17e0c94-52b3-4f08-b6d1-9e4c3a2f5d60"
FACTS = {"count": 2, "indices": [0, 1], "uuids": [UUID0, UUID1], "usable_indices": [0, 1]}
BASE = {"model_dir": "/srv/models/Qwen3-VL-4B-Instruct", "gpu_check": True}


def plan(facts=None, **config):
    return core.plan(dict(BASE, **config), FACTS if facts is None else facts)


def test_auto_makes_one_instance_per_gpu_with_consecutive_ports():
    result = plan(gpus="auto")
    assert result["errors"] == []
    got = [
        (i["id"], i["gpu"], i["gpu_uuid"], i["vllm_name"], i["ui_name"], i["vllm_port"], i["ui_port"])
        for i in result["instances"]
    ]
    assert got == [
        (0, "0", UUID0, "qwen3vl-vllm-0", "qwen3vl-webui-0", 8000, 7860),
        (1, "1", UUID1, "qwen3vl-vllm-1", "qwen3vl-webui-1", 8001, 7861),
    ]
    assert result["instances"][0]["model_path"] == "/models/Qwen3-VL-4B-Instruct"


def test_auto_keeps_an_unhealthy_gpu_so_ports_do_not_shift():
    facts = dict(FACTS, usable_indices=[1], usable_uuids=[UUID1])
    assert [i["vllm_port"] for i in plan(facts, gpus="auto")["instances"]] == [8000, 8001]


def test_uuid_reference_resolves_to_its_index():
    result = plan(gpus=[UUID1])
    assert result["errors"] == []
    assert (result["instances"][0]["gpu_index"], result["instances"][0]["vllm_port"]) == (1, 8000)


def test_string_digits_are_indices():
    assert plan(gpus=["1"])["instances"][0]["gpu_index"] == 1


def test_gpu_that_does_not_exist_names_the_entry():
    result = plan(gpus=[0, 5])
    assert result["instances"] == []
    assert result["errors"] == ["webui_gpus[1]: GPU index 5 does not exist on this host (GPUs: 0, 1)"]


def test_unknown_uuid_is_refused():
    assert plan(gpus=["GPU-00000000-0000-0000-0000-000000000000"])["errors"] == [
        "webui_gpus[0]: no GPU with UUID GPU-00000000-0000-0000-0000-000000000000 on this host"
    ]


def test_same_gpu_twice_by_index_and_uuid_is_refused():
    assert plan(gpus=[0, UUID0])["errors"] == [
        "webui_gpus[1]: GPU %s is already used by webui_gpus[0] (one instance per GPU)" % UUID0
    ]


def test_without_gpu_check_indices_are_taken_as_given():
    result = core.plan(dict(BASE, gpu_check=False, gpus=[0, 3]), None)
    assert result["errors"] == []
    assert [i["gpu"] for i in result["instances"]] == ["0", "3"]
    assert result["instances"][1]["gpu_uuid"] is None


def test_auto_without_gpu_check_is_refused():
    assert (
        "webui_gpus: 'auto' takes the GPU list from gpu_health"
        in core.plan(dict(BASE, gpu_check=False), None)["errors"][0]
    )


def test_auto_on_a_host_without_gpus_is_refused():
    assert plan({"count": 0, "indices": [], "uuids": []}, gpus="auto")["errors"] == [
        "webui_gpus: 'auto' found no GPU on this host (gpu_health reported none)"
    ]


@pytest.mark.parametrize("bad", [-1, True, 1.5, "gpu0", None, {"a": 1}])
def test_bad_gpu_references(bad):
    assert "is not a GPU index" in plan(gpus=[bad])["errors"][0]


def test_two_instances_on_one_port_name_both():
    result = plan(instances=[{"gpu": 0}, {"gpu": 1, "vllm_port": 8000}])
    assert result["errors"] == [
        "webui_instances[1].vllm_port: port 8000 is already used by webui_instances[0] (vllm_port)"
    ]


def test_vllm_and_webui_ranges_may_not_overlap():
    result = plan(gpus=[0, 1], ui_port_base=8001)
    assert result["errors"] == ["webui_gpus[1] (vllm_port): port 8001 is already used by webui_gpus[0] (ui_port)"]


@pytest.mark.parametrize("port", [0, 70000, "80", True])
def test_ports_must_be_tcp_ports(port):
    assert "is not a TCP port" in plan(instances=[{"gpu": 0, "ui_port": port}])["errors"][0]


def test_instance_entries_are_checked():
    errors = plan(instances=[{"gpu": 0, "port": 1}, {"vllm_port": 8005}, "x"])["errors"]
    assert errors == [
        "webui_instances[0]: unknown key(s) port; allowed: gpu, vllm_port, ui_port, model_dir",
        "webui_instances[1]: 'gpu' is required (a GPU index or UUID)",
        "webui_instances[2]: must be a mapping with at least 'gpu'",
    ]


def test_instance_with_its_own_model_dir_and_ports():
    result = plan(instances=[{"gpu": 1, "vllm_port": 9000, "ui_port": 9100, "model_dir": "/data/m2/"}])
    instance = result["instances"][0]
    assert (instance["vllm_port"], instance["ui_port"], instance["model_dir"], instance["model_path"]) == (
        9000,
        9100,
        "/data/m2",
        "/models/m2",
    )
    assert instance["model_dir_var"] == "webui_instances[0].model_dir"


def test_relative_model_dir_is_refused():
    assert plan(gpus=[0], model_dir="models/x")["errors"] == [
        "webui_model_dir: 'models/x' is not an absolute path to the model directory"
    ]


@pytest.mark.parametrize("arg", ["--port", "--port=9000", "--api-key", "--served-model-name=x", "--shutdown-timeout"])
def test_extra_args_may_not_repeat_managed_flags(arg):
    errors = plan(gpus=[0], vllm_extra_args=["--max-num-seqs", "64", arg])["errors"]
    assert errors == [
        "webui_vllm_extra_args[2]: %r collides with %s, which the role sets itself; use the role's variable for it"
        % (arg, arg.split("=")[0])
    ]


def test_other_extra_args_pass():
    assert plan(gpus=[0], vllm_extra_args=["--max-num-seqs", "64", "--enable-prefix-caching"])["errors"] == []


def test_extra_args_must_be_strings():
    assert plan(gpus=[0], vllm_extra_args=["--max-num-seqs", 64])["errors"] == [
        "webui_vllm_extra_args: must be a list of strings (one argument per item)"
    ]


def test_env_may_not_carry_the_key_or_fight_the_gpu_pinning():
    errors = plan(gpus=[0], vllm_env={"VLLM_API_KEY": "x", "CUDA_VISIBLE_DEVICES": "1", "HF_HUB_OFFLINE": "1"})[
        "errors"
    ]
    assert errors == [
        "webui_vllm_env: CUDA_VISIBLE_DEVICES is set by the role; remove it from webui_vllm_env",
        "webui_vllm_env: VLLM_API_KEY is set by the role; remove it from webui_vllm_env",
    ]
    # without device requests (stand-in images) CUDA_VISIBLE_DEVICES is the user's business
    assert plan(gpus=[0], device_requests=False, vllm_env={"CUDA_VISIBLE_DEVICES": "1"})["errors"] == []


def test_gate_blocks_on_checksum_and_unhealthy_gpu_only():
    instances = plan(gpus="auto")["instances"]
    checksums = [
        {
            "item": "/srv/models/Qwen3-VL-4B-Instruct",
            "ok": False,
            "msg": "1 of 3 files failed verification: a: sha256 mismatch",
        }
    ]
    gated = core.gate(instances, checksums, None)
    assert [g["blocked"] for g in gated] == [
        "model checksum failed for /srv/models/Qwen3-VL-4B-Instruct: 1 of 3 files failed verification: a: sha256 mismatch"
    ] * 2
    gpu_result = {
        "gpus": [
            {"index": 0, "status": "warning", "reasons": ["thermal throttling"]},
            {"index": 1, "status": "unhealthy", "reasons": ["2 volatile uncorrectable ECC errors"]},
        ]
    }
    gated = core.gate(
        instances, [{"item": "/srv/models/Qwen3-VL-4B-Instruct", "ok": True, "msg": "3 files verified"}], gpu_result
    )
    assert [g["blocked"] for g in gated] == ["", "GPU 1 is unhealthy: 2 volatile uncorrectable ECC errors"]


def test_gate_treats_a_failed_checksum_run_and_a_missing_gpu_as_blocking():
    instances = plan(gpus="auto")["instances"]
    gated = core.gate(
        instances,
        [{"item": "/srv/models/Qwen3-VL-4B-Instruct", "failed": True, "msg": "manifest x does not exist"}],
        {"gpus": [{"index": 0, "status": "healthy"}]},
    )
    assert (
        gated[0]["blocked"] == "model checksum failed for /srv/models/Qwen3-VL-4B-Instruct: manifest x does not exist"
    )
    assert gated[1]["blocked"].endswith("GPU 1 is missing: gpu_health did not report it")


def test_gate_without_checks_blocks_nothing():
    instances = plan(gpus="auto")["instances"]
    assert [g["blocked"] for g in core.gate(instances)] == ["", ""]
    skipped = [{"item": "/srv/models/Qwen3-VL-4B-Instruct", "skipped": True}]
    assert [g["blocked"] for g in core.gate(instances, skipped, None)] == ["", ""]


MOUNTINFO = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "45 22 0:52 / /mnt/qwen3vl-models ro,relatime shared:30 - nfs4 storage1:/srv/qwen3vl/models ro\n"
)


def test_gate_blocks_an_instance_whose_mount_is_missing_and_says_which_directory_lies_there():
    instances = plan(gpus="auto", model_dir="/mnt/qwen3vl-models/Qwen3-VL")["instances"]
    mounts = {
        "mounts": ["/mnt/qwen3vl-models", "/mnt/qwen3vl-data", "/mnt/unrelated"],
        "mountinfo": MOUNTINFO,
        "data_dir": "/mnt/qwen3vl-data/webui",
    }
    gated = core.gate(
        instances, None, {"gpus": [{"index": 0, "status": "healthy"}, {"index": 1, "status": "unhealthy"}]}, mounts
    )
    assert gated[0]["blocked"] == "not mounted: /mnt/qwen3vl-data (needed by its WebUI data directory)"
    assert gated[0]["blocked_by"] == ["mount"]
    assert gated[1]["blocked_by"] == ["mount", "gpu"]
    mounted = dict(mounts, mountinfo=MOUNTINFO + "46 22 0:53 / /mnt/qwen3vl-data rw - nfs4 s:/d rw\n")
    assert [g["blocked_by"] for g in core.gate(instances, None, None, mounted)] == [[], []]
    gone = dict(mounts, mountinfo="22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    assert core.gate(instances, None, None, gone)[0]["blocked"] == (
        "not mounted: /mnt/qwen3vl-models, /mnt/qwen3vl-data (needed by its model directory and WebUI data directory)"
    )


def gpu1_unhealthy():
    """Two planned instances, gated with GPU 1 unhealthy."""
    instances = plan(gpus="auto")["instances"]
    return core.gate(
        instances, None, {"gpus": [{"index": 0, "status": "healthy"}, {"index": 1, "status": "unhealthy"}]}
    )


def test_gate_config_leaves_out_instances_blocked_by_their_gpu_only():
    gated = gpu1_unhealthy()
    settings = {
        "gate_dir": "/run/qwen3vl-gate",
        "textfile_dir": "",
        "interval": 5,
        "mounts": ["/mnt/qwen3vl-data"],
        "checksum": {"workers": 2},
        "manifest": "",
        "verify": True,
        "data_dir": "/mnt/qwen3vl-data/webui",
    }
    config = core.gate_config(gated, settings)
    assert [item["id"] for item in config["instances"]] == ["0"]
    assert config["instances"][0]["containers"] == ["qwen3vl-vllm-0", "qwen3vl-webui-0"]
    assert config["state_file"] == "/run/qwen3vl-gate/state.json"
    # what the role writes is what the gate accepts
    loaded = instance_gate.load_config(config)
    assert loaded["checksum"]["workers"] == 2 and loaded["instances"][0]["data_dir"] == "/mnt/qwen3vl-data/webui"


def test_gpu_watch_config_watches_every_instance_without_the_deploy_time_rules():
    gated = gpu1_unhealthy()
    settings = {
        "gate_dir": "/run/qwen3vl-gate",
        "textfile_dir": "/var/lib/prometheus/node-exporter",
        "interval": 1,
        "fall": "2",
        "rise": 3,
        "stop_timeout": "25",
        "gpu_health_args": {
            "backend": "nvidia_smi",
            "min_free_memory_mib": 20000,
            "expected_count": 2,
            "xid_fatal": [79],
        },
    }
    config = core.gpu_watch_config(gated, settings)
    # the instance blocked for its GPU is watched too (it stays fenced until its GPU is healthy)
    assert [(item["id"], item["gpu_index"]) for item in config["instances"]] == [("0", 0), ("1", 1)]
    assert config["instances"][1]["containers"] == ["qwen3vl-vllm-1", "qwen3vl-webui-1"]
    assert config["health"] == {"backend": "nvidia_smi", "xid_fatal": [79]}
    assert config["drill_file"] == "/run/qwen3vl-gate/drill-xid.log"
    # what the role writes is what the watch accepts
    loaded = gpu_watch.load_config(config)
    assert (loaded["fall"], loaded["rise"], loaded["stop_timeout"]) == (2, 3, 25)


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("gate_dir", "run/gate", "webui_gate_dir: "),
        ("gate_mounts", ["/ok", "relative"], "webui_gate_mounts[1]: "),
        ("gate_mounts", "/mnt", "webui_gate_mounts: "),
        ("gate_interval", 0, "webui_gate_interval: "),
        ("gpu_watch_interval", 0, "webui_gpu_watch_interval: "),
        ("gpu_watch_fall", 101, "webui_gpu_watch_fall: "),
        ("gpu_watch_rise", "3x", "webui_gpu_watch_rise: "),
    ],
)
def test_gate_settings_are_checked(setting, value, message):
    errors = core.settings_errors({setting: value})
    assert len(errors) == 1 and errors[0].startswith(message)


# --- the record the webui role leaves on a GPU host (read by nginx_lb's and prometheus's filters) ---------

RECORD = {"instances": [{"id": 0, "vllm_port": 8000}], "ui_health_path": "/healthz"}
OLDER = {"instances": [{"id": 0, "vllm_port": 9000}]}


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        ({"webui_deployed": RECORD, "ansible_local": {"qwen3vl_webui": OLDER}}, RECORD),  # this run wins
        ({"ansible_local": {"qwen3vl_webui": OLDER}}, OLDER),  # the fact file read by `setup`
        ({"ansible_facts": {"ansible_local": {"qwen3vl_webui": OLDER}}}, OLDER),  # as setup stores it
        ({"ansible_facts": {"local": {"qwen3vl_webui": OLDER}}}, None),  # not a key setup writes
        ({"ansible_local": {"other": {}}}, None),
        ({"webui_deployed": {}, "ansible_local": {}}, None),
        ({}, None),
    ],
    ids=["this-run", "local-fact", "facts-namespace", "not-a-setup-key", "other-fact-only", "empty", "nothing"],
)
def test_recorded_reads_this_run_first_then_the_hosts_fact_file(host_vars, expected):
    assert core.recorded(host_vars) == expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [(RECORD, RECORD["instances"]), ({"instances": []}, []), ({"instances": "0"}, None), ("x", None), (None, None)],
)
def test_recorded_instances_only_from_a_record_with_an_instance_list(record, expected):
    assert core.recorded_instances(record) == expected
