"""_common: platform check, apt lists on a bare host (once per run, in check mode too), the
check-mode-on-a-new-host flag, and the guard that keeps the role internal."""

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO.parent / "shared"))
from playbook_run import recap_changed, run_converge  # noqa: E402

converge = functools.partial(run_converge, SCENARIO)
HOST = "qwen3vl-mol-common"
FETCH_TASK = "TASK [qwen3vl.ha._common : Fetch apt's package lists on a host that has none]"
FIND_TASK = "TASK [qwen3vl.ha._common : Find out whether apt has package lists]"
INSTALL_TASK = "TASK [qwen3vl.ha._common : Install the distribution packages of probe]"
INSTALL_INCLUDE = "TASK [qwen3vl.ha._common : Install what is missing]"
PLATFORM_INCLUDE = "TASK [qwen3vl.ha._common : Check the platform (once per host and run)]"
REFUSE_TASK = "TASK [qwen3vl.ha._common : Refuse an unsupported platform]"


def flat(text):
    """The output with its line wrapping undone (the yaml callback folds long messages)."""
    return " ".join(text.split())


def results(out, task):
    """The first status word (ok, changed, skipping, fatal, included) of each run of `task` in `out`."""
    sections = [part.split("TASK [")[0] for part in out.split(task + " *")[1:]]
    return [re.search(r"^(ok|changed|skipping|fatal|included)", section, re.M).group(1) for section in sections]


def recorded(host):
    return json.loads(host.file("/var/tmp/common-probe.json").content_string)


def lists(host):
    return host.run("find /var/lib/apt/lists -name '*_Packages*' | wc -l").stdout.strip()


def test_packages_installed_and_not_flagged(host):
    assert host.package("hello").is_installed
    assert recorded(host) == {"new_in_check": {"probe": False}, "apt_lists_ready": True}


def test_check_mode_on_a_bare_host_fetches_lists_and_flags_the_role(host):
    host.run_expect([0], "rm -rf /var/lib/apt/lists/* && apt-get clean")
    assert lists(host) == "0"
    _rc, out = converge({"probe_packages": ["sl"]}, check=True)
    # the lists were fetched once, although apt_lists ran twice in the run, and nothing was installed
    assert int(lists(host)) > 0
    assert results(out, INSTALL_TASK) == ["changed"]
    assert results(out, FIND_TASK) == ["ok", "skipping"]
    assert results(out, FETCH_TASK) == ["ok", "skipping"]
    assert not host.package("sl").is_installed
    assert recorded(host)["new_in_check"] == {"probe": True}
    assert recap_changed(out, HOST) == 1  # the package that would be installed; the lists are no change


def test_host_with_lists_is_not_refreshed_and_nothing_changes(host):
    rc, out = converge()
    assert rc == 0
    # nothing missing: the install step is one skipped include (no apt call, no look at the lists); the
    # probe's own second ask for the lists looks once
    assert results(out, INSTALL_INCLUDE) == ["skipping"]
    assert results(out, INSTALL_TASK) == []
    assert results(out, FIND_TASK) == ["ok"]
    assert results(out, FETCH_TASK) == ["skipping"]
    assert recap_changed(out, HOST) == 0


def test_the_platform_is_checked_once_per_host_and_run(host):
    rc, out = converge()
    assert rc == 0
    # the probe asks twice, as two roles on one host do: the second ask is one skipped include
    assert results(out, PLATFORM_INCLUDE) == ["included", "skipping"]
    assert results(out, REFUSE_TASK) == ["ok"]


def test_unsupported_platform_is_refused_before_anything_changes(host):
    rc, out = converge({"_common_platforms": {"Debian": ["11"]}, "probe_packages": ["sl"]}, expect_rc=2)
    assert f"probe on {HOST}: Debian 12 (Debian family) is not supported; supported: Debian 11." in flat(out)
    assert "qwen3vl_allow_unsupported_platform" in out
    assert "Install the distribution packages of probe" not in out
    assert not host.package("sl").is_installed


def test_unsupported_platform_can_be_allowed_with_a_warning(host):
    _rc, out = converge(
        {"_common_platforms": {"Ubuntu": ["24.04"]}, "qwen3vl_allow_unsupported_platform": True}, check=True
    )
    assert f"WARNING probe on {HOST}: Debian 12 (Debian family) is not supported; supported: Ubuntu 24.04" in flat(out)


def test_the_internal_role_refuses_a_play(host):
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "direct.yml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert "qwen3vl.ha._common is internal" in flat(proc.stdout + proc.stderr)
