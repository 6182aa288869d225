"""The GPU watch's core (plugins/module_utils/gpu_watch.py): configuration, judging, fencing and releasing.

The GPUs are read for real through gpu_health's readers from an ``nvidia-smi`` that replays recorded output
(tests/fixtures/gpu, a stand-in: there is no GPU here); XIDs come from recorded kernel log lines written to
the drill file, as the drill writes them. Only the docker and systemctl commands are replaced (recorded)."""

import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import gpu_watch, instance_gate

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "gpu"
H100_0 = "GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13"
H100_1 = "GPU-a17e0c94-52b3-4f08-b6d1-9e4c3a2f5d60"
XID_79_GPU0 = (FIXTURES / "kernel" / "xid_79_gpu0.log").read_text()


def smi(tmp_path, scenario):
    script = tmp_path / ("nvidia-smi-" + scenario)
    script.write_text(
        '#!/bin/sh\nexec "%s" "%s" "%s" "$@"\n'
        % (sys.executable, FIXTURES / "nvidia_smi_replay.py", FIXTURES / "smi" / scenario)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def raw_config(tmp_path, scenario="h100_2x_healthy", **overrides):
    raw = {
        "gate_dir": str(tmp_path / "gate"),
        "state_file": str(tmp_path / "gate" / "gpu-watch.json"),
        "drill_file": str(tmp_path / "gate" / "drill-xid.log"),
        "textfile": str(tmp_path / "textfile"),
        "interval": 1,
        "fall": 2,
        "rise": 3,
        "stop_timeout": 7,
        "health": {"backend": "nvidia_smi", "nvidia_smi_path": smi(tmp_path, scenario), "xid_source": "none"},
        "instances": [
            {"id": "0", "gpu_index": 0, "gpu_uuid": H100_0, "containers": ["qwen3vl-vllm-0", "qwen3vl-webui-0"]},
            {"id": "1", "gpu_index": 1, "gpu_uuid": "", "containers": ["qwen3vl-vllm-1", "qwen3vl-webui-1"]},
        ],
    }
    raw.update(overrides)
    return raw


class Recorder:
    """Stands in for subprocess.run for docker and systemctl: records the commands, answers rc."""

    def __init__(self, rc=0, stderr=""):
        self.calls = []
        self.rc = rc
        self.stderr = stderr

    def __call__(self, argv, **_kwargs):
        self.calls.append(argv)
        return subprocess.CompletedProcess(argv, self.rc, "", self.stderr)


def make_watch(tmp_path, **overrides):
    config = gpu_watch.load_config(raw_config(tmp_path, **overrides))
    os.makedirs(config["textfile"], exist_ok=True)
    lines = []
    watch = gpu_watch.Watch(config, log=lines.append, clock=lambda: 1000.0, sleep=lambda _s: None)
    watch.run = Recorder()
    # the links the boot gate made for both instances
    for ident in ("0", "1"):
        for path in instance_gate.link_paths(config["gate_dir"], ident):
            instance_gate.make_link(path, "/srv/somewhere")
    return watch, lines


def state(watch):
    with open(watch.config["state_file"], encoding="utf-8") as handle:
        return json.load(handle)


def test_defaults_fill_in():
    config = gpu_watch.load_config({"instances": [{"id": "0", "gpu_index": 0}]})
    assert config["fall"] == 2 and config["rise"] == 3 and config["interval"] == 5.0
    assert config["health"]["backend"] == "auto" and config["health"]["xid_fatal"]
    assert config["drill_file"] == "/run/qwen3vl-gate/drill-xid.log"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"fall": 0}, "fall: 0 is not a whole number from 1 to 100"),
        ({"rise": True}, "rise: True is not a whole number"),
        ({"interval": 0}, "interval: 0 is not a number from 0.1"),
        ({"state_file": "relative.json"}, "state_file: 'relative.json' is not an absolute path"),
        ({"colour": "red"}, "unknown keys: colour"),
        ({"health": {"backend": "dcgm"}}, "health.backend: 'dcgm' is not one of auto, nvml, nvidia_smi"),
        ({"health": {"xid_source": "file"}}, "health: xid_source file needs kernel_log_path"),
        ({"health": {"xid_fatal": [79], "xid_ignore": [79]}}, "health.xid_ignore and xid_fatal both list 79"),
        ({"health": {"max_retired_pages": "ten"}}, "health.max_retired_pages: 'ten' is not a whole number"),
        ({"health": {"min_free_memory_mib": 1000}}, "health: unknown keys min_free_memory_mib"),
        ({"instances": [{"id": "0"}]}, "instances[0]: names no GPU"),
        ({"instances": [{"id": "a b", "gpu_index": 0}]}, "instances[0].id: 'a b' is not a name"),
        ({"instances": [{"id": "0", "gpu_index": 0}, {"id": "0", "gpu_index": 1}]}, "ids used twice: 0"),
        ({"instances": [{"id": "0", "gpu_index": 0, "containers": ["-x"]}]}, "containers: ['-x'] is not a list"),
    ],
)
def test_bad_configuration_is_refused_with_every_reason(change, message):
    raw = {"instances": [{"id": "0", "gpu_index": 0}]}
    raw.update(change)
    with pytest.raises(gpu_watch.ConfigError) as caught:
        gpu_watch.load_config(raw)
    assert message in str(caught.value)


def test_two_problems_are_both_named():
    with pytest.raises(gpu_watch.ConfigError) as caught:
        gpu_watch.load_config({"fall": 0, "rise": 0, "instances": []})
    assert "fall:" in str(caught.value) and "rise:" in str(caught.value)


def test_healthy_gpus_fence_nothing_and_the_state_says_so(tmp_path):
    watch, lines = make_watch(tmp_path)
    assert watch.check_round() == 0
    assert watch.run.calls == [] and lines == []
    document = state(watch)
    assert [gpu["uuid"] for gpu in document["gpus"]] == [H100_0, H100_1]
    assert {gpu["status"] for gpu in document["gpus"]} <= {"healthy", "warning"}
    assert document["instances"]["0"]["fenced"] is False
    text = (tmp_path / "textfile" / "qwen3vl_gpu_watch.prom").read_text()
    assert 'qwen3vl_gpu_watch_fenced{instance="0",gpu="%s",reason="ok"} 0' % H100_0 in text
    health = (tmp_path / "textfile" / "qwen3vl_gpu_health.prom").read_text()
    assert re.search(r"^qwen3vl_gpu_health_check_success 1(\.0)?( |$)", health, re.M)


def test_a_fatal_xid_fences_its_instance_after_fall_passes_and_only_that_one(tmp_path):
    watch, lines = make_watch(tmp_path)
    gate_dir = watch.config["gate_dir"]
    Path(watch.config["drill_file"]).write_text(XID_79_GPU0)
    assert watch.check_round() == 0  # one bad pass of fall=2
    assert watch.run.calls == []
    assert state(watch)["instances"]["0"]["bad_passes"] == 1
    assert watch.check_round() == 1
    # WebUI first, then its vLLM, with the configured stop timeout
    assert watch.run.calls == [
        ["docker", "stop", "--time", "7", "qwen3vl-webui-0"],
        ["docker", "stop", "--time", "7", "qwen3vl-vllm-0"],
    ]
    assert not any(os.path.lexists(path) for path in instance_gate.link_paths(gate_dir, "0"))
    assert all(os.path.lexists(path) for path in instance_gate.link_paths(gate_dir, "1"))
    marker = Path(instance_gate.fence_marker(gate_dir, "0")).read_text()
    assert marker.startswith("gpu_unhealthy: GPU 0:") and "79" in marker
    assert len(lines) == 1 and lines[0].startswith("instance 0: fenced (gpu_unhealthy)")
    # the boot gate holds it back for that reason
    config = {"gate_dir": gate_dir, "mounts": [], "mount_timeout": 1}
    instance = {"id": "0", "model_dir": str(tmp_path), "data_dir": "", "verify": False, "manifest": ""}
    assert instance_gate.check_instance(instance, config, [])[0] == "gpu_fenced"
    assert instance_gate.check_instance(dict(instance, id="1"), config, []) == ("ok", "")
    text = (tmp_path / "textfile" / "qwen3vl_gpu_watch.prom").read_text()
    assert 'instance="0",gpu="%s",reason="gpu_unhealthy"} 1' % H100_0 in text
    # a third bad pass does nothing more
    watch.check_round()
    assert len(watch.run.calls) == 2 and len(lines) == 1


def test_release_after_rise_healthy_passes_restarts_the_gate(tmp_path):
    watch, lines = make_watch(tmp_path)
    drill = Path(watch.config["drill_file"])
    drill.write_text(XID_79_GPU0)
    watch.check_round()
    watch.check_round()
    drill.unlink()
    watch.run.calls.clear()
    assert watch.check_round() == 1
    assert watch.check_round() == 1
    assert watch.run.calls == []
    assert watch.check_round() == 0  # rise=3
    assert watch.run.calls == [["systemctl", "restart", "--no-block", "qwen3vl-instance-gate.service"]]
    assert not os.path.exists(instance_gate.fence_marker(watch.config["gate_dir"], "0"))
    assert lines[-1].startswith("instance 0: GPU healthy again: released")
    assert state(watch)["instances"]["0"] == {
        "fenced": False,
        "reason": "ok",
        "detail": "",
        "since": 1000.0,
        "bad_passes": 0,
        "good_passes": 3,
    }


def test_a_failed_gate_restart_is_retried_on_the_next_pass(tmp_path):
    watch, lines = make_watch(tmp_path, fall=1, rise=1)
    drill = Path(watch.config["drill_file"])
    drill.write_text(XID_79_GPU0)
    watch.check_round()
    drill.unlink()
    watch.run = Recorder(rc=1, stderr="Failed to restart: access denied")
    assert watch.check_round() == 1
    assert "cannot restart qwen3vl-instance-gate.service: Failed to restart: access denied" in lines[-1]
    watch.run = Recorder()
    assert watch.check_round() == 0
    assert watch.run.calls[0][:2] == ["systemctl", "restart"]


def test_a_marker_removed_by_the_role_is_a_release(tmp_path):
    watch, lines = make_watch(tmp_path, fall=1)
    drill = Path(watch.config["drill_file"])
    drill.write_text(XID_79_GPU0)
    watch.check_round()
    drill.unlink()
    # a converge whose GPU check passed: the marker goes, the links come back, the containers start
    os.unlink(instance_gate.fence_marker(watch.config["gate_dir"], "0"))
    link = instance_gate.link_paths(watch.config["gate_dir"], "0")[0]
    instance_gate.make_link(link, "/srv/somewhere")
    watch.run.calls.clear()
    assert watch.check_round() == 0
    assert watch.run.calls == [] and os.path.lexists(link)
    assert "released by a converge of the role" in lines[-1]
    # and a GPU that is bad again is fenced again
    drill.write_text(XID_79_GPU0)
    assert watch.check_round() == 1


def test_links_made_again_while_fenced_are_taken_away_again(tmp_path):
    watch, lines = make_watch(tmp_path, fall=1)
    Path(watch.config["drill_file"]).write_text(XID_79_GPU0)
    watch.check_round()
    link = instance_gate.link_paths(watch.config["gate_dir"], "0")[0]
    instance_gate.make_link(link, "/srv/somewhere")  # a converge of the role
    watch.run.calls.clear()
    watch.check_round()
    assert not os.path.lexists(link)
    assert [call[-1] for call in watch.run.calls] == ["qwen3vl-webui-0", "qwen3vl-vllm-0"]
    assert "came back while fenced" in lines[-1]


def test_a_gpu_with_double_bit_ecc_errors_is_fenced_without_any_xid(tmp_path):
    # recorded: GPU 1 with 2 uncorrectable volatile ECC errors; instance 1 is matched by index
    watch, lines = make_watch(tmp_path, scenario="h100_2x_gpu1_dbe", fall=1)
    assert watch.check_round() == 1
    assert state(watch)["instances"]["1"]["reason"] == "gpu_unhealthy"
    assert "uncorrectable" in state(watch)["instances"]["1"]["detail"]
    assert state(watch)["instances"]["0"]["fenced"] is False


def test_a_gpu_whose_uuid_is_gone_is_missing_even_when_its_index_is_taken(tmp_path):
    raw = raw_config(tmp_path, fall=1)
    raw["instances"][0]["gpu_uuid"] = "GPU-00000000-dead-beef-0000-000000000000"
    config = gpu_watch.load_config(raw)
    os.makedirs(config["textfile"])
    watch = gpu_watch.Watch(config, log=[].append, clock=lambda: 5.0)
    watch.run = Recorder()
    assert watch.check_round() == 1
    assert state(watch)["instances"]["0"]["reason"] == "gpu_missing"


def test_unreadable_gpus_fence_every_instance_after_fall_passes(tmp_path):
    raw = raw_config(tmp_path)
    raw["health"]["nvidia_smi_path"] = str(tmp_path / "no-such-nvidia-smi")
    config = gpu_watch.load_config(raw)
    os.makedirs(config["textfile"])
    watch = gpu_watch.Watch(config, log=[].append)
    watch.run = Recorder()
    assert watch.check_round() == 0
    assert watch.check_round() == 2
    document = state(watch)
    assert document["problem"].startswith("no NVIDIA driver found on this host")
    assert {item["reason"] for item in document["instances"].values()} == {"gpu_unreadable"}
    health = (tmp_path / "textfile" / "qwen3vl_gpu_health.prom").read_text()
    assert re.search(r"^qwen3vl_gpu_health_check_success 0(\.0)?( |$)", health, re.M)


def test_a_restarted_watch_keeps_what_it_had_fenced(tmp_path):
    watch, _lines = make_watch(tmp_path, fall=1)
    Path(watch.config["drill_file"]).write_text(XID_79_GPU0)
    watch.check_round()
    again = gpu_watch.Watch(watch.config, log=[].append, sleep=lambda _s: None)
    again.run = Recorder()
    Path(watch.config["drill_file"]).unlink()
    again.run_forever(once=True)
    assert again.tracks["0"].fenced is True and again.tracks["0"].reason == "gpu_unhealthy"
    assert again.tracks["0"].good == 1


def test_ready_is_sent_to_systemd_after_the_first_pass(tmp_path):
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        assert gpu_watch.sd_notify("READY=1", {"NOTIFY_SOCKET": address}) is True
        assert server.recv(64) == b"READY=1"
    assert gpu_watch.sd_notify("READY=1", {}) is False


def test_cli_checks_the_configuration(tmp_path, capsys):
    path = tmp_path / "watch.json"
    path.write_text(json.dumps(raw_config(tmp_path)))
    assert gpu_watch.main([str(path), "--check-config"]) == 0
    path.write_text(json.dumps(raw_config(tmp_path, fall=0)))
    assert gpu_watch.main([str(path), "--check-config"]) == 2
    assert "fall: 0 is not a whole number" in capsys.readouterr().err
    assert gpu_watch.main([]) == 2


def test_a_changed_configuration_is_taken_up_before_the_next_pass(tmp_path):
    path = tmp_path / "watch.json"
    path.write_text(json.dumps(raw_config(tmp_path, fall=1)))
    config = gpu_watch.load_config(json.loads(path.read_text()))
    os.makedirs(config["textfile"])
    lines = []
    watch = gpu_watch.Watch(config, config_path=str(path), log=lines.append)
    watch.run = Recorder()
    assert watch.maybe_reload() is False  # unchanged
    # GPU 1 now read from the recording where it has double-bit ECC errors
    path.write_text(json.dumps(raw_config(tmp_path, scenario="h100_2x_gpu1_dbe", fall=1)))
    assert watch.maybe_reload() is True
    assert lines[-1].endswith("taken up")
    assert watch.check_round() == 1 and watch.tracks["1"].fenced
    # a broken file is refused and the configuration in use stays
    path.write_text('{"fall": 0, "instances": []}')
    assert watch.maybe_reload() is False
    assert "not taken up, the old one stays: fall: 0" in lines[-1]
    assert set(watch.tracks) == {"0", "1"} and watch.tracks["1"].fenced
    # an instance dropped from the configuration is no longer watched; the others keep their state
    raw = raw_config(tmp_path, scenario="h100_2x_gpu1_dbe", fall=1)
    raw["instances"] = raw["instances"][1:]
    path.write_text(json.dumps(raw))
    assert watch.maybe_reload() is True
    assert set(watch.tracks) == {"1"} and watch.tracks["1"].fenced


def test_a_hung_nvidia_smi_is_an_unreadable_reading(tmp_path, monkeypatch):
    hung = tmp_path / "nvidia-smi-hung"
    hung.write_text("#!/bin/sh\nsleep 30\n")
    hung.chmod(0o755)
    raw = raw_config(tmp_path, fall=1)
    raw["health"]["nvidia_smi_path"] = str(hung)
    config = gpu_watch.load_config(raw)
    os.makedirs(config["textfile"])
    monkeypatch.setattr(gpu_watch, "READ_TIMEOUT", 1)
    watch = gpu_watch.Watch(config, log=[].append)
    watch.run = Recorder()
    assert watch.check_round() == 2
    document = state(watch)
    assert {item["reason"] for item in document["instances"].values()} == {"gpu_unreadable"}
    assert "timed out" in document["problem"], document["problem"]


def test_a_reader_stuck_in_the_kernel_does_not_stop_the_watch(tmp_path, monkeypatch):
    """A reading that never returns (nvidia-smi in uninterruptible sleep cannot be killed) is given up after
    READ_TIMEOUT + 5 s; while it is stuck no second one is started, and the readings count as unreadable."""
    release = threading.Event()
    watch, _lines = make_watch(tmp_path, fall=2)
    calls = []

    def stuck_reading():
        calls.append(1)
        release.wait(30)
        raise gpu_watch.GpuHealthError("released")

    monkeypatch.setattr(gpu_watch, "READ_TIMEOUT", -4.8)  # gives up after 0.2 s
    watch.read_gpus = stuck_reading
    assert watch.check_round() == 0
    assert "did not return within" in state(watch)["problem"]
    assert watch.check_round() == 2  # the second bad reading, without a second reader
    assert "has not returned" in state(watch)["problem"]
    assert len(calls) == 1
    release.set()


def test_the_first_pass_fences_on_one_bad_reading(tmp_path):
    """Before the watch reports ready (at boot, nothing started yet) one bad reading is enough: the boot gate,
    ordered after it, must not start an instance on a GPU already known bad."""
    watch, _lines = make_watch(tmp_path, fall=3)
    for path in instance_gate.link_paths(watch.config["gate_dir"], "0"):
        os.unlink(path)  # a boot: /run is empty, nothing started
    Path(watch.config["drill_file"]).write_text(XID_79_GPU0)
    assert watch.run_forever(once=True) == 1
    assert os.path.exists(instance_gate.fence_marker(watch.config["gate_dir"], "0"))


def test_a_restart_beside_running_instances_still_waits_for_fall(tmp_path):
    watch, _lines = make_watch(tmp_path, fall=3)  # both instances have their links: they run
    Path(watch.config["drill_file"]).write_text(XID_79_GPU0)
    assert watch.run_forever(once=True) == 0
    assert watch.run.calls == []
