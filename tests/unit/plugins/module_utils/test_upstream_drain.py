"""qwen3vl-upstream-check's drain and undrain commands, and how it counts nginx's connections.

The connection count reads a /proc tree; here one is built in tmp_path with the same layout (comm, fd
links to sockets, net/tcp and net/tcp6 rows as the kernel prints them).
"""

import json
import os
import socket
import struct

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import upstream_check as uc


def raw_config(tmp_path):
    return {
        "state_file": str(tmp_path / "state.json"),
        "drain_dir": str(tmp_path / "drain"),
        "upstreams_conf": str(tmp_path / "upstreams.conf"),
        "upstreams": {
            "webui": [
                {
                    "server": "10.0.0.1:7860",
                    "key": "gpu1@0",
                    "checks": [{"name": "ui", "url": "http://10.0.0.1:7860/"}],
                },
                {
                    "server": "10.0.0.2:7860",
                    "key": "gpu2@0",
                    "checks": [{"name": "ui", "url": "http://10.0.0.2:7860/"}],
                },
            ],
            "api": [
                {
                    "server": "10.0.0.1:8000",
                    "key": "gpu1@0",
                    "checks": [{"name": "vllm", "url": "http://10.0.0.1:8000/"}],
                },
                {
                    "server": "10.0.0.2:8000",
                    "key": "gpu2@0",
                    "checks": [{"name": "vllm", "url": "http://10.0.0.2:8000/"}],
                },
            ],
        },
    }


def config(tmp_path):
    cfg, errors = uc.load_config(raw_config(tmp_path))
    assert errors == []
    return cfg


class FakeTime:
    """A clock that sleep() moves; ``on_sleep`` lets a test change the world while the command waits."""

    def __init__(self, on_sleep=None):
        self.now = 1000.0
        self.on_sleep = on_sleep

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(self.now)


def write_state(cfg, now, drained=(), out=()):
    servers = []
    for s in cfg["servers"]:
        draining = s["key"] in drained
        down = s["key"] in out
        servers.append(
            {
                "upstream": s["upstream"],
                "server": s["server"],
                "key": s["key"],
                "in_rotation": not (draining or down),
                "reason": "draining" if draining else ("vllm_refused" if down else "ok"),
            }
        )
    with open(cfg["state_file"], "w", encoding="utf-8") as handle:
        json.dump({"time": now, "servers": servers}, handle)


def test_key_of_keeps_host_at_id_and_replaces_what_a_file_name_cannot_hold():
    assert uc.key_of("gpu1@0") == "gpu1@0"
    assert uc.key_of("gpu-1.example.org@3") == "gpu-1.example.org@3"
    assert uc.key_of("a/b c@1") == "a_b_c@1"
    assert uc.key_of("[2001:db8::5]:8000") == "_2001_db8__5__8000"


def test_drain_marks_the_key_waits_for_the_checker_then_for_the_connections(tmp_path):
    cfg = config(tmp_path)
    open_connections = {"10.0.0.1:7860": 2, "10.0.0.1:8000": 1}

    def world(now):
        # the checker notices the drain file 0.1 s later; the streams end 1 s later
        if now >= 1000.1 and os.path.exists(os.path.join(cfg["drain_dir"], "gpu1@0")):
            write_state(cfg, now, drained={"gpu1@0"})
        if now >= 1001.0:
            open_connections.update({"10.0.0.1:7860": 0, "10.0.0.1:8000": 0})

    fake = FakeTime(world)
    write_state(cfg, fake.now - 5)
    result = uc.drain(
        cfg, "gpu1@0", 60, clock=fake.clock, sleep=fake.sleep, connections=lambda s: dict(open_connections)
    )
    assert result["changed"] is True
    assert sorted(result["servers"]) == ["10.0.0.1:7860", "10.0.0.1:8000"]
    assert 0.1 <= result["out_after"] < 0.2
    assert 1.0 <= result["idle_after"] < 1.3
    assert "timed_out" not in result and "failed" not in result
    assert os.listdir(cfg["drain_dir"]) == ["gpu1@0"]
    # a second drain of the same key changes nothing
    again = uc.drain(
        cfg, "gpu1@0", 60, clock=fake.clock, sleep=fake.sleep, connections=lambda s: dict(open_connections)
    )
    assert again["changed"] is False


def test_drain_times_out_with_the_connections_left(tmp_path):
    cfg = config(tmp_path)
    fake = FakeTime(lambda now: write_state(cfg, now, drained={"gpu1@0"}))
    write_state(cfg, fake.now - 5)
    result = uc.drain(cfg, "gpu1@0", 5, clock=fake.clock, sleep=fake.sleep, connections=lambda s: dict.fromkeys(s, 1))
    assert result["timed_out"] is True
    assert result["connections"] == {"10.0.0.1:7860": 1, "10.0.0.1:8000": 1}
    assert "still 2 open connections after 5s" in result["msg"]


def test_drain_fails_when_the_checker_does_not_update_the_state(tmp_path):
    cfg = config(tmp_path)
    fake = FakeTime()
    write_state(cfg, fake.now - 60)  # a checker that stopped a minute ago
    result = uc.drain(cfg, "gpu1@0", 60, clock=fake.clock, sleep=fake.sleep, connections=lambda s: {})
    assert result["failed"] is True
    assert "did not take it out" in result["msg"]
    # it gave up after 10 s, not after the 60 s meant for the streams
    assert fake.now - 1000.0 < 11


def test_without_any_checker_state_nothing_is_marked_and_the_result_says_so(tmp_path):
    cfg = config(tmp_path)
    result = uc.drain(cfg, "gpu1@0", 60, connections=lambda s: {})
    assert result["no_checker"] is True
    assert result["changed"] is False
    assert not os.path.exists(cfg["drain_dir"])  # no mark left to take effect when a checker starts later


def test_draining_the_last_server_in_rotation_says_it_stays_in_at_once(tmp_path):
    cfg = config(tmp_path)

    def world(now):  # the checker fails open: gpu2 is down, so drained gpu1 is kept in
        write_state(cfg, now, drained={"gpu1@0"}, out={"gpu2@0"})
        doc = json.loads(open(cfg["state_file"]).read())
        for server in doc["servers"]:
            server["in_rotation"] = server["key"] == "gpu1@0"
        open(cfg["state_file"], "w").write(json.dumps(doc))

    fake = FakeTime(world)
    write_state(cfg, fake.now - 5)
    result = uc.drain(cfg, "gpu1@0", 600, clock=fake.clock, sleep=fake.sleep, connections=lambda s: dict.fromkeys(s, 1))
    assert result["timed_out"] is True
    assert "fails open" in result["msg"]
    assert fake.now - 1000.0 < 1  # it did not wait out the 600 s
    assert os.listdir(cfg["drain_dir"]) == ["gpu1@0"]


def test_drain_of_a_key_this_load_balancer_does_not_have_is_a_no_op_that_says_so(tmp_path):
    cfg = config(tmp_path)
    write_state(cfg, 0)
    result = uc.drain(cfg, "gpu9@0", 60, connections=lambda s: {})
    assert result["servers"] == []
    assert "not in this load balancer's upstreams" in result["msg"]


def test_undrain_removes_the_mark_and_waits_until_the_servers_are_back(tmp_path):
    cfg = config(tmp_path)
    os.makedirs(cfg["drain_dir"])
    open(os.path.join(cfg["drain_dir"], "gpu1@0"), "w").close()

    def world(now):
        # the checker sees the mark gone, then needs rise passes: back 0.5 s later
        write_state(cfg, now, drained=set() if now >= 1000.5 else {"gpu1@0"})

    fake = FakeTime(world)
    result = uc.undrain(cfg, "gpu1@0", 60, clock=fake.clock, sleep=fake.sleep)
    assert result["changed"] is True
    assert os.listdir(cfg["drain_dir"]) == []
    assert 0.5 <= result["in_after"] < 0.6


def test_undrain_times_out_naming_why_the_servers_stay_out(tmp_path):
    cfg = config(tmp_path)
    fake = FakeTime(lambda now: write_state(cfg, now, out={"gpu1@0"}))
    result = uc.undrain(cfg, "gpu1@0", 3, clock=fake.clock, sleep=fake.sleep)
    assert result["changed"] is False
    assert result["timed_out"] is True
    assert "not back in rotation after 3s (vllm_refused)" in result["msg"]


def hex4(address):
    """An IPv4 address as /proc/net/tcp prints it (the 32-bit word in host order)."""
    return "%08X" % struct.unpack("=I", socket.inet_aton(address))[0]


def hex6(address):
    raw = socket.inet_pton(socket.AF_INET6, address)
    return "".join("%08X" % struct.unpack("=I", raw[i : i + 4])[0] for i in range(0, 16, 4))


def fake_proc(tmp_path, processes, tcp_rows, tcp6_rows=()):
    """processes: {pid: (comm, [socket inodes])}; rows: (remote hex addr, port, state, inode)."""
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    for pid, (comm, inodes) in processes.items():
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        for n, inode in enumerate(inodes):
            os.symlink("socket:[%s]" % inode, proc / str(pid) / "fd" / str(n + 3))
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    for table, rows, local in (("tcp", tcp_rows, hex4("10.0.0.9")), ("tcp6", tcp6_rows, "0" * 32)):
        lines = [header]
        for n, (remote, port, state, inode) in enumerate(rows):
            lines.append(
                "%4d: %s:%04X %s:%04X %s 00000000:00000000 00:00000000 00000000     0        0 %s 1 0\n"
                % (n, local, 40000 + n, remote, port, state, inode)
            )
        (proc / "net" / table).write_text("".join(lines))
    return str(proc)


def test_nginx_connections_counts_only_nginx_established_sockets_to_each_server(tmp_path):
    proc = fake_proc(
        tmp_path,
        {101: ("nginx", ["501", "502", "503"]), 102: ("nginx", ["504"]), 103: ("python3", ["505"])},
        [
            (hex4("10.0.0.1"), 7860, "01", "501"),  # nginx, established: counts
            (hex4("10.0.0.1"), 7860, "01", "504"),  # another nginx worker: counts
            (hex4("10.0.0.1"), 7860, "06", "502"),  # TIME_WAIT: does not
            (hex4("10.0.0.1"), 7860, "01", "505"),  # the checker's own probe: not nginx
            (hex4("10.0.0.2"), 7860, "01", "503"),  # another server
        ],
        [("0000000000000000FFFF0000" + hex4("10.0.0.1"), 8000, "01", "503")],  # IPv4-mapped on a tcp6 socket
    )
    counts = uc.nginx_connections(["10.0.0.1:7860", "10.0.0.1:8000", "10.0.0.3:7860"], proc=proc)
    assert counts == {"10.0.0.1:7860": 2, "10.0.0.1:8000": 1, "10.0.0.3:7860": 0}


def test_nginx_connections_to_an_ipv6_server(tmp_path):
    proc = fake_proc(tmp_path, {7: ("nginx", ["900"])}, [], [(hex6("2001:db8::5"), 8000, "01", "900")])
    assert uc.nginx_connections(["[2001:db8::5]:8000"], proc=proc) == {"[2001:db8::5]:8000": 1}


def test_nginx_connections_on_this_machine_reads_the_real_proc():
    """The real /proc parses (no nginx here: nothing to count, and nothing raises)."""
    assert uc.nginx_connections(["127.0.0.1:9"]) == {"127.0.0.1:9": 0}


@pytest.mark.parametrize(("action", "code", "flag"), [("drain", 2, "no_checker"), ("undrain", 3, "timed_out")])
def test_the_command_prints_one_json_line_and_exits_by_outcome(tmp_path, capsys, action, code, flag):
    cfg_file = tmp_path / "check.json"
    cfg_file.write_text(json.dumps(raw_config(tmp_path)))
    # no checker runs here (no state file): a drain marks nothing (exit 2); an undrain times out waiting
    # for a checker to show the servers in rotation (exit 3)
    rc = uc.main([str(cfg_file), action, "gpu1@0", "--timeout", "0"])
    out = json.loads(capsys.readouterr().out)
    assert out["key"] == "gpu1@0"
    assert rc == code
    assert out[flag] is True


def test_a_bad_timeout_is_a_failure_with_a_message_not_a_traceback(tmp_path, capsys):
    cfg_file = tmp_path / "check.json"
    cfg_file.write_text(json.dumps(raw_config(tmp_path)))
    assert uc.main([str(cfg_file), "drain", "gpu1@0", "--timeout"]) == 1
    assert "IndexError" in json.loads(capsys.readouterr().out)["msg"]
