"""Watch a load balancer's checker state for one instance during a drill; print what changed, as JSON.

    python3 rotation_watch.py STATE_FILE KEY UPSTREAMS SECONDS

Reads STATE_FILE (qwen3vl-upstream-check's state.json) every 20 ms and notes each change of
``in_rotation`` of the servers whose ``key`` is KEY (e.g. gpu1@0) and whose ``upstream`` is in the
comma-separated UPSTREAMS, with the checker's own ``since`` time. Ends when every one of them has gone
out of rotation and come back in (and nginx was seen serving that), or after SECONDS. Prints
{"out_since", "out_applied", "back_since", "back_applied", "changes"}: out_since is when the last of them went
out, back_since when the last came back (null if not seen); *_applied when nginx served those verdicts
(the checker's ``applied``: its reload taken; null when the checker did not see it).
Run by the drill playbooks (async) on each load balancer; standard library only.
"""

import json
import sys
import time


def select(servers, key, upstreams):
    """{upstream: server} of the checker's servers that are instance KEY in one of UPSTREAMS."""
    return {s["upstream"]: s for s in servers if s["key"] == key and s["upstream"] in upstreams}


def servers(path, key, upstreams):
    try:
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return None  # being replaced: read again
    return select(state["servers"], key, upstreams)


def watch(read, upstreams, seconds, clock=time.monotonic, sleep=time.sleep):
    """What read() (the servers of the instance, or None while the file is being replaced) showed over time."""
    deadline = clock() + seconds
    seen = read() or {}
    went_out, came_back, changes = {}, {}, []
    out_applied, back_applied = {}, {}
    all_back = None
    while clock() < deadline:
        now = read()
        for upstream, server in (now or {}).items():
            before = seen.get(upstream)
            if before is not None and before["in_rotation"] != server["in_rotation"]:
                changes.append(
                    {
                        "upstream": upstream,
                        "in_rotation": server["in_rotation"],
                        "since": server["since"],
                        "reason": server["reason"],
                    }
                )
                if server["in_rotation"]:
                    if upstream in went_out:
                        came_back[upstream] = server["since"]
                else:
                    went_out.setdefault(upstream, server["since"])
            seen[upstream] = server
            applied = server.get("applied")
            if applied is not None:  # the verdict nginx took: the first out, then the first back in after it
                if not server["in_rotation"] and upstream in went_out and upstream not in came_back:
                    out_applied.setdefault(upstream, applied)
                elif server["in_rotation"] and upstream in came_back:
                    back_applied.setdefault(upstream, applied)
        if now and len(came_back) == len(upstreams):
            # then wait for nginx to take it back, as long as the checker watches for that
            all_back = all_back or clock()
            if len(back_applied) == len(upstreams) or clock() - all_back > 10:
                break
        sleep(0.02)
    return {
        "out_since": max(went_out.values()) if len(went_out) == len(upstreams) else None,
        "out_applied": max(out_applied.values()) if len(out_applied) == len(upstreams) else None,
        "back_since": max(came_back.values()) if len(came_back) == len(upstreams) else None,
        "back_applied": max(back_applied.values()) if len(back_applied) == len(upstreams) else None,
        "changes": changes,
    }


def main(path, key, upstreams, seconds):
    print(json.dumps(watch(lambda: servers(path, key, upstreams), upstreams, seconds)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]))
