"""playbooks/drills/files/rotation_watch.py, the watcher the drills start on each load balancer: run as the drill
runs it (python3 -c <source> STATE KEY UPSTREAMS SECONDS) against a state file that a thread rewrites as the
checker does (atomic replace), with the checker's own `since` times."""

import json
import os
import subprocess
import sys
import threading
import time
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


def test_out_and_back_of_both_upstreams_are_timed_by_the_checkers_since(tmp_path):
    state = tmp_path / "state.json"
    up = [server("gpu1@0", "webui", True, 1.0), server("gpu1@0", "api", True, 1.0), server("gpu2@0", "api", True, 1.0)]
    write_state(state, up)
    watch = run_watch(state, "gpu1@0", "webui,api", 20)
    steps = [
        # api out first, webui later: the instance is out when the last of them is
        [server("gpu1@0", "webui", True, 1.0), server("gpu1@0", "api", False, 10.0), up[2]],
        [
            server("gpu1@0", "webui", False, 10.5),
            server("gpu1@0", "api", False, 10.0),
            server("gpu2@0", "api", False, 11.0),
        ],
        [server("gpu1@0", "webui", True, 14.0), server("gpu1@0", "api", False, 10.0), up[2]],
        [server("gpu1@0", "webui", True, 14.0), server("gpu1@0", "api", True, 14.2), up[2]],
    ]

    def feed():
        for servers in steps:
            time.sleep(0.3)
            write_state(state, servers)

    threading.Thread(target=feed, daemon=True).start()
    started = time.monotonic()
    out = watch.communicate(timeout=30)[0]
    result = json.loads(out)
    assert result["out_since"] == 10.5 and result["back_since"] == 14.2
    assert [c["since"] for c in result["changes"]] == [10.0, 10.5, 14.0, 14.2]
    assert time.monotonic() - started < 15, "it should end once both came back, not at its 20 s limit"


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
