# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the webui role's variables into a list of model instances, or into messages naming what is wrong.

Pure Python (no Ansible imports): the filter plugin ``qwen3vl.ha.webui_plan`` wraps it and unit tests
call it directly. One instance = one vLLM container and one WebUI container pinned to one GPU.

Numbering: instance N is the Nth entry of ``webui_instances`` or, when that is empty, of ``webui_gpus``
(``auto`` = every GPU gpu_health reports, sorted by index, healthy or not, so that a sick GPU never
shifts the ports of the others). Instance N publishes vLLM on ``vllm_port_base + N`` and the WebUI on
``ui_port_base + N`` unless the entry names its own ports.

Calling convention (see checks.py): ``_webui_config | qwen3vl.ha.webui_plan(gpu_facts, checksums,
gpu_result)`` returns ``{"instances", "errors", "warnings"}``. The role calls it three times: with no host
context before anything runs (every setting is checked, GPUs are not known yet), after gpu_health with its
facts (GPU references are resolved against the host), and after model_checksum with both results (each
instance gets ``blocked``).
"""

from __future__ import annotations

import posixpath
import re

from ansible_collections.qwen3vl.ha.plugins.module_utils import checks, instance_gate

# Flags the role renders itself; extra args must not repeat them (the later one would silently win).
MANAGED_VLLM_FLAGS = (
    "--allowed-media-domains",
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
# Environment the role sets on the vLLM container: the API key goes in the container's env (docker_container
# env:, its task under no_log), never in argv where `ps` shows it to every local user.
MANAGED_VLLM_ENV = ("VLLM_API_KEY",)
# Set by the NVIDIA runtime from device_requests; a second value would fight the GPU pinning.
GPU_PINNING_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
INSTANCE_KEYS = ("gpu", "vllm_port", "ui_port", "model_dir")
_GPU_UUID = re.compile(r"^(GPU|MIG)-[0-9A-Za-z-]+$")
_DRIVER_VERSION = r"^[0-9]+(\.[0-9]+)*$"


def recorded(host_vars):
    """What the webui role recorded on a GPU host, from that host's variables (a hostvars entry): the
    ``webui_deployed`` fact of this run, else the ``qwen3vl_webui`` local fact it wrote on the host
    (``ansible_facts.ansible_local``, where `setup` and delegate_facts put it; ``ansible_local`` is the same
    dictionary as a variable), else None. The one reader of the record: the load balancers' upstreams and
    Prometheus's targets both come from it."""
    facts = host_vars.get("ansible_facts") or {}
    local = facts.get("ansible_local") or host_vars.get("ansible_local") or {}
    return host_vars.get("webui_deployed") or local.get("qwen3vl_webui") or None


def recorded_instances(record):
    """The instance list of a record (see recorded()), or None when there is no usable record."""
    if isinstance(record, dict) and isinstance(record.get("instances"), list):
        return record["instances"]
    return None


def _int_text(value):
    """An int from an int or a string of digits (the module's type=int takes both); else the value."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _blank(value):
    return not str(value if value is not None else "").strip()


# What a module option of type bool accepts besides true and false (ansible.module_utils.parsing.convert_bool).
_BOOLEAN_TEXT = ("yes", "no", "on", "off", "true", "false", "y", "n", "t", "f", "1", "0")


def _boolean(value, where):
    if isinstance(value, bool) or value in (0, 1) or (isinstance(value, str) and value.lower() in _BOOLEAN_TEXT):
        return None
    return "%s: %s is not a boolean (true or false)" % (where, checks.show(value))


def _string(value, where):
    return None if isinstance(value, str) else "%s: %s is not a string" % (where, checks.show(value))


def _int_list(value, where):
    if isinstance(value, list) and all(checks.is_int(_int_text(x)) and _int_text(x) >= 0 for x in value):
        return None
    return "%s: must be a list of XID numbers (integers >= 0), got %s" % (where, checks.show(value))


# The qwen3vl.ha.gpu_health options webui_gpu_health_args may set, with their check (the module's
# argument_spec in plugins/modules/gpu_health.py; the role sets fail_on_unhealthy and allow_no_gpu itself).
GPU_HEALTH_ARGS = {
    "backend": lambda v, w: checks.one_of(v, w, ("auto", "nvml", "nvidia_smi")),
    "nvidia_smi_path": lambda v, w: _string(v, w) or checks.non_empty(v, w, "a command name or path"),
    "max_temperature": lambda v, w: checks.integer(_int_text(v), w, minimum=0),
    "min_free_memory_mib": lambda v, w: checks.integer(_int_text(v), w, minimum=0),
    "expected_count": lambda v, w: checks.integer(_int_text(v), w, minimum=0),
    "min_driver_version": lambda v, w: checks.matches(
        str(v) if checks.is_number(v) else v, w, _DRIVER_VERSION, "a driver version such as 550.54.15"
    ),
    "max_retired_pages": lambda v, w: checks.integer(_int_text(v), w, minimum=1),
    "xid_ignore": _int_list,
    "xid_fatal": _int_list,
    "xid_source": lambda v, w: checks.one_of(v, w, ("auto", "dmesg", "journal", "file", "none")),
    "kernel_log_path": checks.absolute_path,
}
# The qwen3vl.ha.model_checksum options webui_model_checksum_args may set (plugins/modules/model_checksum.py;
# the role sets path, manifest and fail_on_mismatch itself).
MODEL_CHECKSUM_ARGS = {
    "extra_files": lambda v, w: checks.one_of(v, w, ("ignore", "warn", "fail")),
    "exclude": lambda v, w: checks.string_list(v, w, hint="glob patterns relative to the model directory"),
    "workers": lambda v, w: checks.integer(_int_text(v), w, minimum=0),
    "cache": _boolean,
    "cache_dir": checks.absolute_path,
    "cache_max_age": lambda v, w: checks.integer(_int_text(v), w, minimum=0),
}


def _gpu_ref(value, where, errors):
    """Normalise one GPU reference to ("index", int) or ("uuid", str); None after recording an error."""
    if checks.is_int(value) and value >= 0:
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


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _check_media_domains(domains, errors):
    """webui_vllm_allowed_media_domains: host names as vLLM compares them (exactly: no scheme, port, path or *)."""
    where = "webui_vllm_allowed_media_domains"
    problem = checks.string_list(domains, where, hint="host names, e.g. [images.example.internal]")
    if problem:
        errors.append(problem)
        return
    for i, domain in enumerate(domains):
        checks.add(
            errors,
            checks.matches(
                domain,
                "%s[%d]" % (where, i),
                _HOST_NAME,
                "a host name (vLLM matches it exactly: no scheme, port, path or wildcard)",
            ),
        )


def _check_extra_args(args, where, managed, errors):
    problem = checks.string_list(args, where, hint="one argument per item")
    if problem:
        errors.append(problem)
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
        checks.add(errors, checks.unknown_keys(entry, where, INSTANCE_KEYS))
        if "gpu" not in entry:
            errors.append("%s: 'gpu' is required (a GPU index or UUID)" % where)
            continue
        out.append((where, entry))
    return out


def _gpu_entries(config, gpu_table, errors):
    """Entries from webui_gpus ("auto" = every GPU gpu_health reported; None = not read yet)."""
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
    elif gpu_table is None:
        return []
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
    problem = checks.port(value, where)
    if problem:
        errors.append(problem)
        return None
    return value


def _passthrough_errors(args, where, specs):
    """Unknown keys and bad values in a mapping of module options the role passes through."""
    problem = checks.unknown_keys(args, where, tuple(specs))
    if problem and not isinstance(args, dict):
        return [problem]
    errors = checks.add([], problem)
    for key in sorted((k for k in args if k in specs), key=str):
        checks.add(errors, specs[key](args[key], "%s.%s" % (where, key)))
    return errors


def _gpu_health_args_errors(args):
    where = "webui_gpu_health_args"
    errors = _passthrough_errors(args, where, GPU_HEALTH_ARGS)
    if isinstance(args, dict):
        source = args.get("xid_source", "auto")
        if source == "file" and not args.get("kernel_log_path"):
            errors.append("%s.xid_source: file needs %s.kernel_log_path" % (where, where))
        if args.get("kernel_log_path") and source != "file":
            errors.append("%s.kernel_log_path: only read with xid_source: file (xid_source is %s)" % (where, source))
    return errors


def settings_errors(config):
    """Messages for the settings that do not depend on the host (argument_specs has checked the types).

    ``config`` keys: vllm_api_key_set (bool: the key is not empty; the key itself stays out of the plan),
    vllm_allow_no_api_key, ui_image, image_source, image_archives, vllm_ipc_mode, vllm_shm_size,
    vllm_gpu_memory_utilization, vllm_shutdown_timeout, ui_health_path, gate_dir, gate_mounts, gate_interval,
    gpu_watch_interval, gpu_watch_fall, gpu_watch_rise, gpu_health_args, model_checksum_args, model_manifest,
    model_manifest_src. A missing key is not checked.
    """
    errors = []
    if "vllm_api_key_set" in config and not config["vllm_api_key_set"] and not config.get("vllm_allow_no_api_key"):
        errors.append("webui_vllm_api_key: empty; set it (from Ansible Vault) or set webui_vllm_allow_no_api_key: true")
    if "ui_image" in config and _blank(config["ui_image"]):
        errors.append(
            "webui_ui_image: no WebUI image set (there is no public default); "
            "e.g. registry.example.internal/qwen3vl/webui:1.4.2"
        )
    if config.get("image_source") == "archive" and not config.get("image_archives"):
        errors.append("webui_image_archives: empty, but webui_image_source is archive")
    if config.get("vllm_ipc_mode", "host") != "host" and _blank(config.get("vllm_shm_size")):
        errors.append('webui_vllm_shm_size: set it (e.g. "16g") when webui_vllm_ipc_mode is not "host"')
    if "vllm_gpu_memory_utilization" in config:
        checks.add(
            errors,
            checks.number(
                config["vllm_gpu_memory_utilization"],
                "webui_vllm_gpu_memory_utilization",
                minimum=0,
                maximum=1,
                exclusive_minimum=True,
            ),
        )
    if "vllm_shutdown_timeout" in config:
        checks.add(errors, checks.integer(config["vllm_shutdown_timeout"], "webui_vllm_shutdown_timeout", minimum=0))
    if "ui_health_path" in config:
        checks.add(
            errors,
            checks.matches(config["ui_health_path"], "webui_ui_health_path", r"^/\S*$", "a URL path starting with /"),
        )
    if "gate_dir" in config:
        checks.add(errors, checks.absolute_path(config["gate_dir"], "webui_gate_dir"))
    if "gate_mounts" in config:
        mounts = config["gate_mounts"]
        if not isinstance(mounts, list):
            errors.append("webui_gate_mounts: %s is not a list of mount points" % checks.show(mounts))
        else:
            for index, mount in enumerate(mounts):
                checks.add(errors, checks.absolute_path(mount, "webui_gate_mounts[%d]" % index))
    if "gate_interval" in config:
        checks.add(errors, checks.integer(config["gate_interval"], "webui_gate_interval", minimum=1, maximum=3600))
    for key, maximum in (("gpu_watch_interval", 3600), ("gpu_watch_fall", 100), ("gpu_watch_rise", 100)):
        if key in config:
            checks.add(errors, checks.integer(config[key], "webui_" + key, minimum=1, maximum=maximum))
    if "gpu_health_args" in config:
        errors += _gpu_health_args_errors(config["gpu_health_args"])
    if "model_checksum_args" in config:
        errors += _passthrough_errors(config["model_checksum_args"], "webui_model_checksum_args", MODEL_CHECKSUM_ARGS)
    if not _blank(config.get("model_manifest")):
        checks.add(errors, checks.absolute_path(config["model_manifest"], "webui_model_manifest"))
        if not _blank(config.get("model_manifest_src")):
            errors.append(
                "webui_model_manifest_src: set together with webui_model_manifest; give one (the controller's file "
                "is copied to the host and used for every instance)"
            )
    return errors


def settings_warnings(config):
    """Settings that work but are probably not meant."""
    warnings = []
    if config.get("vllm_api_key_set") is False and config.get("vllm_allow_no_api_key"):
        warnings.append(
            "webui_vllm_api_key: empty and webui_vllm_allow_no_api_key is true: "
            "anyone who reaches a vLLM port may use the model"
        )
    if config.get("gpu_health_args") and not config.get("gpu_check", True):
        warnings.append("webui_gpu_health_args: not used, because webui_gpu_check is false")
    if config.get("model_checksum_args") and not config.get("model_verify", True):
        warnings.append("webui_model_checksum_args: not used, because webui_model_verify is false")
    return warnings


def plan(config, gpu_facts=None, checksums=None, gpu_result=None):
    """Check every setting, resolve the instances and, given the host's check results, gate them.

    ``config`` keys (the role's variables without the ``webui_`` prefix): gpus, instances, gpu_check,
    device_requests, vllm_port_base, ui_port_base, model_dir, vllm_extra_args, ui_extra_args, vllm_env,
    vllm_name_prefix, ui_name_prefix, model_mount_root, model_verify, and the keys of settings_errors().
    ``gpu_facts`` is ansible_facts.qwen3vl_gpu_health; None while the GPU check has not run yet: GPU
    references are then checked for their form only, and "auto" resolves to no instance yet.
    ``checksums`` and ``gpu_result``: see gate(); when either is given, every instance gets ``blocked``.

    Returns {"instances": [...], "errors": [...], "warnings": [...]}; instances is empty whenever errors is not.
    """
    errors = settings_errors(config)
    gpu_check = bool(config.get("gpu_check", True))
    gpu_table = (_gpu_table(gpu_facts) if gpu_facts is not None else None) if gpu_check else {}
    uuid_to_index = {u: i for i, u in (gpu_table or {}).items() if u}

    _check_extra_args(config.get("vllm_extra_args", []), "webui_vllm_extra_args", MANAGED_VLLM_FLAGS, errors)
    _check_extra_args(config.get("ui_extra_args", []), "webui_ui_extra_args", (), errors)
    _check_media_domains(config.get("vllm_allowed_media_domains", []), errors)
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
        uuid = (gpu_table or {}).get(value) if kind == "index" else value
        if gpu_check and gpu_table is not None:
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
        problem = checks.absolute_path(model_dir, model_dir_var, what="an absolute path to the model directory")
        if problem:
            errors.append(problem)
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
    if errors:
        instances = []
    elif checksums is not None or gpu_result is not None:
        instances = gate(instances, checksums, gpu_result)
    return {"instances": instances, "errors": errors, "warnings": settings_warnings(config)}


def _gpu_verdicts(gpu_result):
    """index -> (status, reasons) from a qwen3vl.ha.gpu_health result."""
    verdicts = {}
    for gpu in (gpu_result or {}).get("gpus") or []:
        if isinstance(gpu, dict) and gpu.get("index") is not None:
            verdicts[int(gpu["index"])] = (gpu.get("status") or "unknown", list(gpu.get("reasons") or []))
    return verdicts


def gate(instances, checksums=None, gpu_result=None, mounts=None):
    """Add ``blocked`` (the reasons, or "") and ``blocked_by`` (a list of "mount", "checksum", "gpu") to each
    planned instance.

    ``checksums``: model dir -> {"ok": bool, "message": str}, or the list of registered
    qwen3vl.ha.model_checksum loop results (each with ``item`` = the directory, ``ok`` and ``msg``);
    None or a missing directory = not verified.
    ``gpu_result``: the registered qwen3vl.ha.gpu_health result (None = no GPU check). A GPU whose status
    is "unhealthy" blocks its instance; "warning" (throttling, a benign XID) does not.
    ``mounts``: {"mounts": mount points the host must have mounted, "mountinfo": the host's
    /proc/self/mountinfo, "data_dir": the WebUI data directory}; an instance whose model or data directory
    lies under one that is not mounted is blocked (instance_gate.missing_mounts, the boot gate's own check).
    """
    verdicts = _gpu_verdicts(gpu_result) if gpu_result is not None else None
    if isinstance(checksums, list):
        checksums = {
            r["item"]: {"ok": r.get("ok") is True and not r.get("failed"), "message": r.get("msg")}
            for r in checksums
            if isinstance(r, dict) and "item" in r and not r.get("skipped")
        }
    table = instance_gate.parse_mountinfo(mounts.get("mountinfo") or "") if mounts else []
    out = []
    for instance in instances:
        reasons = {}
        if mounts:
            paths = [instance["model_dir"], mounts.get("data_dir") or ""]
            missing = instance_gate.missing_mounts(paths, mounts.get("mounts") or [], table)
            if missing:
                reasons["mount"] = "not mounted: %s (needed by its %s)" % (
                    ", ".join(missing),
                    _needed_by(paths, missing),
                )
        check = (checksums or {}).get(instance["model_dir"])
        if check is not None and not check.get("ok"):
            reasons["checksum"] = "model checksum failed for %s: %s" % (
                instance["model_dir"],
                check.get("message") or "mismatch",
            )
        if verdicts is not None:
            status, why = verdicts.get(instance.get("gpu_index"), ("missing", ["gpu_health did not report it"]))
            if status not in ("healthy", "warning"):
                reasons["gpu"] = "GPU %s is %s: %s" % (instance["gpu"], status, "; ".join(why) or "no reason given")
        out.append(dict(instance, blocked="; ".join(reasons.values()), blocked_by=list(reasons)))
    return out


def _needed_by(paths, missing):
    model_dir, data_dir = paths
    found = [
        name
        for name, path in (("model directory", model_dir), ("WebUI data directory", data_dir))
        if path and instance_gate.mounts_for([path], missing)
    ]
    return " and ".join(found)


def gate_config(instances, settings):
    """The boot gate's configuration (instance_gate.load_config reads it) for the gated instances.

    ``settings``: gate_dir, textfile_dir, interval, mounts, checksum (webui_model_checksum_args), manifest,
    verify, data_dir. An instance blocked by its GPU is left out: the boot gate does not check GPUs, so it
    must not start one the role held back. One blocked by a mount or by its weights stays in: the gate checks
    those again, and starts it once they pass.
    """
    gate_dir = settings["gate_dir"]
    return {
        "gate_dir": gate_dir,
        "state_file": posixpath.join(gate_dir, "state.json"),
        "textfile": settings.get("textfile_dir") or "",
        "interval": settings.get("interval", 5),
        "mounts": list(settings.get("mounts") or []),
        "checksum": dict(settings.get("checksum") or {}),
        "instances": [
            {
                "id": str(instance["id"]),
                "model_dir": instance["model_dir"],
                "manifest": settings.get("manifest") or "",
                "verify": bool(settings.get("verify", True)),
                "data_dir": settings.get("data_dir") or "",
                "containers": [instance["vllm_name"], instance["ui_name"]],
            }
            for instance in instances
            if "gpu" not in instance.get("blocked_by", [])
        ],
    }


GPU_WATCH_HEALTH_KEYS = (
    "backend",
    "nvidia_smi_path",
    "xid_source",
    "kernel_log_path",
    "max_temperature",
    "min_driver_version",
    "max_retired_pages",
    "xid_ignore",
    "xid_fatal",
)


def gpu_watch_config(instances, settings):
    """The GPU watch's configuration (gpu_watch.load_config reads it) for every planned instance.

    ``settings``: gate_dir, textfile_dir, interval, fall, rise, stop_timeout and gpu_health_args (the role's
    webui_gpu_health_args; min_free_memory_mib and expected_count are deploy-time rules and are left out).
    An instance the role blocked for its GPU is watched too: it stays fenced until its GPU is healthy.
    """
    gate_dir = settings["gate_dir"]
    args = dict(settings.get("gpu_health_args") or {})
    return {
        "gate_dir": gate_dir,
        "state_file": posixpath.join(gate_dir, "gpu-watch.json"),
        "drill_file": posixpath.join(gate_dir, "drill-xid.log"),
        "textfile": settings.get("textfile_dir") or "",
        "interval": settings.get("interval", 5),
        "fall": int(settings.get("fall", 2)),
        "rise": int(settings.get("rise", 3)),
        "stop_timeout": int(settings.get("stop_timeout", 10)),
        "health": {key: args[key] for key in GPU_WATCH_HEALTH_KEYS if args.get(key) is not None},
        "instances": [
            {
                "id": str(instance["id"]),
                "gpu_index": instance.get("gpu_index"),
                "gpu_uuid": instance.get("gpu_uuid") or "",
                "containers": [instance["vllm_name"], instance["ui_name"]],
            }
            for instance in instances
        ],
    }
