"""site.yml with `--tags <role>` (the tags each role README documents) runs that role's work in every play that
uses it: `ansible-playbook --list-tasks` on the lab inventory, the tasks Ansible would run, before any host."""

import functools
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def plays(tags):
    """[(play name, [task names])] that `site.yml --list-tasks --tags TAGS` prints."""
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", "inventories/lab", "site.yml", "--list-tasks"]
        + ["--tags", tags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = []
    for block in re.split(r"^\s*play #\d+ ", proc.stdout, flags=re.M)[1:]:
        name = re.match(r"\(\S+\): (.*?)\tTAGS", block).group(1)
        tasks = re.findall(r"^\s{6}(.*?)\tTAGS: \[([^\]]*)\]", block, re.M)
        found.append((name, [task for task, tags in tasks if "always" not in tags.split(", ")]))
    return tuple(found)


def roles_by_play():
    """{play name: roles it imports}, read from site.yml's text (roles: and import_role:)."""
    text = (REPO / "playbooks" / "site.yml").read_text()
    out = {}
    for block in re.split(r"^- name: ", text, flags=re.M)[1:]:
        name = block.splitlines()[0].strip()
        out[name] = sorted(set(re.findall(r"qwen3vl\.ha\.(\w+)", block)))
    return out


@pytest.mark.parametrize("play, role", [(p, r) for p, roles in roles_by_play().items() for r in roles])
def test_a_role_tag_runs_that_role_in_every_play_that_uses_it(play, role):
    listed = dict(plays(role))
    assert listed.get(play), "--tags %s runs nothing of %s in the play '%s'" % (role, role, play)
    assert any(task.startswith("qwen3vl.ha.%s : " % role) for task in listed[play]), listed[play]


def test_the_webui_rollout_still_ends_hosts_without_a_change_when_tags_are_given():
    listed = dict(plays("webui"))
    rollout = next(
        tasks for name, tasks in listed.items() if name.startswith("GPU hosts - model instances, rolled out")
    )
    assert rollout[0] == "A host whose plan found nothing to change is done", rollout
