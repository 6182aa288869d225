"""The WebUI stand-in checks its backend honestly and keeps sessions in the shared data directory.

Each test runs tests/standin/webui_standin.py (and, where a backend is needed, the vLLM stand-in)
as processes on 127.0.0.1; DATA_DIR is a temporary directory that two instances may share.
"""

import hashlib
import http.client
import json
import signal
import socket
import threading
import time

import pytest
from standin_procs import free_port
from standin_testlib import LOOPBACK, data_url, png, request, sse_events, websocket_echo

MODEL = "qwen3-vl-4b"
KEY = "sekrit"


@pytest.fixture
def backend(start_vllm):
    port = start_vllm("--served-model-name", MODEL, "--api-key", KEY)[1]
    return port


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return path


def webui_env(backend_port, data_dir, **overrides):
    env = {
        "OPENAI_API_BASE_URL": "http://%s:%d/v1" % (LOOPBACK, backend_port),
        "OPENAI_API_KEY": KEY,
        "MODEL_NAME": MODEL,
        "DATA_DIR": str(data_dir),
    }
    env.update(overrides)
    return env


def test_index_says_it_is_a_stand_in(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir))[1]
    response = request(port, "GET", "/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert b"<title>Qwen3-VL WebUI (test stand-in)</title>" in response.body
    assert b"<form" in response.body


def test_request_headers_echoes_what_it_got(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir))[1]
    response = request(port, "GET", "/api/request-headers", headers={"X-Forwarded-For": "192.0.2.9", "X-Two": "a"})
    assert response.status == 200
    seen = json.loads(response.body)
    assert seen["x-forwarded-for"] == ["192.0.2.9"] and seen["x-two"] == ["a"]
    assert "authorization" not in seen


def test_start_creates_the_data_layout(start_webui, backend, data_dir):
    start_webui(webui_env(backend, data_dir))
    assert (data_dir / "sessions").is_dir()
    assert (data_dir / "uploads").is_dir()


def test_healthz_ok_when_backend_serves_the_model(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir))[1]
    response = request(port, "GET", "/healthz")
    assert response.status == 200, response.body
    body = response.json()
    assert (body["status"], body["backend"], body["model"]) == ("ok", "ok", MODEL)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"OPENAI_API_KEY": "wrong"}, ("unauthorized", "401")),
        ({"OPENAI_API_KEY": ""}, ("unauthorized", "401")),
        ({"MODEL_NAME": "qwen3-vl-8b"}, ("model missing", "qwen3-vl-8b")),
    ],
)
def test_healthz_503_when_backend_refuses(start_webui, backend, data_dir, overrides, expected):
    backend_state, reason = expected
    port = start_webui(webui_env(backend, data_dir, **overrides))[1]
    response = request(port, "GET", "/healthz")
    assert response.status == 503
    body = response.json()
    assert body["status"] == "error"
    assert body["backend"] == backend_state
    assert reason in body["reason"]


def test_healthz_503_when_backend_is_down(start_webui, data_dir):
    port = start_webui(webui_env(free_port(), data_dir))[1]  # nothing listens there
    started = time.monotonic()
    response = request(port, "GET", "/healthz")
    assert time.monotonic() - started < 4
    assert response.status == 503
    assert response.json()["backend"] == "unreachable"


def test_healthz_503_when_backend_goes_away(start_vllm, start_webui, data_dir):
    proc, backend_port = start_vllm("--served-model-name", MODEL, "--api-key", KEY)
    port = start_webui(webui_env(backend_port, data_dir))[1]
    assert request(port, "GET", "/healthz").status == 200
    proc.signal(signal.SIGTERM)
    proc.wait(timeout=5)
    assert request(port, "GET", "/healthz").status == 503


def test_healthz_503_when_data_dir_is_not_writable(start_webui, backend, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    port = start_webui(webui_env(backend, blocker / "data"))[1]  # works even as root
    response = request(port, "GET", "/healthz")
    assert response.status == 503
    body = response.json()
    assert body["backend"] == "ok"
    assert body["data_dir"] == "not writable"
    assert "not writable" in body["reason"]


def chat(port, session_id, message, **extra):
    return request(port, "POST", "/api/chat", {"session_id": session_id, "message": message, **extra})


def test_history_written_on_one_instance_is_read_on_another(start_webui, backend, data_dir):
    port_a = start_webui(webui_env(backend, data_dir, STANDIN_INSTANCE_NAME="gpu1-0"))[1]
    port_b = start_webui(webui_env(backend, data_dir, STANDIN_INSTANCE_NAME="gpu2-0"))[1]
    image = png(8, 8)
    response = chat(port_a, "s-1", "what is this?", image=data_url(image))
    assert response.status == 200, response.body
    body = response.json()
    assert body["session_id"] == "s-1"
    assert body["instance"] == "gpu1-0"
    assert "8x8 PNG" in body["answer"]

    history = request(port_b, "GET", "/api/sessions/s-1")
    assert history.status == 200
    turns = history.json()
    assert [turn["role"] for turn in turns] == ["user", "assistant"]
    assert turns[0]["content"] == "what is this?"
    assert turns[0]["image"] == hashlib.sha256(image).hexdigest() + ".png"
    assert (data_dir / "uploads" / turns[0]["image"]).read_bytes() == image
    assert turns[1]["content"] == body["answer"]
    assert turns[1]["instance"] == "gpu1-0"

    # the session goes on on instance B: both turns in one file
    assert chat(port_b, "s-1", "and now?").json()["instance"] == "gpu2-0"
    turns = request(port_a, "GET", "/api/sessions/s-1").json()
    assert [turn.get("instance") for turn in turns] == [None, "gpu1-0", None, "gpu2-0"]


def test_concurrent_appends_from_two_instances_stay_whole(start_webui, backend, data_dir):
    ports = [start_webui(webui_env(backend, data_dir))[1] for _attempt in range(2)]
    statuses = []

    def talk(port, n):
        for i in range(n):
            statuses.append(chat(port, "shared", "message %d from %d" % (i, port)).status)

    threads = [threading.Thread(target=talk, args=(port, 6)) for port in ports for _attempt in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 24
    lines = (data_dir / "sessions" / "shared.jsonl").read_text().splitlines()
    assert len(lines) == 48
    records = [json.loads(line) for line in lines]  # no torn or interleaved lines
    assert [r["role"] for r in records] == ["user", "assistant"] * 24


def test_stream_is_relayed_and_recorded(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir))[1]
    response = chat(port, "s-2", "hello there", stream=True)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(response.body)
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text.startswith("I see no image; your message has 2 words.")
    turns = request(port, "GET", "/api/sessions/s-2").json()
    assert turns[1]["content"] == text


def test_stream_arrives_before_the_answer_is_complete(start_vllm, start_webui, data_dir):
    backend_port = start_vllm("--served-model-name", MODEL, "--api-key", KEY, env={"STANDIN_TOKEN_DELAY": "0.1"})[1]
    port = start_webui(webui_env(backend_port, data_dir))[1]
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        started = time.monotonic()
        body = json.dumps({"session_id": "s-3", "message": "hi", "stream": True})
        conn.request("POST", "/api/chat", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        first = response.fp.readline()
        first_at = time.monotonic() - started
        rest = response.read()
        total = time.monotonic() - started
    finally:
        conn.close()
    assert first.startswith(b"data: ")
    assert b"data: [DONE]" in rest
    assert total >= 1.0  # about 12 tokens x 100 ms
    assert first_at < total / 2, "events must be relayed as they arrive, not after the whole answer"


@pytest.mark.parametrize(
    ("overrides", "status_field"),
    [({"MODEL_NAME": "other"}, 404), ({"OPENAI_API_KEY": "wrong"}, 401)],
)
def test_backend_errors_are_502_with_the_backend_status(start_webui, backend, data_dir, overrides, status_field):
    port = start_webui(webui_env(backend, data_dir, **overrides))[1]
    response = chat(port, "s-4", "hi")
    assert response.status == 502
    body = response.json()
    assert body["backend_status"] == status_field
    assert request(port, "GET", "/api/sessions/s-4").status == 404  # nothing recorded


def test_backend_down_is_502(start_webui, data_dir):
    port = start_webui(webui_env(free_port(), data_dir))[1]
    response = chat(port, "s-5", "hi")
    assert response.status == 502
    assert response.json()["error"] == "backend unreachable"


@pytest.mark.parametrize("session_id", ["../etc", "a b", "x" * 65, "", 5])
def test_bad_session_ids_are_refused(start_webui, backend, data_dir, session_id):
    port = start_webui(webui_env(backend, data_dir))[1]
    assert chat(port, session_id, "hi").status == 400
    assert list((data_dir / "sessions").iterdir()) == []


def test_bad_inline_images_are_refused(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir))[1]
    assert chat(port, "s", "hi", image="data:image/png;base64,@@@").status == 400
    assert chat(port, "s", "hi", image="https://example.invalid/x.png").status == 400
    assert chat(port, "s", "hi", image=data_url(b"GIF89a....", "image/gif")).status == 415


def upload(port, body, content_type, length=None):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.putrequest("POST", "/api/upload")
        conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(len(body) if length is None else length))
        conn.endheaders()
        if length is None:
            conn.send(body)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_upload_is_stored_by_content_hash(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir))[1]
    image = png(4, 4)
    status, body = upload(port, image, "image/png")
    assert status == 200
    digest = hashlib.sha256(image).hexdigest()
    assert body["name"] == digest + ".png"
    assert (data_dir / "uploads" / body["name"]).read_bytes() == image
    assert upload(port, image, "image/png") == (200, body)  # idempotent


def test_upload_limits(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir))[1]
    status, body = upload(port, b"", "image/png", length=10 * 1024 * 1024 + 1)
    assert status == 413
    assert "limit" in body["error"]
    assert upload(port, b"hello", "text/plain")[0] == 415
    assert upload(port, png(2, 2), "image/jpeg")[0] == 400  # the body must be what it claims
    status = upload(port, b"\xff\xd8" + b"\x00" * (10 * 1024 * 1024 - 2), "image/jpeg")[0]
    assert status == 200  # exactly 10 MiB is allowed
    assert [p.name.endswith(".jpg") for p in (data_dir / "uploads").iterdir()] == [True]


def test_sigterm_exits_promptly(start_webui, backend, data_dir):
    proc = start_webui(webui_env(backend, data_dir))[0]
    started = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=3) == 0
    assert time.monotonic() - started < 1.5


def test_websocket_echo_answers_with_the_instance_name(start_webui, backend, data_dir):
    port = start_webui(webui_env(backend, data_dir, STANDIN_INSTANCE_NAME="ws-test"))[1]
    with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
        status, text = websocket_echo(sock, LOOPBACK, "/ws", "hello")
    assert status.startswith("HTTP/1.1 101")
    assert text == "ws-test: hello"
    # a plain GET on the WebSocket path is refused
    assert request(port, "GET", "/ws").status == 426
