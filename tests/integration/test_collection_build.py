"""The built collection tarball installs into a clean path where roles, modules and filters
resolve by FQCN, without this checkout on the collections path."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(cmd, cwd, env, timeout=300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collection")
    # A clean environment: no ansible.cfg from the checkout, only the temporary collections path
    # (the dependencies come from the ansible package's bundled collections in site-packages).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(tmp / "none.cfg"), ANSIBLE_COLLECTIONS_PATH=str(tmp / "path"), HOME=str(tmp))
    out = run(["ansible-galaxy", "collection", "build", "--force", "--output-path", str(tmp), str(REPO)], tmp, env)
    tarballs = list(tmp.glob("qwen3vl-ha-*.tar.gz"))
    assert len(tarballs) == 1, out
    run(["ansible-galaxy", "collection", "install", "--no-deps", "-p", str(tmp / "path"), str(tarballs[0])], tmp, env)
    return tmp, env, tarballs[0]


def test_tarball_leaves_out_test_and_lab_artefacts(installed):
    tarball = installed[2]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "roles/docker_engine/tasks/main.yml" in names
    assert "plugins/modules/docker_daemon_json.py" in names
    for prefix in ("tests/", "molecule/", "tools/", ".venv/", ".cache/", ".ci/"):
        assert not [n for n in names if n.startswith(prefix)], f"{prefix} is in the tarball"


def test_installed_where_expected(installed):
    tmp = installed[0]
    manifest = json.loads((tmp / "path/ansible_collections/qwen3vl/ha/MANIFEST.json").read_text())
    assert manifest["collection_info"]["namespace"] == "qwen3vl"
    assert manifest["collection_info"]["name"] == "ha"
    assert "community.docker" in manifest["collection_info"]["dependencies"]


@pytest.mark.parametrize(
    "kind, fqcn, expect",
    [
        ("role", "qwen3vl.ha.docker_engine", "docker_engine_daemon_options"),
        ("module", "qwen3vl.ha.docker_daemon_json", "needs_restart"),
        ("filter", "qwen3vl.ha.docker_daemon_errors", "where"),
    ],
)
def test_ansible_doc_resolves_fqcn(installed, kind, fqcn, expect):
    tmp, env = installed[:2]
    out = run(["ansible-doc", "-t", kind, fqcn], tmp, env)
    assert expect in out


def test_playbook_runs_module_and_filter_by_fqcn(installed):
    tmp, env = installed[:2]
    target = tmp / "daemon.json"
    playbook = tmp / "fqcn.yml"
    playbook.write_text(
        f"""
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Filter by FQCN
      ansible.builtin.assert:
        that: "({{'hosts': []}} | qwen3vl.ha.docker_daemon_errors('v')) | length == 1"
    - name: Module by FQCN
      qwen3vl.ha.docker_daemon_json:
        path: {target}
        settings: {{live-restore: true}}
"""
    )
    out = run(
        ["ansible-playbook", "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
        tmp,
        env,
    )
    assert "failed=0" in out
    assert json.loads(target.read_text()) == {"live-restore": True}


def test_site_playbook_parses_against_both_inventories():
    for inventory in ("inventories/prod", "inventories/lab"):
        out = run(["ansible-playbook", "site.yml", "-i", inventory, "--list-hosts"], REPO, dict(os.environ))
        assert "GPU hosts - container engine" in out
        assert ("gpu1.example.internal" if inventory.endswith("prod") else "gpu1") in out
