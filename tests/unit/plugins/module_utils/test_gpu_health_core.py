"""The gpu_health core without Ansible: collectors on recorded NVML / nvidia-smi answers, the XID
parser, the verdict rules one by one, GPU selection, input checks and the Prometheus text."""

import copy
import importlib.util
import io
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import gpu_health as gh

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "gpu"


def load_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def replay_nvml(fixture):
    """A fresh pynvml stand-in replaying nvml/<fixture>.json, initialised like the module does."""
    nvml = load_by_path("pynvml_replay_%s" % fixture, FIXTURES / "nvml_replay" / "pynvml" / "__init__.py")
    nvml.replay_load(str(FIXTURES / "nvml" / (fixture + ".json")))
    nvml.nvmlInit()
    return nvml


def collect_nvml(fixture):
    return gh.collect_nvml(replay_nvml(fixture))


SMI_REPLAY = load_by_path("nvidia_smi_replay", FIXTURES / "nvidia_smi_replay.py")


def smi_runner(scenario, calls=None):
    """run(argv) for collect_smi, answered by the nvidia-smi stand-in without a subprocess."""

    def run(argv):
        out = io.StringIO()
        rc = SMI_REPLAY.replay(str(FIXTURES / "smi" / scenario), argv[1:], out)
        if calls is not None:
            calls.append((argv, rc))
        return rc, out.getvalue(), ""

    return run


def gpu(**values):
    """A GPU with nothing known except ``values``."""
    result = gh.empty_gpu()
    result.update(index=0, uuid="GPU-00000000-0000-0000-0000-000000000000", pci_bus_id="00000000:18:00.0")
    result.update(values)
    return result


def judge(one, **thresholds):
    merged = dict(gh.DEFAULT_THRESHOLDS, **thresholds)
    merged["xid_ignore"], merged["xid_fatal"] = frozenset(merged["xid_ignore"]), frozenset(merged["xid_fatal"])
    return gh.evaluate_gpu(one, merged)


# --- NVML collector ------------------------------------------------------------------------------


def test_nvml_healthy_h100_readings():
    collected = collect_nvml("h100_2x_healthy")
    assert collected["driver_version"] == "550.54.15"
    assert collected["cuda_version"] == "12.4"
    first, second = collected["gpus"]
    assert first["uuid"] == "GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13"
    assert first["name"] == "NVIDIA H100 80GB HBM3"
    assert first["pci_bus_id"] == "00000000:18:00.0"
    assert (first["memory_total_mib"], first["memory_used_mib"], first["memory_free_mib"]) == (81559, 564, 80995)
    assert (first["temperature_c"], first["temperature_slowdown_c"], first["temperature_margin_c"]) == (28, 90, 62)
    assert (first["power_draw_w"], first["power_limit_w"]) == (88.12, 700.0)
    assert (first["persistence_mode"], first["compute_mode"], first["mig_mode"], first["ecc_mode"]) == (
        True,
        "default",
        False,
        True,
    )
    assert (first["ecc_uncorrected_volatile"], first["ecc_uncorrected_aggregate"]) == (0, 0)
    # H100 has row remapping, not page retirement: NVML answers NotSupported, read as None.
    assert (first["retired_pages_sbe"], first["retired_pages_dbe"], first["retired_pages_pending"]) == (
        None,
        None,
        None,
    )
    assert (first["remapped_rows_pending"], first["remapped_rows_failure"]) == (False, False)
    assert set(first["clock_event_reasons"].values()) == {False}
    assert (first["pcie_link_gen_current"], first["pcie_link_gen_max"]) == (5, 5)
    assert first["recovery_action"] is None  # the field value is NotSupported on this driver
    assert first["errors"] == []
    assert second["processes"] == [{"pid": 51234, "name": "/usr/bin/python3", "used_memory_mib": 71234}]
    verdict = gh.evaluate(collected["gpus"], driver_version=collected["driver_version"])
    assert (verdict["status"], verdict["healthy"], verdict["reasons"]) == ("healthy", True, [])


def test_every_gpu_carries_the_full_schema():
    keys = set(gh.empty_gpu())
    for fixture in ("h100_2x_healthy", "h100_8x_faults", "v100_page_retirement", "l4_unsupported"):
        for one in collect_nvml(fixture)["gpus"]:
            assert set(one) == keys, fixture


def test_nvml_unsupported_and_missing_calls_are_none_and_not_faults():
    (l4,) = collect_nvml("l4_unsupported")["gpus"]
    for key in (
        "temperature_slowdown_c",
        "temperature_margin_c",
        "mig_mode",
        "retired_pages_sbe",
        "retired_pages_pending",
        "remapped_rows_pending",
        "remapped_rows_failure",
        "recovery_action",
    ):
        assert l4[key] is None, key
    # This driver lacks nvmlDeviceGetCurrentClocksEventReasons: the old throttle call answers.
    assert set(l4["clock_event_reasons"].values()) == {False}
    assert (l4["pcie_link_gen_current"], l4["pcie_link_gen_max"]) == (1, 4)
    assert l4["errors"] == []
    assert judge(l4).status == "healthy"


def test_a_gpu_that_is_lost_is_unhealthy_with_the_driver_error():
    lost = collect_nvml("h100_8x_faults")["gpus"][7]
    assert lost["index"] == 7 and lost["uuid"] is None
    assert lost["errors"] == ["nvmlDeviceGetHandleByIndex: GPU is lost"]
    verdict = judge(lost)
    assert verdict.status == "unhealthy"
    assert "GPU is lost" in verdict.reasons[0]


def test_nvml_init_without_a_driver_and_a_failing_count(tmp_path):
    nvml = load_by_path("pynvml_no_driver", FIXTURES / "nvml_replay" / "pynvml" / "__init__.py")
    nvml.replay_load(str(FIXTURES / "nvml" / "no_driver.json"))
    with pytest.raises(nvml.NVMLError) as raised:
        nvml.nvmlInit()
    assert raised.value.value == gh.NVML_ERROR_DRIVER_NOT_LOADED
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"system": {"nvmlDeviceGetCount()": {"nvml_error": "UNKNOWN"}}, "devices": []}))
    nvml.replay_load(str(broken))
    nvml.nvmlInit()
    with pytest.raises(gh.GpuHealthError, match="NVML could not count the GPUs: Unknown Error"):
        gh.collect_nvml(nvml)


# --- the verdict, rule by rule, on the 8-GPU fixture ---------------------------------------------

FAULTS = [
    (0, "healthy", None, False),
    (1, "unhealthy", "2 volatile uncorrectable (double-bit) ECC errors", False),
    (2, "unhealthy", "row remapping failed", False),
    (3, "unhealthy", "a memory row remap is pending: drain the node and reset the GPU", True),
    (4, "warning", "HW thermal slowdown active", False),
    (5, "warning", "PCIe link runs at x8 of x16", False),
    (6, "healthy", None, False),  # PCIe gen 1 of 5 at idle is power saving, not a fault
    (7, "unhealthy", "GPU is lost", False),
]


@pytest.mark.parametrize("index, status, reason, reset", FAULTS)
def test_each_fault_gets_its_verdict(index, status, reason, reset):
    verdict = judge(collect_nvml("h100_8x_faults")["gpus"][index])
    assert verdict.status == status
    assert verdict.reset_required is reset
    if reason is None:
        assert verdict.reasons == []
    else:
        assert any(reason in text for text in verdict.reasons), verdict.reasons


def test_recovery_action_from_the_driver_needs_a_reset():
    third = collect_nvml("h100_8x_faults")["gpus"][3]
    assert third["recovery_action"] == "gpu_reset"
    assert any("recovery action 'gpu_reset'" in text for text in judge(third).reasons)
    assert judge(gpu(recovery_action="none")).status == "healthy"


def test_thermal_slowdown_reports_temperature_against_the_threshold():
    hot = collect_nvml("h100_8x_faults")["gpus"][4]
    assert (hot["temperature_c"], hot["temperature_slowdown_c"], hot["temperature_margin_c"]) == (91, 90, -1)
    assert "temperature 91 C is at or above the slowdown threshold 90 C" in judge(hot).reasons


def test_retired_pages_63_is_unhealthy_and_the_limit_is_a_parameter():
    worn, pending = collect_nvml("v100_page_retirement")["gpus"]
    assert (worn["retired_pages_sbe"], worn["retired_pages_dbe"]) == (60, 3)
    assert judge(worn).reasons == ["63 retired memory pages (limit 63): replace the GPU"]
    assert judge(worn, max_retired_pages=64).status == "healthy"
    assert judge(gpu(retired_pages_sbe=62, retired_pages_dbe=None)).status == "healthy"
    verdict = judge(pending)
    assert (verdict.status, verdict.reset_required) == ("unhealthy", True)
    assert verdict.reasons == ["memory pages are pending retirement: drain the node and reset the GPU"]


@pytest.mark.parametrize(
    "values, status, reason",
    [
        ({"ecc_uncorrected_volatile": 1}, "unhealthy", "1 volatile uncorrectable (double-bit) ECC errors"),
        ({"ecc_uncorrected_aggregate": 4}, "healthy", None),  # lifetime count alone is history
        ({"remapped_rows_failure": True}, "unhealthy", "row remapping failed"),
        ({"remapped_rows_uncorrectable": 3}, "healthy", None),
        ({"clock_event_reasons": {"hw_slowdown": True}}, "warning", "HW slowdown active"),
        ({"clock_event_reasons": {"hw_power_brake_slowdown": True}}, "warning", "HW power brake slowdown active"),
        ({"clock_event_reasons": {"sw_thermal_slowdown": True}}, "warning", "SW thermal slowdown active"),
        ({"temperature_c": 70, "temperature_margin_c": 0}, "warning", "reached the slowdown threshold"),
        ({"temperature_c": 70, "temperature_margin_c": 12}, "healthy", None),
        ({"pcie_link_width_current": 8, "pcie_link_width_max": 16}, "warning", "x8 of x16"),
        ({"pcie_link_gen_current": 1, "pcie_link_gen_max": 5}, "healthy", None),
        ({"errors": ["pci.bus_id: GPU requires reset"]}, "unhealthy", "could not read pci.bus_id: GPU requires reset"),
    ],
)
def test_single_readings(values, status, reason):
    verdict = judge(gpu(**values))
    assert verdict.status == status
    if reason:
        assert any(reason in text for text in verdict.reasons), verdict.reasons


def test_max_temperature_and_min_free_memory_thresholds():
    warm = gpu(temperature_c=83, memory_free_mib=9105)
    assert judge(warm).status == "healthy"
    assert judge(warm, max_temperature=83).reasons == ["temperature 83 C is at or above max_temperature 83 C"]
    verdict = judge(warm, min_free_memory_mib=20000)
    assert (verdict.status, verdict.reasons) == ("unhealthy", ["9105 MiB free, below min_free_memory_mib 20000"])
    assert judge(gpu(), max_temperature=10, min_free_memory_mib=10).status == "healthy"  # unknown is no fault


def test_requires_reset_value_from_nvidia_smi_sets_reset_required():
    verdict = judge(gpu(errors=["ecc.mode.current: GPU requires reset"]))
    assert (verdict.status, verdict.reset_required) == ("unhealthy", True)


def test_an_empty_gpu_is_healthy():
    assert judge(gh.empty_gpu()).status == "healthy"


# --- host-level rules ----------------------------------------------------------------------------


def test_host_status_is_the_worst_gpu_and_reasons_name_the_gpu():
    collected = collect_nvml("h100_8x_faults")
    verdict = gh.evaluate(collected["gpus"])
    assert (verdict["status"], verdict["healthy"], verdict["reset_required"]) == ("unhealthy", False, True)
    assert [one["status"] for one in verdict["gpus"]] == [
        "healthy",
        "unhealthy",
        "unhealthy",
        "unhealthy",
        "warning",
        "warning",
        "healthy",
        "unhealthy",
    ]
    assert "GPU 5 (GPU-50cc7d96-d18e-4f4a-ab67-a24f51ce8d76): PCIe link runs at x8 of x16" in verdict["reasons"][-2]
    only_warnings = gh.evaluate(collected["gpus"][4:6])
    assert (only_warnings["status"], only_warnings["healthy"]) == ("warning", True)


def test_expected_count_is_compared_with_every_gpu_the_driver_reports():
    gpus = collect_nvml("h100_2x_healthy")["gpus"]
    assert gh.evaluate(gpus, expected_count=2)["status"] == "healthy"
    verdict = gh.evaluate(gpus[:1], expected_count=8, host_gpus=gpus)
    assert verdict["status"] == "unhealthy"
    assert verdict["reasons"] == ["the driver reports 2 GPUs, expected_count is 8"]


@pytest.mark.parametrize(
    "driver, minimum, status",
    [
        ("550.54.15", "550.54.15", "healthy"),
        ("550.54.15", "535.104.05", "healthy"),
        ("535.104.05", "550.54.15", "unhealthy"),
        ("550.54.15", "550.54.16", "unhealthy"),
        ("550.54.15", "550", "healthy"),
        ("550.54.15", "550.100", "unhealthy"),  # numeric, not text: 54 < 100
        (None, "550", "warning"),
    ],
)
def test_min_driver_version(driver, minimum, status):
    verdict = gh.evaluate([gpu()], {"min_driver_version": minimum}, driver_version=driver)
    assert verdict["status"] == status


# --- XIDs ----------------------------------------------------------------------------------------


def test_parse_xid_dmesg_lines():
    events = gh.parse_xid((FIXTURES / "kernel" / "xid_h100_8x.log").read_text())
    assert [(e["pci_bus_id"], e["xid"]) for e in events] == [
        ("0000:18:00", 13),
        ("0000:18:00", 13),
        ("0000:5d:00", 63),
        ("0000:db:00", 79),
    ]
    assert (events[0]["pid"], events[0]["process"]) == (48211, "python3")
    assert events[0]["message"].startswith("Graphics SM Warp Exception")
    assert (events[3]["pid"], events[3]["message"]) == (None, "GPU has fallen off the bus.")


def test_parse_xid_journal_and_old_formats():
    events = gh.parse_xid((FIXTURES / "kernel" / "journal_mixed.log").read_text())
    assert [(e["pci_bus_id"], e["xid"], e["pid"]) for e in events] == [
        ("0000:2a:00", 31, 51234),
        ("0000:2a:00", 94, 51234),
        ("0000:2a:00", 119, None),  # old format: no "PCI:" and no pid
    ]
    assert events[2]["message"].startswith("Timeout waiting for RPC from GSP")
    assert gh.parse_xid("") == [] and gh.parse_xid(None) == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("00000000:3B:00.0", "0000:3b:00"),
        ("0000:3b:00", "0000:3b:00"),
        ("PCI:0000:3B:00", "0000:3b:00"),
        ("3b:00.0", "0000:3b:00"),
        ("00000001:DB:01.0", "0001:db:01"),
        ("not a bus", None),
        (None, None),
    ],
)
def test_bus_ids_from_nvml_smi_and_the_kernel_match(text, expected):
    assert gh.normalize_bus_id(text) == expected


def test_xids_map_to_gpus_by_bus_id():
    gpus = collect_nvml("h100_8x_faults")["gpus"]
    events = gh.parse_xid((FIXTURES / "kernel" / "xid_h100_8x.log").read_text())
    verdict = gh.evaluate(gpus, xid_events=events)
    by_index = {one["index"]: one for one in verdict["gpus"]}
    assert [e["severity"] for e in by_index[0]["xid_events"]] == ["ignored", "ignored"]
    assert by_index[0]["status"] == "healthy"  # XID 13 is the application's fault
    assert "XID 63 (ECC page retirement or row remapping recorded) 1x" in by_index[3]["reasons"][-1]
    # XID 79 names 0000:db:00; the lost GPU there has no bus id any more: it counts for the host.
    assert [e["gpu_index"] for e in verdict["xid_events"]] == [0, 0, 3, None]
    assert any("XID 79 (GPU has fallen off the bus) 1x" in r and "0000:db:00" in r for r in verdict["reasons"])
    selected = gh.evaluate(gpus[:1], xid_events=events, host_gpus=gpus, count_unmatched_xids=False)
    assert selected["status"] == "healthy"


def test_fatal_xid_on_a_gpu_is_unhealthy_and_the_lists_are_parameters():
    gpus = collect_nvml("h100_2x_healthy")["gpus"]
    events = gh.parse_xid((FIXTURES / "kernel" / "xid_79_gpu0.log").read_text())
    verdict = gh.evaluate(gpus, xid_events=events)
    assert verdict["gpus"][0]["status"] == "unhealthy" and verdict["gpus"][1]["status"] == "healthy"
    assert verdict["gpus"][0]["reasons"] == [
        "XID 79 (GPU has fallen off the bus) 1x in the kernel log since boot: drain the node, then reset the GPU or reboot"
    ]
    assert gh.evaluate(gpus, {"xid_fatal": [48], "xid_ignore": [79]}, xid_events=events)["status"] == "healthy"
    assert gh.evaluate(gpus, {"xid_fatal": [48], "xid_ignore": []}, xid_events=events)["status"] == "warning"


def test_contained_ecc_and_gsp_timeout_xids():
    gpus = collect_nvml("h100_2x_healthy")["gpus"]
    events = gh.parse_xid((FIXTURES / "kernel" / "journal_mixed.log").read_text())
    second = gh.evaluate(gpus, xid_events=events)["gpus"][1]
    assert second["status"] == "unhealthy"  # 119 is fatal; 94 a warning; 31 ignored
    assert [r.split(" 1x")[0] for r in second["reasons"]] == [
        "XID 94 (contained ECC error)",
        "XID 119 (GSP RPC timeout)",
    ]


# --- nvidia-smi collector ------------------------------------------------------------------------


def test_smi_healthy_h100_matches_the_nvml_view():
    calls = []
    collected = gh.collect_smi(smi_runner("h100_2x_healthy", calls))
    assert (collected["driver_version"], collected["cuda_version"]) == ("550.54.15", "12.4")
    first, second = collected["gpus"]
    assert (first["index"], first["uuid"], first["name"]) == (
        0,
        "GPU-3f9c1a52-8d4e-4b7a-9e21-6c0d2f8a7b13",
        "NVIDIA H100 80GB HBM3",
    )
    assert (first["memory_total_mib"], first["memory_free_mib"], first["temperature_margin_c"]) == (81559, 80995, 62)
    assert (first["power_draw_w"], first["power_limit_w"], first["persistence_mode"]) == (88.12, 700.0, True)
    assert first["retired_pages_sbe"] is None  # [N/A]
    assert (first["remapped_rows_pending"], first["recovery_action"]) == (False, None)
    assert second["processes"] == [{"pid": 51234, "name": "/usr/bin/python3", "used_memory_mib": 71234}]
    assert first["processes"] == []
    # This 550 driver does not know gpu_recovery_action: the query is repeated without it.
    queries = [argv[1] for argv, _rc in calls if argv[1:2] and argv[1].startswith("--query-gpu=")]
    assert len(queries) == 2 and "gpu_recovery_action" in queries[0] and "gpu_recovery_action" not in queries[1]
    assert gh.evaluate(collected["gpus"])["status"] == "healthy"
    assert gh.evaluate(collected["gpus"], {"min_free_memory_mib": 20000})["gpus"][1]["status"] == "unhealthy"


def test_smi_legacy_throttle_field_names_and_pending_remap():
    calls = []
    collected = gh.collect_smi(smi_runner("a100_legacy_driver", calls))
    queries = [argv[1] for argv, _rc in calls if argv[1:2] and argv[1].startswith("--query-gpu=")]
    assert "clocks_event_reasons.hw_slowdown" in queries[0]
    assert "clocks_throttle_reasons.hw_slowdown" in queries[-1]
    first, second = collected["gpus"]
    assert set(first["clock_event_reasons"].values()) == {False}
    assert first["temperature_margin_c"] is None  # temperature.gpu.tlimit is unknown to R525
    assert (second["remapped_rows_uncorrectable"], second["remapped_rows_pending"]) == (1, True)
    verdict = gh.evaluate(collected["gpus"], driver_version=collected["driver_version"])
    assert verdict["gpus"][1]["reset_required"] is True and verdict["gpus"][0]["status"] == "healthy"


def test_smi_not_supported_values_are_none():
    (l4,) = gh.collect_smi(smi_runner("l4_not_supported"))["gpus"]
    assert (l4["mig_mode"], l4["temperature_margin_c"], l4["retired_pages_pending"]) == (None, None, None)
    assert l4["remapped_rows_pending"] is None  # no row remapping on this GPU: the query fails
    assert l4["recovery_action"] is None and l4["errors"] == []
    assert judge(l4).status == "healthy"


def test_smi_without_a_driver_raises_no_driver():
    with pytest.raises(gh.NoDriverError, match="cannot reach the NVIDIA driver"):
        gh.collect_smi(smi_runner("no_driver"))


def test_smi_other_failures_and_unknown_base_fields_raise():
    with pytest.raises(gh.GpuHealthError, match="rc 6"):
        gh.collect_smi(lambda argv: (6, "", "Unable to determine the device handle for GPU0000:DB:00.0"))
    answer = 'Field "ecc.errors.uncorrected.volatile.total" is not a valid field to query.\n'
    with pytest.raises(gh.GpuHealthError, match="does not know the field 'ecc.errors"):
        gh.collect_smi(lambda argv: (2, answer, ""))


def test_parse_smi_csv():
    rows = gh.parse_smi_csv("0, [N/A], N/A, [Not Supported], 5\n\n1, a, b, [GPU requires reset], 7\n", list("abcde"))
    assert rows[0] == {"a": "0", "b": None, "c": None, "d": None, "e": "5"}
    assert rows[1]["d"] == "[GPU requires reset]"
    with pytest.raises(ValueError, match="line 1 has 2 values, expected 3"):
        gh.parse_smi_csv("1, 2\n", ["a", "b", "c"])


def test_smi_bracketed_driver_complaints_become_errors():
    fields = gh.smi_gpu_query_fields()
    values = dict.fromkeys(fields, "[N/A]")
    values.update(
        {"index": "0", "uuid": "GPU-x", "name": "NVIDIA A100-SXM4-80GB", "ecc.mode.current": "[GPU requires reset]"}
    )
    line = ", ".join(values[field] for field in fields)
    (row,) = gh.parse_smi_csv(line, fields)
    one = gh._gpu_from_smi_row(row, gh.SMI_CLOCK_PREFIX)  # pylint: disable=protected-access
    assert one["errors"] == ["ecc.mode.current: GPU requires reset"]
    assert judge(one).reset_required is True


# --- selection and input -------------------------------------------------------------------------


def test_select_by_index_and_uuid():
    gpus = collect_nvml("h100_2x_healthy")["gpus"]
    selected, errors = gh.select_gpus(gpus, ["1", "gpu-3F9C1A52-8D4E-4B7A-9E21-6C0D2F8A7B13", "1"])
    assert errors == [] and [one["index"] for one in selected] == [0, 1]
    assert gh.select_gpus(gpus, None) == (gpus, [])


def test_select_unknown_gpus_names_each_one():
    gpus = collect_nvml("h100_2x_healthy")["gpus"]
    selected, errors = gh.select_gpus(gpus, ["7", "GPU-deadbeef", "first"])
    assert selected == []
    assert errors == [
        "gpus[0]: no GPU with index 7 (the driver reports 0, 1)",
        "gpus[1]: no GPU with UUID GPU-deadbeef on this host",
        "gpus[2]: 'first' is neither a GPU index nor a UUID (GPU-...)",
    ]


def test_validate_thresholds_names_the_option():
    errors = gh.validate_thresholds(
        {
            "max_temperature": -1,
            "min_free_memory_mib": -5,
            "max_retired_pages": 0,
            "min_driver_version": "550.x",
            "xid_ignore": [13, 79],
            "xid_fatal": [79, -2],
        },
        expected_count=-1,
    )
    assert errors == [
        "max_temperature must be 0 or more, got -1",
        "min_free_memory_mib must be 0 or more, got -5",
        "max_retired_pages must be 1 or more, got 0",
        "expected_count must be 0 or more, got -1",
        "min_driver_version: '550.x' is not a version like 550.54.15",
        "xid_fatal: XID numbers are 0 or more, got -2",
        "xid_ignore and xid_fatal both list 79; an XID can only be one",
    ]
    assert gh.validate_thresholds(dict(gh.DEFAULT_THRESHOLDS, min_driver_version="535.104.05")) == []


def test_default_xid_lists_do_not_overlap():
    assert not set(gh.DEFAULT_XID_IGNORE) & set(gh.DEFAULT_XID_FATAL)
    assert set(gh.DEFAULT_XID_IGNORE) == {13, 31, 43, 45, 68, 109}


# --- Prometheus text ------------------------------------------------------------------------------


def _render(fixture="h100_8x_faults", **extra):
    collected = collect_nvml(fixture)
    result = gh.evaluate(collected["gpus"])
    result.update(check_success=True, backend="nvml", driver_version=collected["driver_version"])
    result.update(extra)
    return gh.render_prometheus(result, timestamp=extra.pop("timestamp", None))


def test_prometheus_text_is_well_formed():
    text = _render()
    declared = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind == "gauge" and name not in declared
            declared.add(name)
        elif line.startswith("# HELP "):
            assert line.split()[2] not in declared  # HELP comes before TYPE
        else:
            name = line.split("{")[0].split(" ")[0]
            assert name in declared and name.startswith("qwen3vl_gpu_"), line
            float(line.rsplit(" ", 1)[1])
    assert text.endswith("\n")


def test_prometheus_health_gauges_and_labels():
    lines = _render().splitlines()
    assert "qwen3vl_gpu_health_check_success 1" in lines
    assert "qwen3vl_gpu_health_overall 2" in lines
    labels = 'gpu="4",uuid="GPU-4fbb6c85-c07d-4e39-9a56-913e40bd7c65",name="NVIDIA H100 80GB HBM3"'
    assert "qwen3vl_gpu_health{%s} 1" % labels in lines
    assert 'qwen3vl_gpu_clock_event_active{%s,reason="hw_thermal_slowdown"} 1' % labels in lines
    assert "qwen3vl_gpu_temperature_celsius{%s} 91" % labels in lines
    assert "qwen3vl_gpu_memory_total_bytes{%s} 85520809984" % labels in lines
    assert "qwen3vl_gpu_power_limit_watts{%s} 700" % labels in lines
    assert 'qwen3vl_gpu_health{gpu="7",uuid="",name=""} 2' in lines
    assert not [line for line in lines if line.startswith('qwen3vl_gpu_temperature_celsius{gpu="7"')]  # None: left out
    assert 'qwen3vl_gpu_pcie_link_generation{gpu="6",uuid="GPU-61dd8ea7-e29f-405b-bc78-b35062df9e87",' in "\n".join(
        lines
    )


def test_prometheus_timestamp_is_optional_and_labels_are_escaped():
    assert "timestamp" not in _render()
    assert "qwen3vl_gpu_health_check_timestamp_seconds 1.7e+09" in _render(timestamp=1700000000)
    text = gh.render_prometheus(
        {
            "check_success": True,
            "gpu_count": 1,
            "status": "healthy",
            "gpus": [gh.evaluate([gpu(name='A "quoted"\\name')])["gpus"][0]],
        }
    )
    assert 'name="A \\"quoted\\"\\\\name"' in text


def test_prometheus_when_the_check_failed():
    text = gh.render_prometheus({"check_success": False, "gpus": []}, timestamp=5)
    assert text.splitlines() == [
        "# HELP qwen3vl_gpu_health_check_success 1 when the check could read the GPUs (or found none where that is allowed).",
        "# TYPE qwen3vl_gpu_health_check_success gauge",
        "qwen3vl_gpu_health_check_success 0",
        "# HELP qwen3vl_gpu_health_check_timestamp_seconds When the check ran, seconds since the epoch.",
        "# TYPE qwen3vl_gpu_health_check_timestamp_seconds gauge",
        "qwen3vl_gpu_health_check_timestamp_seconds 5",
    ]


# --- the recorder and the replay agree -----------------------------------------------------------

RECORDER = load_by_path("record_nvml", FIXTURES / "record_nvml.py")


@pytest.mark.parametrize("fixture", ["h100_2x_healthy", "h100_8x_faults", "v100_page_retirement", "l4_unsupported"])
def test_record_from_the_stand_in_then_replay_gives_the_same_readings(fixture, tmp_path):
    stand_in = load_by_path("pynvml_roundtrip", FIXTURES / "nvml_replay" / "pynvml" / "__init__.py")
    stand_in.replay_load(str(FIXTURES / "nvml" / (fixture + ".json")))
    recorded, collected = RECORDER.record_nvml(stand_in, "round trip")
    path = tmp_path / "recorded.json"
    path.write_text(json.dumps(recorded))
    again = load_by_path("pynvml_roundtrip_again", FIXTURES / "nvml_replay" / "pynvml" / "__init__.py")
    again.replay_load(str(path))
    again.nvmlInit()
    assert gh.collect_nvml(again) == collected == collect_nvml(fixture)
    # The recording holds exactly the calls the collector makes: the committed fixture has no extras.
    original = json.loads((FIXTURES / "nvml" / (fixture + ".json")).read_text())
    assert recorded["system"] == original["system"]
    assert recorded["devices"] == original["devices"]


def test_recorder_turns_ctypes_structs_into_json():
    ctypes = pytest.importorskip("ctypes")

    class Value(ctypes.Union):
        _fields_ = [("uiVal", ctypes.c_uint), ("dVal", ctypes.c_double)]

    class Field(ctypes.Structure):
        _fields_ = [("fieldId", ctypes.c_uint), ("nvmlReturn", ctypes.c_uint), ("value", Value)]

    array = (Field * 1)()
    array[0].fieldId, array[0].nvmlReturn, array[0].value.uiVal = 230, 0, 2
    assert RECORDER.plain(array) == [
        {"fieldId": 230, "nvmlReturn": 0, "value": {"uiVal": 2, "dVal": pytest.approx(1e-323)}}
    ]
    assert RECORDER.plain((1, b"GPU-x")) == [1, "GPU-x"]


def test_record_smi_then_replay_gives_the_same_readings(tmp_path):
    wrapper = tmp_path / "nvidia-smi"
    wrapper.write_text(
        '#!/bin/sh\nexec "%s" "%s" "%s" "$@"\n'
        % (sys.executable, FIXTURES / "nvidia_smi_replay.py", FIXTURES / "smi" / "h100_2x_healthy")
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    collected = RECORDER.record_smi(str(wrapper), str(tmp_path / "recorded"))
    assert sorted(os.listdir(tmp_path / "recorded")) == [
        "banner.txt",
        "query-compute-apps.csv",
        "query-gpu.csv",
        "query-remapped-rows.csv",
    ]

    def run(argv):
        out = io.StringIO()
        return SMI_REPLAY.replay(str(tmp_path / "recorded"), argv[1:], out), out.getvalue(), ""

    assert gh.collect_smi(run) == collected == gh.collect_smi(smi_runner("h100_2x_healthy"))


def test_replay_refuses_calls_the_fixture_does_not_hold():
    nvml = replay_nvml("h100_2x_healthy")
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(nvml.ReplayMissing, match=r"nvmlDeviceGetTemperature\(1\)"):
        nvml.nvmlDeviceGetTemperature(handle, 1)
    assert not hasattr(nvml, "nvmlDeviceGetSerial")
    fixture = copy.deepcopy(json.loads((FIXTURES / "nvml" / "no_driver.json").read_text()))
    assert fixture["init_error"] == "DRIVER_NOT_LOADED"
