"""playbooks/drills/files/rotation_watch.py, the watcher the drills start on each load balancer: its loop fed
the checker's states one read at a time (a clock that moves only when it sleeps, so a busy machine cannot make
it miss a state), and the file as the drill runs it (python3 -c <source> STATE KEY UPSTREAMS SECONDS)."""

import json
import os
import subprocess
import sys
from pathlib import Path

SOURCE = (Path(__file__).resolve().parents[3] / "playbooks" / "drills" / "files" / "rotation_watch.py").read_text()


def write_state(path, servers):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"servers": servers, "failing_open": {}}))
    os.replace(tmp, path)


def server(key, upstream, in_rotation, since):
    return {
        "key": key,
        "upstream": upstream,
        "in_rotation": in_rotation,
        "since": since,
        "reason": "ok" if in_rotation else "down",
    }


def run_watch(path, key, upstreams, seconds):
    return subprocess.Popen(
        [sys.executable, "-c", SOURCE, str(path), key, upstreams, str(seconds)], stdout=subprocess.PIPE, text=True
    )


def load_watcher():
    namespace = {"__name__": "rotation_watch"}
    exec(compile(SOURCE, "rotation_watch.py", "exec"), namespace)  # the very file the drills run
    return namespace


class Clock:
    """A clock that moves only when the watcher sleeps: each read sees the next state, however busy the machine."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def reads(watcher, states, key, upstreams):
    """A read() that gives the watcher each state in turn (None: the file being replaced), then the last one."""
    pending = iter(states)
    last = []

    def read():
        state = next(pending, last[-1] if last else None)
        if state is None:
            return None
        last.append(state)
        return watcher["select"](state, key, upstreams)

    return read


def test_out_and_back_of_both_upstreams_are_timed_by_the_checkers_since():
    watcher = load_watcher()
    up = [server("gpu1@0", "webui", True, 1.0), server("gpu1@0", "api", True, 1.0), server("gpu2@0", "api", True, 1.0)]
    states = [
        up,
        # api out first, webui later: the instance is out when the last of them is
        [server("gpu1@0", "webui", True, 1.0), server("gpu1@0", "api", False, 10.0), up[2]],
        None,  # the file being replaced
        [
            server("gpu1@0", "webui", False, 10.5),
            server("gpu1@0", "api", False, 10.0),
            server("gpu2@0", "api", False, 11.0),
        ],
        [server("gpu1@0", "webui", True, 14.0), server("gpu1@0", "api", False, 10.0), up[2]],
        [server("gpu1@0", "webui", True, 14.0), server("gpu1@0", "api", True, 14.2), up[2]],
    ]
    clock = Clock()
    read = reads(watcher, states, "gpu1@0", ["webui", "api"])
    result = watcher["watch"](read, ["webui", "api"], 20, clock=clock, sleep=clock.sleep)
    assert result["out_since"] == 10.5 and result["back_since"] == 14.2
    assert [c["since"] for c in result["changes"]] == [10.0, 10.5, 14.0, 14.2]
    # no checker `applied` here: it waits 10 s for nginx to take the verdicts, then ends, not at its 20 s limit
    assert result["out_applied"] is None and result["back_applied"] is None
    assert 10 < clock.now < 11


def test_applied_times_are_the_first_out_and_the_first_back_that_nginx_took():
    watcher = load_watcher()

    def applied(in_rotation, since, at):
        return dict(server("gpu1@0", "api", in_rotation, since), applied=at)

    states = [
        [applied(True, 1.0, 1.1)],
        [applied(False, 5.0, None)],
        [applied(False, 5.0, 5.3)],
        [applied(False, 5.0, 5.9)],  # a later reload of the same verdict: not when it was first served
        [applied(True, 9.0, None)],
        [applied(True, 9.0, 9.2)],
    ]
    clock = Clock()
    result = watcher["watch"](reads(watcher, states, "gpu1@0", ["api"]), ["api"], 20, clock=clock, sleep=clock.sleep)
    assert (result["out_since"], result["out_applied"]) == (5.0, 5.3)
    assert (result["back_since"], result["back_applied"]) == (9.0, 9.2)
    assert clock.now < 1, "it ends as soon as nginx took the instance back"


def test_the_file_the_drills_give_it_is_read_as_the_checker_writes_it(tmp_path):
    """As the drill runs it (python3 -c <source> STATE KEY UPSTREAMS SECONDS): the checker's state.json, another
    instance's entries ignored. The states are in place before it starts, so no timing is involved."""
    state = tmp_path / "state.json"
    write_state(state, [server("gpu1@0", "api", False, 3.0), server("gpu2@0", "api", True, 1.0)])
    out = run_watch(state, "gpu1@0", "api", 1).communicate(timeout=30)[0]
    assert json.loads(out)["changes"] == []  # already out when it started: no change seen
    assert load_watcher()["servers"](state, "gpu1@0", ["api"]) == {"api": server("gpu1@0", "api", False, 3.0)}


def test_nothing_seen_gives_nulls_after_its_limit(tmp_path):
    state = tmp_path / "state.json"
    write_state(state, [server("gpu1@0", "webui", True, 1.0)])
    out = run_watch(state, "gpu1@0", "webui", 1).communicate(timeout=30)[0]
    assert json.loads(out) == {
        "out_since": None,
        "out_applied": None,
        "back_since": None,
        "back_applied": None,
        "changes": [],
    }
