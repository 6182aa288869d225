# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the GPUs and the kernel log on a host: the steps the module and the GPU watch share.

The host is reached only through what the caller hands in:

- ``run(argv) -> (rc, stdout, stderr)`` runs a program (AnsibleModule.run_command, or subprocess);
- ``which(name) -> path or None`` finds a program (AnsibleModule.get_bin_path, or shutil.which);
- ``nvml`` is the imported pynvml module, or None when it is not installed.
"""

from __future__ import annotations

import os

from .common import GpuHealthError, NoDriverError
from .nvidia_smi import collect_smi
from .nvml import NVML_ERROR_DRIVER_NOT_LOADED, NVML_ERROR_LIBRARY_NOT_FOUND, collect_nvml

BACKENDS = ("auto", "nvml", "nvidia_smi")
XID_SOURCES = ("auto", "dmesg", "journal", "file", "none")


def find_program(path, which):
    """A program given as a path (must be an executable file) or as a name looked up with ``which``."""
    if "/" in path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return which(path)


def read_gpus(backend, nvidia_smi_path, run, which, nvml=None):
    """(backend used, collected) from NVML or nvidia-smi.

    Raises NoDriverError when this host has no NVIDIA driver, GpuHealthError when the GPUs cannot be read
    for another reason. ``backend="nvml"`` without pynvml is the caller's error to report (it is checked
    before this is called).
    """
    tried = []
    no_driver = True
    if backend in ("auto", "nvml"):
        if nvml is None:
            tried.append("NVML: the nvidia-ml-py package (import pynvml) is not installed")
        else:
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                tried.append("NVML: nvmlInit failed: %s" % exc)
                no_driver = getattr(exc, "value", None) in (NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED)
            else:
                try:
                    return "nvml", collect_nvml(nvml)
                finally:
                    try:
                        nvml.nvmlShutdown()
                    except nvml.NVMLError:
                        pass  # the readings are in; a failing shutdown changes nothing
    if backend in ("auto", "nvidia_smi"):
        program = find_program(nvidia_smi_path, which)
        if program is None:
            tried.append("nvidia-smi: %s not found" % nvidia_smi_path)
        else:
            try:
                return "nvidia_smi", collect_smi(run, program)
            except NoDriverError as exc:
                tried.append(str(exc))
    message = "; ".join(tried)
    if no_driver:
        raise NoDriverError("no NVIDIA driver found on this host (tried %s)" % message)
    raise GpuHealthError("could not read the GPUs (tried %s)" % message)


def read_kernel_log(source, kernel_log_path, run, which):
    """(text, source used, problem) of the kernel log for XID lines.

    ``source="none"`` gives ("", "none", None). When the log cannot be read: with ``auto`` the XID check is
    skipped, ("", "none", why); with any other source GpuHealthError is raised.
    """
    if source == "none":
        return "", "none", None
    if source == "file":
        try:
            with open(kernel_log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read(), "file", None
        except OSError as exc:
            raise GpuHealthError(
                "kernel_log_path: cannot read %s: %s" % (kernel_log_path, exc.strerror or exc)
            ) from exc
    tried = []
    commands = []
    if source in ("auto", "dmesg"):
        commands.append(("dmesg", "dmesg", []))
    if source in ("auto", "journal"):
        commands.append(("journal", "journalctl", ["-k", "-b", "--no-pager"]))
    for name, program, args in commands:
        binary = which(program)
        if binary is None:
            tried.append("%s not found" % program)
            continue
        rc, out, err = run([binary] + args)
        if rc == 0:
            return out, name, None
        tried.append("%s failed: %s" % (program, (err or out).strip() or "rc %d" % rc))
    if source == "auto":
        return "", "none", "the kernel log could not be read (%s)" % "; ".join(tried)
    raise GpuHealthError("xid_source=%s: the kernel log could not be read (%s)" % (source, "; ".join(tried)))
