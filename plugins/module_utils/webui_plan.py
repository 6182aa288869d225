# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the webui role's variables into a list of model instances, or into messages naming what is wrong.

Pure Python (no Ansible imports): the filter plugin ``qwen3vl.ha.webui_plan`` wraps it and unit tests
call it directly. One instance = one vLLM container and one WebUI container pinned to one GPU.

Numbering: instance N is the Nth entry of ``webui_instances`` or, when that is empty, of ``webui_gpus``
(``auto`` = every GPU gpu_health reports, sorted by index, healthy or not, so that a sick GPU never
shifts the ports of the others). Instance N publishes vLLM on ``vllm_port_base + N`` and the WebUI on
``ui_port_base + N`` unless the entry names its own ports.
"""

from __future__ import annotations

import posixpath
import re

# Flags the role renders itself; extra args must not repeat them (the later one would silently win).
MANAGED_VLLM_FLAGS = (
    "--api-key",
    "--gpu-memory-utilization",
    "--host",
    "--limit-mm-per-prompt",
    "--max-model-len",
    "--model",
    "--port",
    "--served-model-name",
    "--shutdown-timeout",
)
# Environment the role sets on the vLLM container (the API key travels in an env file, never in argv).
MANAGED_VLLM_ENV = ("VLLM_API_KEY",)
# Set by the NVIDIA runtime from device_requests; a second value would fight the GPU pinning.
GPU_PINNING_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
INSTANCE_KEYS = ("gpu", "vllm_port", "ui_port", "model_dir")
_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]+$")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _gpu_ref(value, where, errors):
    """Normalise one GPU reference to ("index", int) or ("uuid", str); None after recording an error."""
    if _is_int(value) and value >= 0:
        return ("index", value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return ("index", int(text))
        if _GPU_UUID.match(text):
            return ("uuid", text)
    errors.append(
        "%s: %r is not a GPU index (0, 1, ...) or a GPU UUID (GPU-... / MIG-..., see nvidia-smi -L)" % (where, value)
    )
    return None


def _gpu_table(gpu_facts):
    """index -> uuid from gpu_health's facts (empty when there are none)."""
    if not isinstance(gpu_facts, dict):
        return {}
    indices = gpu_facts.get("indices") or []
    uuids = gpu_facts.get("uuids") or []
    return {int(i): (uuids[n] if n < len(uuids) else None) for n, i in enumerate(indices)}


def _flag_name(arg):
    return arg.split("=", 1)[0] if isinstance(arg, str) and arg.startswith("--") else None


def _check_extra_args(args, where, managed, errors):
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        errors.append("%s: must be a list of strings (one argument per item)" % where)
        return
    for n, arg in enumerate(args):
        name = _flag_name(arg)
        if name in managed:
            errors.append(
                "%s[%d]: %r collides with %s, which the role sets itself; use the role's variable for it"
                % (where, n, arg, name)
            )


def _check_env(env, where, managed, errors):
    if not isinstance(env, dict):
        errors.append("%s: must be a mapping of NAME: value" % where)
        return
    for key in sorted(env, key=str):
        if key in managed:
            errors.append("%s: %s is set by the role; remove it from %s" % (where, key, where))


def _explicit_entries(instances, errors):
    """Entries from webui_instances, each with the variable name it comes from."""
    out = []
    for n, entry in enumerate(instances):
        where = "webui_instances[%d]" % n
        if not isinstance(entry, dict):
            errors.append("%s: must be a mapping with at least 'gpu'" % where)
            continue
        unknown = sorted(set(entry) - set(INSTANCE_KEYS), key=str)
        if unknown:
            errors.append(
                "%s: unknown key(s) %s; allowed: %s" % (where, ", ".join(map(str, unknown)), ", ".join(INSTANCE_KEYS))
            )
        if "gpu" not in entry:
            errors.append("%s: 'gpu' is required (a GPU index or UUID)" % where)
            continue
        out.append((where, entry))
    return out


def _gpu_entries(config, gpu_table, errors):
    """Entries from webui_gpus ("auto" = every GPU gpu_health reported)."""
    gpus = config.get("gpus", "auto")
    if gpus != "auto":
        if not isinstance(gpus, list) or not gpus:
            errors.append("webui_gpus: must be 'auto' or a non-empty list of GPU indices or UUIDs")
            return []
        return [("webui_gpus[%d]" % n, {"gpu": g}) for n, g in enumerate(gpus)]
    if not config.get("gpu_check", True):
        errors.append(
            "webui_gpus: 'auto' takes the GPU list from gpu_health, which webui_gpu_check: false turns off; "
            "list the GPUs (e.g. [0, 1]) or turn the check on"
        )
    elif not gpu_table:
        errors.append("webui_gpus: 'auto' found no GPU on this host (gpu_health reported none)")
    return [("webui_gpus[%d]" % n, {"gpu": i}) for n, i in enumerate(sorted(gpu_table))]


def _entries(config, gpu_table, errors):
    """The raw per-instance entries: webui_instances when it is not empty, else webui_gpus."""
    instances = config.get("instances") or []
    if not isinstance(instances, list):
        errors.append("webui_instances: must be a list of mappings")
        return []
    if instances:
        return _explicit_entries(instances, errors)
    return _gpu_entries(config, gpu_table, errors)


def _port(value, where, errors):
    if not _is_int(value) or not 1 <= value <= 65535:
        errors.append("%s: %r is not a TCP port (1-65535)" % (where, value))
        return None
    return value


def plan(config, gpu_facts=None):
    """Resolve and check the instances.

    ``config`` keys (the role's variables without the ``webui_`` prefix): gpus, instances, gpu_check,
    device_requests, vllm_port_base, ui_port_base, model_dir, vllm_extra_args, ui_extra_args, vllm_env,
    vllm_name_prefix, ui_name_prefix, model_mount_root. ``gpu_facts`` is ansible_facts.qwen3vl_gpu_health.

    Returns {"instances": [...], "errors": [...]}; instances is empty whenever errors is not.
    """
    errors = []
    gpu_check = bool(config.get("gpu_check", True))
    gpu_table = _gpu_table(gpu_facts) if gpu_check else {}
    uuid_to_index = {u: i for i, u in gpu_table.items() if u}

    _check_extra_args(config.get("vllm_extra_args", []), "webui_vllm_extra_args", MANAGED_VLLM_FLAGS, errors)
    _check_extra_args(config.get("ui_extra_args", []), "webui_ui_extra_args", (), errors)
    managed_env = MANAGED_VLLM_ENV + (GPU_PINNING_ENV if config.get("device_requests", True) else ())
    _check_env(config.get("vllm_env", {}), "webui_vllm_env", managed_env, errors)

    default_model_dir = config.get("model_dir")
    vllm_base = _port(config.get("vllm_port_base", 8000), "webui_vllm_port_base", errors)
    ui_base = _port(config.get("ui_port_base", 7860), "webui_ui_port_base", errors)
    mount_root = config.get("model_mount_root", "/models")
    vllm_prefix = config.get("vllm_name_prefix", "qwen3vl-vllm-")
    ui_prefix = config.get("ui_name_prefix", "qwen3vl-webui-")

    instances = []
    seen_gpu = {}
    seen_port = {}
    for number, (where, entry) in enumerate(_entries(config, gpu_table, errors)):
        ref = _gpu_ref(entry["gpu"], where if where.startswith("webui_gpus") else where + ".gpu", errors)
        if ref is None:
            continue
        kind, value = ref
        index = value if kind == "index" else uuid_to_index.get(value)
        uuid = gpu_table.get(value) if kind == "index" else value
        if gpu_check:
            if kind == "index" and value not in gpu_table:
                errors.append(
                    "%s: GPU index %d does not exist on this host (GPUs: %s)"
                    % (where, value, ", ".join(map(str, sorted(gpu_table))) or "none")
                )
                continue
            if kind == "uuid" and value not in uuid_to_index:
                errors.append("%s: no GPU with UUID %s on this host" % (where, value))
                continue
        identity = ("index", index) if index is not None else ref
        if identity in seen_gpu:
            errors.append(
                "%s: GPU %s is already used by %s (one instance per GPU)" % (where, value, seen_gpu[identity])
            )
            continue
        seen_gpu[identity] = where

        vllm_port = entry.get("vllm_port", None if vllm_base is None else vllm_base + number)
        ui_port = entry.get("ui_port", None if ui_base is None else ui_base + number)
        ports = {}
        for label, port in (("vllm_port", vllm_port), ("ui_port", ui_port)):
            if port is None:
                continue
            source = "%s.%s" % (where, label) if label in entry else "%s (%s)" % (where, label)
            checked = _port(port, source, errors)
            if checked is None:
                continue
            if checked in seen_port:
                errors.append("%s: port %d is already used by %s" % (source, checked, seen_port[checked]))
                continue
            seen_port[checked] = source
            ports[label] = checked

        model_dir = entry.get("model_dir", default_model_dir)
        model_dir_var = where + ".model_dir" if "model_dir" in entry else "webui_model_dir"
        if not isinstance(model_dir, str) or not posixpath.isabs(model_dir):
            errors.append("%s: %r is not an absolute path to the model directory" % (model_dir_var, model_dir))
            continue
        model_dir = posixpath.normpath(model_dir)
        instances.append(
            {
                "id": number,
                "source": where,
                "gpu": str(value),
                "gpu_index": index,
                "gpu_uuid": uuid,
                "vllm_name": "%s%d" % (vllm_prefix, number),
                "ui_name": "%s%d" % (ui_prefix, number),
                "vllm_port": ports.get("vllm_port"),
                "ui_port": ports.get("ui_port"),
                "model_dir": model_dir,
                "model_dir_var": model_dir_var,
                "model_path": posixpath.join(mount_root, posixpath.basename(model_dir)),
            }
        )
    return {"instances": [] if errors else instances, "errors": errors}


def _gpu_verdicts(gpu_result):
    """index -> (status, reasons) from a qwen3vl.ha.gpu_health result."""
    verdicts = {}
    for gpu in (gpu_result or {}).get("gpus") or []:
        if isinstance(gpu, dict) and gpu.get("index") is not None:
            verdicts[int(gpu["index"])] = (gpu.get("status") or "unknown", list(gpu.get("reasons") or []))
    return verdicts


def gate(instances, checksums=None, gpu_result=None):
    """Add ``blocked`` (a reason, or "") to each planned instance.

    ``checksums``: model dir -> {"ok": bool, "message": str}, or the list of registered
    qwen3vl.ha.model_checksum loop results (each with ``item`` = the directory, ``ok`` and ``msg``);
    None or a missing directory = not verified.
    ``gpu_result``: the registered qwen3vl.ha.gpu_health result (None = no GPU check). A GPU whose status
    is "unhealthy" blocks its instance; "warning" (throttling, a benign XID) does not.
    """
    verdicts = _gpu_verdicts(gpu_result) if gpu_result is not None else None
    if isinstance(checksums, list):
        checksums = {
            r["item"]: {"ok": r.get("ok") is True and not r.get("failed"), "message": r.get("msg")}
            for r in checksums
            if isinstance(r, dict) and "item" in r and not r.get("skipped")
        }
    out = []
    for instance in instances:
        reasons = []
        check = (checksums or {}).get(instance["model_dir"])
        if check is not None and not check.get("ok"):
            reasons.append(
                "model checksum failed for %s: %s" % (instance["model_dir"], check.get("message") or "mismatch")
            )
        if verdicts is not None:
            status, why = verdicts.get(instance.get("gpu_index"), ("missing", ["gpu_health did not report it"]))
            if status not in ("healthy", "warning"):
                reasons.append("GPU %s is %s: %s" % (instance["gpu"], status, "; ".join(why) or "no reason given"))
        out.append(dict(instance, blocked="; ".join(reasons)))
    return out
