"""dpkg_facts through the real ansible CLI, against a dpkg database written here (--admindir) and the
controller's own one."""

import shutil
import subprocess

import pytest
from module_runner import run_module

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query (Debian or Ubuntu)")

STATUS = """Package: nginx-light
Status: install ok installed
Architecture: amd64
Version: 1.22.1-9

Package: keepalived
Status: deinstall ok config-files
Architecture: amd64
Version: 1:2.2.7-1

Package: logrotate
Status: install ok half-configured
Architecture: amd64
Version: 3.21.0-1

"""


@pytest.fixture
def admindir(tmp_path):
    (tmp_path / "info").mkdir()
    (tmp_path / "updates").mkdir()
    (tmp_path / "status").write_text(STATUS)
    return tmp_path


def test_only_fully_installed_packages_become_facts(admindir):
    res = run_module("qwen3vl.ha.dpkg_facts", {"admindir": str(admindir)})
    assert res["changed"] is False
    assert res["ansible_facts"]["packages"] == {
        "nginx-light": [{"name": "nginx-light", "version": "1.22.1-9", "arch": "amd64", "source": "apt"}]
    }


def test_check_mode_reads_the_same(admindir):
    res = run_module("qwen3vl.ha.dpkg_facts", {"admindir": str(admindir)}, check=True)
    assert list(res["ansible_facts"]["packages"]) == ["nginx-light"]


def test_agrees_with_dpkg_on_this_machine():
    res = run_module("qwen3vl.ha.dpkg_facts", {"admindir": "/var/lib/dpkg"})
    listed = subprocess.run(
        ["dpkg-query", "--show", "--showformat", "${Package} ${db:Status-Abbrev}\\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    installed = {line.split()[0] for line in listed if line.endswith(" ii ")}
    assert installed and installed <= set(res["ansible_facts"]["packages"])


def test_a_missing_database_fails_rather_than_reporting_nothing_installed(tmp_path):
    res = run_module("qwen3vl.ha.dpkg_facts", {"admindir": str(tmp_path / "none")})
    assert res.get("failed") is True
    assert res["msg"] == f"no dpkg database in {tmp_path / 'none'} (its status file is missing)"
