"""webui_plan core, settings phase: the checks that used to be Jinja in roles/webui/tasks/preflight.yml, the
pass-through module options (webui_gpu_health_args, webui_model_checksum_args), the plan before the GPU check
has run, warnings, and gating through plan()."""

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import webui_plan as core

UUID0 = "GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13"
UUID1 = "GPU-a17e0c94-52b3-4f08-b6d1-9e4c3a2f5d60"
FACTS = {"count": 2, "indices": [0, 1], "uuids": [UUID0, UUID1], "usable_indices": [0, 1]}
# What roles/webui/vars/main.yml hands over with the role's defaults (and an image and a key set).
SETTINGS = {
    "gpus": "auto",
    "instances": [],
    "gpu_check": True,
    "device_requests": True,
    "vllm_port_base": 8000,
    "ui_port_base": 7860,
    "model_dir": "/srv/models/Qwen3-VL-4B-Instruct",
    "model_mount_root": "/models",
    "vllm_extra_args": [],
    "vllm_allowed_media_domains": [],
    "ui_extra_args": [],
    "vllm_env": {"HF_HUB_OFFLINE": "1"},
    "vllm_name_prefix": "qwen3vl-vllm-",
    "ui_name_prefix": "qwen3vl-webui-",
    "model_verify": True,
    "vllm_api_key_set": True,
    "vllm_allow_no_api_key": False,
    "ui_image": "registry.example.internal/qwen3vl/webui:1.4.2",
    "image_source": "pull",
    "image_archives": [],
    "vllm_ipc_mode": "host",
    "vllm_shm_size": "",
    "vllm_gpu_memory_utilization": 0.9,
    "vllm_shutdown_timeout": 60,
    "ui_health_path": "/",
    "gpu_health_args": {},
    "model_checksum_args": {},
}


def errors(**changes):
    return core.plan(dict(SETTINGS, **changes), FACTS)["errors"]


def test_defaults_pass():
    result = core.plan(dict(SETTINGS), FACTS)
    assert result["errors"] == [] and result["warnings"] == []
    assert len(result["instances"]) == 2


# --- the checks moved from the preflight's Jinja: each fires, and a neighbouring good value does not ----------

MOVED = [
    (
        {"vllm_api_key_set": False},
        {"vllm_api_key_set": False, "vllm_allow_no_api_key": True},
        "webui_vllm_api_key: empty; set it (from Ansible Vault) or set webui_vllm_allow_no_api_key: true",
    ),
    (
        {"ui_image": ""},
        {"ui_image": "webui:1"},
        "webui_ui_image: no WebUI image set (there is no public default); "
        "e.g. registry.example.internal/qwen3vl/webui:1.4.2",
    ),
    (
        {"image_source": "archive", "image_archives": []},
        {"image_source": "archive", "image_archives": ["/srv/images.tar"]},
        "webui_image_archives: empty, but webui_image_source is archive",
    ),
    (
        {"vllm_ipc_mode": "", "vllm_shm_size": ""},
        {"vllm_ipc_mode": "", "vllm_shm_size": "16g"},
        'webui_vllm_shm_size: set it (e.g. "16g") when webui_vllm_ipc_mode is not "host"',
    ),
    (
        {"vllm_gpu_memory_utilization": 0},
        {"vllm_gpu_memory_utilization": 1.0},
        "webui_vllm_gpu_memory_utilization: 0 must be a number in (0, 1]",
    ),
    (
        {"vllm_gpu_memory_utilization": 1.5},
        {"vllm_gpu_memory_utilization": 0.01},
        "webui_vllm_gpu_memory_utilization: 1.5 must be a number in (0, 1]",
    ),
    (
        {"vllm_shutdown_timeout": -1},
        {"vllm_shutdown_timeout": 0},
        "webui_vllm_shutdown_timeout: -1 must be an integer >= 0",
    ),
    (
        {"ui_health_path": "healthz"},
        {"ui_health_path": "/healthz"},
        "webui_ui_health_path: 'healthz' is not a URL path starting with /",
    ),
    (
        {"model_manifest": "models/Qwen3-VL.sha256", "model_manifest_src": ""},
        {"model_manifest": "/srv/models/Qwen3-VL.sha256", "model_manifest_src": ""},
        "webui_model_manifest: 'models/Qwen3-VL.sha256' is not an absolute path",
    ),
    (
        {"model_manifest": "/srv/models/Qwen3-VL.sha256", "model_manifest_src": "files/Qwen3-VL.sha256"},
        {"model_manifest": "", "model_manifest_src": "files/Qwen3-VL.sha256"},
        "webui_model_manifest_src: set together with webui_model_manifest; give one (the controller's file "
        "is copied to the host and used for every instance)",
    ),
]


@pytest.mark.parametrize(
    ("bad", "good", "message"), MOVED, ids=[m[2].split(":")[0] + str(i) for i, m in enumerate(MOVED)]
)
def test_moved_check_fires_and_stays_quiet(bad, good, message):
    assert errors(**bad) == [message]
    assert errors(**good) == []


def test_the_settings_are_checked_without_host_context_and_all_at_once():
    bad = {key: value for case in MOVED for key, value in case[0].items()}
    got = core.plan(dict(SETTINGS, **bad))["errors"]
    assert [e.split(":")[0] for e in got] == [
        "webui_vllm_api_key",
        "webui_ui_image",
        "webui_image_archives",
        "webui_vllm_shm_size",
        "webui_vllm_gpu_memory_utilization",
        "webui_vllm_shutdown_timeout",
        "webui_ui_health_path",
        "webui_model_manifest_src",  # the last manifest case wins the merge: both set, the path absolute
    ]


# --- webui_gpu_health_args and webui_model_checksum_args, against the modules' argument specs ---------------

GPU_ARGS_GOOD = {
    "backend": "nvidia_smi",
    "nvidia_smi_path": "/opt/bin/nvidia-smi",
    "max_temperature": 85,
    "min_free_memory_mib": "20000",
    "expected_count": 8,
    "min_driver_version": "550.54.15",
    "max_retired_pages": 60,
    "xid_ignore": [13, 31],
    "xid_fatal": [48, 79],
    "xid_source": "file",
    "kernel_log_path": "/var/log/kern.log",
}


@pytest.mark.parametrize(
    ("domains", "message"),
    [
        (["https://images.example.internal"], "webui_vllm_allowed_media_domains[0]: 'https://images.example.internal'"),
        (["images.example.internal:8443"], "webui_vllm_allowed_media_domains[0]: 'images.example.internal:8443'"),
        (["*.example.internal"], "webui_vllm_allowed_media_domains[0]: '*.example.internal'"),
        ("images.example.internal", "webui_vllm_allowed_media_domains: "),
    ],
)
def test_media_domains_are_host_names_as_vllm_matches_them(domains, message):
    assert [e for e in errors(vllm_allowed_media_domains=domains) if e.startswith(message)], errors(
        vllm_allowed_media_domains=domains
    )
    assert errors(vllm_allowed_media_domains=["images.example.internal", "cdn-2.example.com"]) == []


def test_the_media_domain_flag_is_the_roles_own():
    message = errors(vllm_extra_args=["--allowed-media-domains", "x.example"])
    assert any("--allowed-media-domains" in e for e in message), message


def test_gpu_health_args_that_the_module_takes_pass():
    assert errors(gpu_health_args=GPU_ARGS_GOOD) == []
    assert errors(gpu_health_args={"xid_source": "none", "min_driver_version": 550}) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"max_temp": 85},
            "webui_gpu_health_args: unknown key(s) max_temp; allowed: backend, nvidia_smi_path, max_temperature,",
        ),
        ({"fail_on_unhealthy": True}, "webui_gpu_health_args: unknown key(s) fail_on_unhealthy"),
        ({"backend": "dcgm"}, "webui_gpu_health_args.backend: must be one of auto, nvml, nvidia_smi, got 'dcgm'"),
        ({"nvidia_smi_path": ""}, "webui_gpu_health_args.nvidia_smi_path: empty"),
        ({"nvidia_smi_path": 5}, "webui_gpu_health_args.nvidia_smi_path: 5 is not a string"),
        ({"max_temperature": "hot"}, "webui_gpu_health_args.max_temperature: 'hot' must be an integer >= 0"),
        ({"min_free_memory_mib": -1}, "webui_gpu_health_args.min_free_memory_mib: -1 must be an integer >= 0"),
        ({"expected_count": 1.5}, "webui_gpu_health_args.expected_count: 1.5 must be an integer >= 0"),
        ({"min_driver_version": "r550"}, "webui_gpu_health_args.min_driver_version: 'r550' is not a driver version"),
        ({"max_retired_pages": 0}, "webui_gpu_health_args.max_retired_pages: 0 must be an integer >= 1"),
        ({"xid_ignore": 13}, "webui_gpu_health_args.xid_ignore: must be a list of XID numbers (integers >= 0), got 13"),
        ({"xid_fatal": [48, "x"]}, "webui_gpu_health_args.xid_fatal: must be a list of XID numbers"),
        ({"xid_source": "syslog"}, "webui_gpu_health_args.xid_source: must be one of auto, dmesg, journal, file, none"),
        ({"xid_source": "file"}, "webui_gpu_health_args.xid_source: file needs webui_gpu_health_args.kernel_log_path"),
        (
            {"kernel_log_path": "/var/log/kern.log"},
            "webui_gpu_health_args.kernel_log_path: only read with xid_source: file (xid_source is auto)",
        ),
        (
            {"xid_source": "file", "kernel_log_path": "kern.log"},
            "webui_gpu_health_args.kernel_log_path: 'kern.log' is not an absolute path",
        ),
        (["backend"], "webui_gpu_health_args: must be a mapping, got ['backend']"),
    ],
)
def test_gpu_health_args_are_checked(args, message):
    got = errors(gpu_health_args=args)
    assert len(got) == 1, got
    assert got[0].startswith(message)


def test_model_checksum_args_that_the_module_takes_pass():
    args = {"extra_files": "fail", "exclude": ["*.md"], "workers": 8, "cache": False, "cache_dir": "/var/cache/x"}
    assert errors(model_checksum_args=dict(args, cache_max_age=3600)) == []
    assert errors(model_checksum_args={"cache": "yes", "workers": "4"}) == []  # what the module's types convert


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"manifest": "/srv/SUMS"},
            "webui_model_checksum_args: unknown key(s) manifest; allowed: extra_files, exclude, workers, cache, "
            "cache_dir, cache_max_age",
        ),
        (
            {"extra_files": "error"},
            "webui_model_checksum_args.extra_files: must be one of ignore, warn, fail, got 'error'",
        ),
        (
            {"exclude": "*.md"},
            "webui_model_checksum_args.exclude: must be a list of strings "
            "(glob patterns relative to the model directory)",
        ),
        ({"workers": -1}, "webui_model_checksum_args.workers: -1 must be an integer >= 0"),
        ({"cache": "maybe"}, "webui_model_checksum_args.cache: 'maybe' is not a boolean (true or false)"),
        ({"cache_dir": "cache"}, "webui_model_checksum_args.cache_dir: 'cache' is not an absolute path"),
        ({"cache_max_age": "1h"}, "webui_model_checksum_args.cache_max_age: '1h' must be an integer >= 0"),
        ("workers=8", "webui_model_checksum_args: must be a mapping, got 'workers=8'"),
    ],
)
def test_model_checksum_args_are_checked(args, message):
    assert errors(model_checksum_args=args) == [message]


# --- before the GPU check: no host context -----------------------------------------------------------------


def test_before_the_gpu_check_auto_resolves_to_nothing_yet_without_an_error():
    result = core.plan(dict(SETTINGS))
    assert result == {"instances": [], "errors": [], "warnings": []}


def test_before_the_gpu_check_explicit_gpus_are_planned_but_not_looked_up():
    result = core.plan(dict(SETTINGS, gpus=[0, 5, UUID1]))
    assert result["errors"] == []
    assert [(i["gpu"], i["gpu_index"], i["vllm_port"]) for i in result["instances"]] == [
        ("0", 0, 8000),
        ("5", 5, 8001),
        (UUID1, None, 8002),
    ]
    # with the facts, GPU 5 is refused
    assert errors(gpus=[0, 5]) == ["webui_gpus[1]: GPU index 5 does not exist on this host (GPUs: 0, 1)"]


def test_before_the_gpu_check_form_ports_and_duplicates_are_checked():
    got = core.plan(dict(SETTINGS, gpus=["gpu0", 1, 1], ui_port_base=70000))["errors"]
    assert got == [
        "webui_ui_port_base: 70000 is not a TCP port (1-65535)",
        "webui_gpus[0]: 'gpu0' is not a GPU index (0, 1, ...) or a GPU UUID (GPU-... / MIG-..., see nvidia-smi -L)",
        "webui_gpus[2]: GPU 1 is already used by webui_gpus[1] (one instance per GPU)",
    ]


# --- warnings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "quiet", "warning"),
    [
        (
            {"vllm_api_key_set": False, "vllm_allow_no_api_key": True},
            {"vllm_api_key_set": True},
            "webui_vllm_api_key: empty and webui_vllm_allow_no_api_key is true: "
            "anyone who reaches a vLLM port may use the model",
        ),
        (
            {"gpu_check": False, "gpus": [0], "gpu_health_args": {"max_temperature": 85}},
            {"gpu_health_args": {}},
            "webui_gpu_health_args: not used, because webui_gpu_check is false",
        ),
        (
            {"model_verify": False, "model_checksum_args": {"workers": 2}},
            {"model_verify": True},
            "webui_model_checksum_args: not used, because webui_model_verify is false",
        ),
    ],
)
def test_warnings_fire_and_stay_quiet(changes, quiet, warning):
    result = core.plan(dict(SETTINGS, **changes), FACTS)
    assert result["errors"] == []
    assert result["warnings"] == [warning]
    assert core.plan(dict(SETTINGS, **dict(changes, **quiet)), FACTS)["warnings"] == []


# --- gating through plan() -----------------------------------------------------------------------------------


def test_plan_gates_when_given_check_results():
    checksums = [{"item": SETTINGS["model_dir"], "ok": True, "msg": "verified"}]
    gpu_result = {"gpus": [{"index": 0, "status": "healthy"}, {"index": 1, "status": "unhealthy", "reasons": ["ECC"]}]}
    result = core.plan(dict(SETTINGS), FACTS, checksums, gpu_result)
    assert [i["blocked"] for i in result["instances"]] == ["", "GPU 1 is unhealthy: ECC"]
    assert all("blocked" not in i for i in core.plan(dict(SETTINGS), FACTS)["instances"])
    assert [i["blocked"] for i in core.plan(dict(SETTINGS), FACTS, [])["instances"]] == ["", ""]
