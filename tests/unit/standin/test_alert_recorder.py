"""The alert recorder stand-in (a chat bridge's stand-in for the lab and molecule/monitoring): run as its
unit runs it, on loopback, with an Alertmanager-shaped webhook POSTed to it."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from standin_procs import free_port

RECORDER = Path(__file__).resolve().parents[3] / "tests" / "standin" / "alert_recorder.py"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def recorder(tmp_path):
    port = free_port()
    out = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen([sys.executable, str(RECORDER), "--port", str(port), "--out", str(out)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _OPENER.open("http://127.0.0.1:%d/" % port, timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "the recorder did not start"
                time.sleep(0.05)
        yield port, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def post(port, body):
    request = urllib.request.Request(
        "http://127.0.0.1:%d/alerts" % port, data=body, headers={"Content-Type": "application/json"}
    )
    return _OPENER.open(request, timeout=5).status


def test_each_notification_is_one_line_with_its_alerts_and_the_time_it_arrived(recorder):
    port, out = recorder
    notification = {
        "receiver": "lab-recorder",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "QwenVLLMDown", "host": "gpu1"},
                "startsAt": "t0",
                "endsAt": "x",
            },
        ],
        "groupLabels": {"alertname": "QwenVLLMDown"},
    }
    before = time.time()
    assert post(port, json.dumps(notification).encode()) == 200
    assert post(port, json.dumps(dict(notification, status="resolved")).encode()) == 200
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["status"] for line in lines] == ["firing", "resolved"]
    assert lines[0]["alerts"] == [
        {"status": "firing", "labels": {"alertname": "QwenVLLMDown", "host": "gpu1"}, "startsAt": "t0", "endsAt": "x"}
    ]
    assert before <= lines[0]["received"] <= time.time() and lines[0]["receiver"] == "lab-recorder"


def test_a_body_that_is_not_json_is_refused_and_not_recorded(recorder):
    port, out = recorder
    with pytest.raises(urllib.error.HTTPError) as refused:
        post(port, b"not json")
    assert refused.value.code == 400
    assert not out.exists() or out.read_text() == ""
