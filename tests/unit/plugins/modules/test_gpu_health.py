"""Runs the real gpu_health module through ansible (local connection).

There is no GPU here. The NVML path runs against ``tests/fixtures/gpu/nvml_replay/pynvml``, a
stand-in that replays recorded NVML answers (put first on PYTHONPATH); the nvidia-smi path against
``tests/fixtures/gpu/nvidia_smi_replay.py`` behind an ``nvidia-smi`` script in a temp directory.
The real nvidia-ml-py in .venv is used where the test is about a host without a driver.
"""

import os
import stat
import sys
from pathlib import Path

import pytest
from module_runner import run_module as run_any

REPO = Path(__file__).resolve().parents[4]
FIXTURES = REPO / "tests" / "fixtures" / "gpu"
H100_0 = "GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13"
H100_1 = "GPU-a17e0c94-52b3-4f08-b6d1-9e4c3a2f5d60"


def run_module(args, nvml=None, check=False, path=None):
    """Run qwen3vl.ha.gpu_health. ``nvml``: replay nvml/<name>.json instead of the real pynvml.

    ``path``: a directory put first on PATH (where a stand-in nvidia-smi is).
    """
    env = {"PYTHONPATH": "", "PYNVML_REPLAY_FIXTURE": ""}  # the real nvidia-ml-py unless asked
    if nvml is not None:
        env["PYTHONPATH"] = str(FIXTURES / "nvml_replay")
        env["PYNVML_REPLAY_FIXTURE"] = str(FIXTURES / "nvml" / (nvml + ".json"))
    if path is not None:
        env["PATH"] = path + os.pathsep + os.environ["PATH"]
    return run_any("qwen3vl.ha.gpu_health", args, check=check, env=env)


@pytest.fixture
def smi(tmp_path):
    """smi('h100_2x_healthy') -> path of an nvidia-smi that replays that recording."""

    def make(scenario, name="nvidia-smi"):
        directory = tmp_path / ("bin-" + scenario)
        directory.mkdir(exist_ok=True)
        script = directory / name
        script.write_text(
            '#!/bin/sh\nexec "%s" "%s" "%s" "$@"\n'
            % (sys.executable, FIXTURES / "nvidia_smi_replay.py", FIXTURES / "smi" / scenario)
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        return str(script)

    return make


NO_SMI = {"nvidia_smi_path": "/nonexistent/nvidia-smi"}
NO_XID = {"xid_source": "none"}


def log(name):
    return {"xid_source": "file", "kernel_log_path": str(FIXTURES / "kernel" / name)}


# --- NVML backend (replayed) ---------------------------------------------------------------------


def test_healthy_gpus_through_nvml():
    res = run_module(dict(NO_XID), nvml="h100_2x_healthy")
    assert res.get("failed") is not True, res.get("msg")
    assert (res["status"], res["healthy"], res["reasons"], res["changed"]) == ("healthy", True, [], False)
    assert (res["backend"], res["driver_version"], res["cuda_version"], res["gpu_count"]) == (
        "nvml",
        "550.54.15",
        "12.4",
        2,
    )
    assert res["gpus"][0]["memory_free_mib"] == 80995 and res["gpus"][0]["status"] == "healthy"
    assert res["gpus"][1]["processes"] == [{"pid": 51234, "name": "/usr/bin/python3", "used_memory_mib": 71234}]
    facts = res["ansible_facts"]["qwen3vl_gpu_health"]
    assert facts["count"] == 2 and facts["indices"] == [0, 1] and facts["uuids"] == [H100_0, H100_1]
    assert facts["usable_uuids"] == [H100_0, H100_1] and facts["driver_version"] == "550.54.15"


@pytest.mark.parametrize(
    "index, status, reason",
    [
        (1, "unhealthy", "2 volatile uncorrectable (double-bit) ECC errors since the driver loaded"),
        (2, "unhealthy", "row remapping failed: the GPU has no spare memory rows left; replace it"),
        (3, "unhealthy", "a memory row remap is pending: drain the node and reset the GPU"),
        (4, "warning", "clocks reduced: HW thermal slowdown active"),
        (5, "warning", "PCIe link runs at x8 of x16: reseat the GPU or check the riser and slot"),
        (6, "healthy", None),
    ],
)
def test_each_fault_through_the_module(index, status, reason):
    res = run_module(dict(NO_XID, gpus=[str(index)], fail_on_unhealthy=False), nvml="h100_8x_faults")
    assert res.get("failed") is not True, res.get("msg")
    (one,) = res["gpus"]
    assert (one["index"], one["status"], res["status"]) == (index, status, status)
    assert res["healthy"] is (status != "unhealthy")
    if reason:
        assert reason in one["reasons"]
        assert res["reasons"][one["reasons"].index(reason)].endswith(reason)
    else:
        assert one["reasons"] == [] and one["pcie_link_gen_current"] == 1 and one["pcie_link_gen_max"] == 5
    assert res["reset_required"] is (index == 3)


def test_unhealthy_fails_by_default_and_still_reports():
    res = run_module(dict(NO_XID), nvml="h100_8x_faults")
    assert res["failed"] is True
    assert res["msg"].startswith(
        "GPU health check: unhealthy: GPU 1 (GPU-1c8e3f52-9d4a-4b06-a723-6e0b1d8a4f32): 2 volatile"
    )
    assert res["status"] == "unhealthy" and res["gpu_count"] == 8
    facts = res["ansible_facts"]["qwen3vl_gpu_health"]
    assert facts["usable_indices"] == [0, 4, 5, 6]


def test_fail_on_unhealthy_false_only_reports():
    res = run_module(dict(NO_XID, fail_on_unhealthy=False), nvml="h100_8x_faults")
    assert res.get("failed") is not True
    assert (res["status"], res["healthy"], res["reset_required"]) == ("unhealthy", False, True)


def test_retired_pages_and_pending_retirement():
    res = run_module(dict(NO_XID, fail_on_unhealthy=False), nvml="v100_page_retirement")
    worn, pending = res["gpus"]
    assert worn["reasons"] == ["63 retired memory pages (limit 63): replace the GPU"]
    assert pending["reset_required"] is True and pending["status"] == "unhealthy"
    raised = run_module(dict(NO_XID, gpus=["0"], max_retired_pages=64), nvml="v100_page_retirement")
    assert raised["status"] == "healthy"


def test_unsupported_readings_are_null_and_healthy():
    res = run_module(dict(NO_XID), nvml="l4_unsupported")
    assert res.get("failed") is not True, res.get("msg")
    (l4,) = res["gpus"]
    assert l4["status"] == "healthy"
    assert (l4["temperature_margin_c"], l4["retired_pages_pending"], l4["remapped_rows_pending"]) == (None, None, None)


def test_fatal_xid_79_from_the_kernel_log_is_unhealthy():
    res = run_module(dict(log("xid_79_gpu0.log"), fail_on_unhealthy=False), nvml="h100_2x_healthy")
    assert res["xid_source"] == "file"
    assert [(e["xid"], e["gpu_index"], e["severity"]) for e in res["xid_events"]] == [(79, 0, "fatal")]
    assert (res["gpus"][0]["status"], res["gpus"][1]["status"], res["status"]) == ("unhealthy", "healthy", "unhealthy")


def test_ignored_xid_13_stays_healthy():
    res = run_module(log("xid_13_gpu0.log"), nvml="h100_2x_healthy")
    assert res.get("failed") is not True, res.get("msg")
    assert res["status"] == "healthy"
    assert [(e["xid"], e["severity"], e["pid"]) for e in res["xid_events"]] == [(13, "ignored", 39012)]


def test_xid_on_a_lost_gpu_counts_for_the_host_but_not_for_a_selection():
    res = run_module(dict(log("xid_h100_8x.log"), fail_on_unhealthy=False), nvml="h100_8x_faults")
    assert any("XID 79 (GPU has fallen off the bus)" in reason and "0000:db:00" in reason for reason in res["reasons"])
    selected = run_module(dict(log("xid_h100_8x.log"), gpus=["0"]), nvml="h100_8x_faults")
    assert selected["status"] == "healthy" and len(selected["xid_events"]) == 4


def test_select_by_index_and_uuid():
    res = run_module(dict(NO_XID, gpus=[H100_1.lower(), 0]), nvml="h100_2x_healthy")
    assert [one["uuid"] for one in res["gpus"]] == [H100_0, H100_1]
    res = run_module(dict(NO_XID, gpus=[H100_1]), nvml="h100_2x_healthy")
    assert res["gpu_count"] == 1 and res["ansible_facts"]["qwen3vl_gpu_health"]["indices"] == [1]


def test_unknown_gpu_fails_naming_it():
    res = run_module(dict(NO_XID, gpus=["0", "4", "GPU-00000000-dead-beef-0000-000000000000"]), nvml="h100_2x_healthy")
    assert res["failed"] is True
    assert res["msg"] == (
        "invalid options: gpus[1]: no GPU with index 4 (the driver reports 0, 1); "
        "gpus[2]: no GPU with UUID GPU-00000000-dead-beef-0000-000000000000 on this host"
    )


def test_expected_count_mismatch():
    res = run_module(dict(NO_XID, expected_count=8), nvml="h100_2x_healthy")
    assert res["failed"] is True
    assert res["reasons"] == ["the driver reports 2 GPUs, expected_count is 8"]
    assert run_module(dict(NO_XID, expected_count=2), nvml="h100_2x_healthy")["status"] == "healthy"


def test_min_driver_version():
    res = run_module(dict(NO_XID, min_driver_version="555.42.02", fail_on_unhealthy=False), nvml="h100_2x_healthy")
    assert res["reasons"] == ["driver 550.54.15 is older than min_driver_version 555.42.02"]
    assert run_module(dict(NO_XID, min_driver_version="535.104.05"), nvml="h100_2x_healthy")["status"] == "healthy"


def test_min_free_memory():
    res = run_module(dict(NO_XID, min_free_memory_mib=20000, fail_on_unhealthy=False), nvml="h100_2x_healthy")
    assert res["ansible_facts"]["qwen3vl_gpu_health"]["usable_uuids"] == [H100_0]
    assert res["gpus"][1]["reasons"] == ["9669 MiB free, below min_free_memory_mib 20000"]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"max_temperature": -5}, "max_temperature must be 0 or more, got -5"),
        ({"min_free_memory_mib": -1}, "min_free_memory_mib must be 0 or more, got -1"),
        ({"expected_count": -2}, "expected_count must be 0 or more, got -2"),
        ({"max_retired_pages": 0}, "max_retired_pages must be 1 or more, got 0"),
        ({"min_driver_version": "550.x"}, "min_driver_version: '550.x' is not a version like 550.54.15"),
        ({"xid_fatal": [79], "xid_ignore": [79]}, "xid_ignore and xid_fatal both list 79"),
        ({"gpus": ["first"]}, "gpus[0]: 'first' is neither a GPU index nor a UUID"),
        ({"xid_source": "file"}, "xid_source=file needs kernel_log_path"),
        ({"kernel_log_path": "/var/log/kern.log"}, "kernel_log_path is only read with xid_source=file"),
    ],
)
def test_bad_input_fails_naming_the_option(args, message):
    res = run_module(args, nvml="h100_2x_healthy")
    assert res["failed"] is True
    assert res["msg"].startswith("invalid options: ") and message in res["msg"]


# --- no driver ------------------------------------------------------------------------------------


def test_no_driver_fails_saying_what_was_tried():
    res = run_module(dict(NO_SMI), nvml="no_driver")
    assert res["failed"] is True
    assert res["msg"] == (
        "no NVIDIA driver found on this host (tried NVML: nvmlInit failed: Driver Not Loaded; "
        "nvidia-smi: /nonexistent/nvidia-smi not found)"
    )


def test_no_driver_allowed_returns_no_gpu():
    res = run_module(dict(NO_SMI, allow_no_gpu=True), nvml="no_driver")
    assert res.get("failed") is not True, res.get("msg")
    assert (res["status"], res["gpu_count"], res["healthy"], res["backend"]) == ("no_gpu", 0, False, "none")
    assert res["ansible_facts"]["qwen3vl_gpu_health"]["count"] == 0


def test_real_nvidia_ml_py_without_a_driver():
    pytest.importorskip("pynvml")  # nvidia-ml-py, pinned in requirements.txt
    res = run_module({"backend": "nvml"})
    assert res["failed"] is True
    assert res["msg"].startswith("no NVIDIA driver found on this host (tried NVML: nvmlInit failed: ")
    res = run_module(dict(NO_SMI, allow_no_gpu=True))
    assert (res.get("failed"), res["status"], res["gpu_count"]) == (None, "no_gpu", 0)
    assert "NVML: nvmlInit failed" in res["reasons"][0]


# --- nvidia-smi backend (replayed) -----------------------------------------------------------------


def test_auto_falls_back_to_nvidia_smi_on_path(smi):
    # The real nvidia-ml-py finds no driver library here, so auto goes on to nvidia-smi.
    res = run_module(dict(NO_XID), path=os.path.dirname(smi("h100_2x_healthy")))
    assert res.get("failed") is not True, res.get("msg")
    assert (res["backend"], res["status"], res["driver_version"], res["cuda_version"]) == (
        "nvidia_smi",
        "healthy",
        "550.54.15",
        "12.4",
    )
    assert res["gpus"][1]["processes"] == [{"pid": 51234, "name": "/usr/bin/python3", "used_memory_mib": 71234}]


def test_nvidia_smi_legacy_driver_with_a_pending_remap(smi):
    res = run_module(
        dict(NO_XID, backend="nvidia_smi", nvidia_smi_path=smi("a100_legacy_driver"), fail_on_unhealthy=False)
    )
    assert res["backend"] == "nvidia_smi" and res["reset_required"] is True
    assert res["gpus"][1]["reasons"] == ["a memory row remap is pending: drain the node and reset the GPU"]
    assert res["gpus"][0]["status"] == "healthy"


def test_nvidia_smi_not_supported_values(smi):
    res = run_module(dict(NO_XID, backend="nvidia_smi", nvidia_smi_path=smi("l4_not_supported")))
    assert res["status"] == "healthy" and res["gpus"][0]["mig_mode"] is None


def test_nvidia_smi_without_driver(smi):
    path = smi("no_driver")
    res = run_module(dict(backend="nvidia_smi", nvidia_smi_path=path))
    assert res["failed"] is True and "nvidia-smi cannot reach the NVIDIA driver: NVIDIA-SMI has failed" in res["msg"]
    res = run_module(dict(backend="nvidia_smi", nvidia_smi_path=path, allow_no_gpu=True))
    assert res["status"] == "no_gpu"


# --- Prometheus textfile ---------------------------------------------------------------------------


def test_textfile_written_then_unchanged(tmp_path):
    target = tmp_path / "qwen3vl_gpu.prom"
    args = dict(NO_XID, textfile_path=str(target), textfile_timestamp=False)
    res = run_module(args, nvml="h100_2x_healthy")
    assert res["changed"] is True and res["textfile"] == str(target)
    text = target.read_text()
    assert "qwen3vl_gpu_health_check_success 1" in text
    assert 'qwen3vl_gpu_health{gpu="0",uuid="%s",name="NVIDIA H100 80GB HBM3"} 0' % H100_0 in text
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert sorted(os.listdir(tmp_path)) == ["qwen3vl_gpu.prom"], "temporary file left behind"
    again = run_module(args, nvml="h100_2x_healthy")
    assert again["changed"] is False
    with_time = run_module(dict(args, textfile_timestamp=True), nvml="h100_2x_healthy")
    assert with_time["changed"] is True and "qwen3vl_gpu_health_check_timestamp_seconds" in target.read_text()


def test_textfile_not_written_in_check_mode(tmp_path):
    target = tmp_path / "qwen3vl_gpu.prom"
    res = run_module(dict(NO_XID, textfile_path=str(target)), nvml="h100_2x_healthy", check=True)
    assert res["changed"] is True and res["status"] == "healthy"
    assert not target.exists()


def test_textfile_written_when_unhealthy_and_when_no_driver(tmp_path):
    target = tmp_path / "qwen3vl_gpu.prom"
    res = run_module(dict(NO_XID, textfile_path=str(target)), nvml="h100_8x_faults")
    assert res["failed"] is True and "qwen3vl_gpu_health_overall 2" in target.read_text()
    res = run_module(dict(NO_SMI, textfile_path=str(target)), nvml="no_driver")
    assert res["failed"] is True and "qwen3vl_gpu_health_check_success 0" in target.read_text()


@pytest.mark.parametrize(
    "name, message",
    [
        ("gpu.txt", "textfile_path must end in .prom"),
        ("missing/gpu.prom", "textfile_path: the directory"),
    ],
)
def test_bad_textfile_path_fails_and_writes_nothing(tmp_path, name, message):
    res = run_module(dict(NO_XID, textfile_path=str(tmp_path / name)), nvml="h100_2x_healthy")
    assert res["failed"] is True and message in res["msg"]
    assert os.listdir(tmp_path) == []
