"""gpu_health on a real host without a GPU: the no-driver paths for real, and the nvidia-smi and NVML
paths against the recorded-output stand-ins copied there by prepare.yml."""

import pytest

STANDIN = "/opt/qwen3vl-test"
NVML_REPLAY = {"PYTHONPATH": STANDIN + "/gpu/nvml_replay"}
TEXTFILE_DIR = "/var/lib/node_exporter/textfile_collector"


def nvml(fixture):
    return dict(NVML_REPLAY, PYNVML_REPLAY_FIXTURE="%s/gpu/nvml/%s.json" % (STANDIN, fixture))


def test_host_without_driver_fails_clearly(gpu_health):
    res = gpu_health({})
    assert res["failed"] is True
    assert "no NVIDIA driver found on this host (tried" in res["msg"]


def test_host_without_driver_reports_no_gpu_when_allowed(gpu_health):
    res = gpu_health({"allow_no_gpu": True})
    assert res.get("failed") is not True
    assert (res["status"], res["gpu_count"], res["healthy"]) == ("no_gpu", 0, False)


def test_nvidia_smi_standin_healthy_gives_facts_for_containers(gpu_health):
    res = gpu_health(
        {
            "backend": "nvidia_smi",
            "nvidia_smi_path": STANDIN + "/bin/nvidia-smi-standin-h100_2x_healthy",
            "xid_source": "none",
        }
    )
    assert res.get("failed") is not True, res.get("msg")
    assert (res["status"], res["healthy"], res["gpu_count"]) == ("healthy", True, 2)
    facts = res["ansible_facts"]["qwen3vl_gpu_health"]
    assert facts["count"] == 2 and len(facts["uuids"]) == 2
    assert all(uuid.startswith("GPU-") for uuid in facts["uuids"])


def test_nvidia_smi_standin_pending_remap_needs_reset(gpu_health):
    args = {
        "backend": "nvidia_smi",
        "nvidia_smi_path": STANDIN + "/bin/nvidia-smi-standin-a100_legacy_driver",
        "xid_source": "none",
    }
    res = gpu_health(args)
    assert res["failed"] is True and res["status"] == "unhealthy"
    assert res["reset_required"] is True


def test_nvml_standin_faults_are_reported_per_gpu(gpu_health):
    res = gpu_health({"backend": "nvml", "fail_on_unhealthy": False, "xid_source": "none"}, env=nvml("h100_8x_faults"))
    assert res.get("failed") is not True
    assert res["status"] == "unhealthy" and res["healthy"] is False
    verdicts = [gpu["status"] for gpu in res["gpus"]]
    assert "unhealthy" in verdicts and "warning" in verdicts and "healthy" in verdicts
    text = " ".join(res["reasons"])
    assert "volatile" in text.lower() and "remap" in text.lower()


@pytest.mark.parametrize("check", [True, False])
def test_textfile_for_node_exporter(host, gpu_health, check):
    host.run_expect([0], "mkdir -p %s && rm -f %s/gpu.prom" % (TEXTFILE_DIR, TEXTFILE_DIR))
    args = {
        "backend": "nvml",
        "fail_on_unhealthy": False,
        "xid_source": "none",
        "textfile_path": TEXTFILE_DIR + "/gpu.prom",
    }
    res = gpu_health(args, env=nvml("h100_2x_healthy"), check=check)
    assert res["changed"] is True
    prom = host.file(TEXTFILE_DIR + "/gpu.prom")
    assert prom.exists is not check
    if not check:
        assert prom.mode == 0o644
        assert "qwen3vl_gpu_" in prom.content_string
