"""The inference_probe core, without Ansible, against real HTTP servers on 127.0.0.1.

Two kinds of server: the vLLM stand-in (tests/standin/vllm_standin.py, a subprocess), for what a
working or misconfigured vLLM answers, and small http.server servers defined here, for broken
answers the stand-in never gives (HTTP 500, bodies that are not JSON, empty answers, streams cut
short, a server too slow to answer, TLS)."""

import datetime
import ipaddress
import json
import re
import ssl
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from standin_procs import free_port, start, stop

from ansible_collections.qwen3vl.ha.plugins.module_utils import inference_probe as core

MODEL = "Qwen3-VL-4B-Instruct"
KEY = "core-test-key-7f3a9c"


# -- servers ------------------------------------------------------------------------------------


def start_standin(model_dir, *extra_args, api_key=KEY, env=None, wait=True):
    port = free_port()
    cmd = [str(model_dir), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--served-model-name", MODEL, *extra_args]
    if api_key:
        cmd += ["--api-key", api_key]
    proc = start("vllm_standin.py", cmd, dict({"STANDIN_TOKEN_DELAY": "0.01"}, **(env or {})), port, wait)
    return proc, "http://127.0.0.1:%d" % port


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    (root / "config.json").write_text('{"architectures": ["Qwen3VLForConditionalGeneration"]}\n')
    return root


@pytest.fixture(scope="module")
def vllm(model_dir):
    """The stand-in with an API key, shared by the tests of this file."""
    proc, url = start_standin(model_dir)
    yield url
    stop(proc)


class FakeServer:
    """A real HTTP server on 127.0.0.1 whose answers a test writes.

    routes maps "METHOD /path" to handler(request, body) -> (status, body[, content type]); a
    handler may also write to request.wfile itself and return None (streams, slow answers)."""

    def __init__(self, routes, tls_context=None):
        outer = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.answer()

            def do_POST(self):
                self.answer()

            def answer(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append(
                    {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                )
                route = routes.get("%s %s" % (self.command, self.path))
                reply = route(self, body) if route else (404, {"detail": "Not Found"})
                if reply is not None:
                    send(self, *reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        scheme = "http"
        if tls_context:
            self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d" % (scheme, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def send(request, status, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


def fixed(*reply):
    """A route that always gives the same answer: fixed(status, body[, content type])."""
    return lambda request, body: reply


model_list = fixed(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})


def completion(content, finish_reason="stop", **message):
    message = dict(message, role="assistant", content=content)
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason}], "usage": None}


def sse(request, events, pause=0.0):
    """Write server-sent events (dicts become JSON, strings go as they are)."""
    request.send_response(200)
    request.send_header("Content-Type", "text/event-stream")
    request.send_header("Connection", "close")
    request.end_headers()
    request.close_connection = True
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        request.wfile.write(b"data: " + data.encode() + b"\n\n")
        request.wfile.flush()
        time.sleep(pause)


def delta(text=None, finish_reason=None):
    return {"choices": [{"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish_reason}]}


@pytest.fixture
def fake():
    servers = []

    def make(routes, tls_context=None):
        server = FakeServer(routes, tls_context)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def probe(url, **options):
    options.setdefault("model", MODEL)
    options.setdefault("timeout", 5)
    return core.probe(url=url, **options)


# -- the probe image ------------------------------------------------------------------------------


def png_chunks(data):
    assert data.startswith(core.PNG_MAGIC)
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF, kind
        chunks.append((kind, payload))
        pos += 12 + length
    return chunks


@pytest.mark.parametrize(("width", "height"), [(8, 8), (16, 4), (1, 1)])
def test_tiny_png_is_a_valid_rgb_png(width, height):
    chunks = png_chunks(core.tiny_png(width, height))
    assert [chunk[0] for chunk in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (width, height, 8, 2, 0, 0, 0)
    pixels = zlib.decompress(chunks[1][1])
    assert len(pixels) == height * (1 + 3 * width)
    assert all(pixels[row * (1 + 3 * width)] == 0 for row in range(height))  # filter byte per scanline


def test_default_probe_image_suits_qwen_vl():
    """At least 32 px a side (Qwen3-VL's patch x merge size), four coloured quarters, a few bytes."""
    data = core.tiny_png()
    chunks = png_chunks(data)
    width, height = struct.unpack(">II", chunks[0][1][:8])
    assert width >= 32 and height >= 32 and len(data) < 1000
    pixels = zlib.decompress(chunks[1][1])
    stride = 1 + 3 * width

    def pixel(x, y):
        return tuple(pixels[y * stride + 1 + 3 * x : y * stride + 4 + 3 * x])

    corners = [pixel(0, 0), pixel(width - 1, 0), pixel(0, height - 1), pixel(width - 1, height - 1)]
    assert corners == [(255, 0, 0), (0, 160, 0), (0, 0, 255), (255, 220, 0)]


def tiny_jpeg(width, height):
    """Just enough JPEG for a header check: SOI, a baseline frame header, EOI."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


def test_load_image_accepts_png_and_jpeg(tmp_path):
    (tmp_path / "a.png").write_bytes(core.tiny_png(3, 2))
    (tmp_path / "b.jpg").write_bytes(tiny_jpeg(5, 7))
    assert core.data_url(core.load_image(str(tmp_path / "a.png"))).startswith("data:image/png;base64,iVBORw0KGgo")
    assert core.data_url(core.load_image(str(tmp_path / "b.jpg"))).startswith("data:image/jpeg;base64,/9j/")


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_text("hello, not an image"), "is not a PNG or JPEG file (it starts with b'hello, n')"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: None, "cannot read: No such file or directory"),
        (lambda p: p.mkdir(), "cannot read: Is a directory"),
    ],
)
def test_load_image_names_the_file_and_the_problem(tmp_path, make, words):
    path = tmp_path / "probe.png"
    make(path)
    with pytest.raises(core.ProbeError) as info:
        core.load_image(str(path))
    assert str(info.value).startswith("image_path %s" % path) and words in str(info.value)


def test_chat_request_body_is_what_vllm_expects():
    body = core.chat_request_body(model=MODEL, prompt="Hi", image=core.tiny_png(), max_tokens=7, stream=True)
    assert body["model"] == MODEL and body["max_tokens"] == 7 and body["temperature"] == 0
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    text, image = body["messages"][0]["content"]
    assert text == {"type": "text", "text": "Hi"}
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
    assert "stream_options" not in core.chat_request_body(
        model=MODEL, prompt="Hi", image=core.tiny_png(), max_tokens=7, stream=False
    )


# -- small helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "bad image", "type": "BadRequestError", "code": 400}}', "bad image"),
        (b'{"error": "Unauthorized"}', "Unauthorized"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"detail": [{"loc": ["body", "model"], "msg": "field required"}]}', "field required"),
        (b'{"status": "error", "reason": "backend down"}', "backend down"),
        (b"<html>\n<body>502 Bad Gateway</body>\n</html>", "<html> <body>502 Bad Gateway</body> </html>"),
        (b"", "(empty body)"),
        (b"x" * 1000, "x" * 297 + "..."),
    ],
)
def test_error_message_takes_the_servers_words(body, message):
    assert message in core.error_message(body)
    assert len(core.error_message(body)) <= core.EXCERPT_LIMIT


def test_redactor_masks_every_occurrence_and_ignores_no_key():
    redact = core.Redactor("s3cr3t")
    assert redact("Bearer s3cr3t and s3cr3t") == "Bearer ******** and ********"
    assert core.Redactor(None)("s3cr3t") == "s3cr3t" and redact(None) is None


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"url": "ftp://host:8000"}, "is not an http:// or https:// URL with a host"),
        ({"url": "127.0.0.1:8000"}, "is not an http:// or https:// URL with a host"),
        ({"url": "http://user:pw@host:8000"}, "url: must not hold credentials"),
        ({"url": "http://host:8000/v1"}, "url is the base URL without /v1"),
        ({"url": "http://host:8000/?a=1"}, "without query or fragment"),
        ({"url": "http://host:80a0"}, "url: 'http://host:80a0' has an invalid port"),
        ({"webui_url": "localhost:7860"}, "webui_url: 'localhost:7860' is not an http:// or https:// URL"),
        ({"webui_health_path": "healthz"}, "webui_health_path must start with '/'"),
        ({"interval": 0}, "interval must be more than 0 seconds, got 0"),
        ({"wait_timeout": -1}, "wait_timeout must be 0 (one try) or more seconds"),
        ({"timeout": 0}, "timeout must be more than 0 seconds"),
        ({"max_tokens": 0}, "max_tokens must be 1 or more"),
        ({"headers": {"X-A": "1\r\nX-Injected: 2"}}, "headers: 'X-A' is not a valid HTTP header"),
    ],
)
def test_check_options_names_the_bad_option(options, words):
    options.setdefault("url", "http://127.0.0.1:8000")
    errors = core.check_options(**options)
    assert len(errors) == 1 and words in errors[0], errors


def test_check_options_accepts_good_ones():
    assert core.check_options(url="https://qwen.example.com/", webui_url="http://127.0.0.1:7860") == []


# -- against the vLLM stand-in ------------------------------------------------------------------


def test_json_answer(vllm):
    res = probe(vllm, api_key=KEY)
    assert res["ok"] is True and res["changed"] is False, res["msg"]
    assert res["models"] == [MODEL] and res["attempts"] == 1
    assert "64x64 PNG" in res["answer"] and res["answer_from"] == "content"
    assert res["finish_reason"] == "stop" and res["usage"]["completion_tokens"] > 0
    assert res["ttft_s"] is None and res["latency_s"] > 0
    assert [(s["name"], s["ok"], s["status"], s["error"]) for s in res["steps"]] == [
        ("models", True, 200, None),
        ("chat", True, 200, None),
    ]
    assert res["msg"].startswith("model '%s' served at %s (1 attempt); chat answered in " % (MODEL, vllm))


def test_streamed_answer_measures_time_to_first_token(vllm):
    res = probe(vllm, api_key=KEY, stream=True, max_tokens=4)
    assert res["ok"] is True, res["msg"]
    assert res["answer"] == "I see a 64x64"  # four tokens, assembled from the deltas in order
    assert res["finish_reason"] == "length"
    assert res["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert 0 < res["ttft_s"] < res["latency_s"]
    assert "first token after" in res["msg"]


def test_image_path_jpeg_is_sent_as_jpeg(vllm, tmp_path):
    (tmp_path / "probe.jpg").write_bytes(tiny_jpeg(40, 30))
    res = probe(vllm, api_key=KEY, image_path=str(tmp_path / "probe.jpg"))
    assert res["ok"] is True and "a 40x30 JPEG image" in res["answer"], res


def test_expect_in_answer(vllm):
    good = probe(vllm, api_key=KEY, expect_in_answer="64X64 png")
    assert good["ok"] is True
    bad = probe(vllm, api_key=KEY, expect_in_answer="a red square")
    assert bad["ok"] is False
    assert bad["msg"].startswith("chat answer does not contain 'a red square': 'I see a 64x64 PNG image.")


def test_wrong_key_fails_at_once_despite_wait_timeout(vllm):
    started = time.monotonic()
    res = probe(vllm, api_key="not-the-key", wait_timeout=30, interval=0.2)
    assert time.monotonic() - started < 15  # half the wait: a starved machine is slow, not 30 s slow
    assert res["ok"] is False and res["attempts"] == 1 and res["steps"][0]["status"] == 401
    assert res["msg"] == "401 Unauthorized from %s/v1/models: api_key wrong or missing (server: Unauthorized)" % vllm
    missing = probe(vllm)
    assert missing["msg"].startswith("401 Unauthorized from ")


def test_unknown_model_is_retried_then_lists_what_is_served(vllm):
    res = probe(vllm, api_key=KEY, model="Qwen3-VL-8B-Instruct", wait_timeout=1, interval=0.3)
    assert res["ok"] is False and res["attempts"] >= 3 and res["models"] == [MODEL]
    assert re.fullmatch(
        r"model 'Qwen3-VL-8B-Instruct' not served; served: \['%s'\], after 1(\.\d)? s \(%d attempts\)"
        % (MODEL, res["attempts"]),
        res["msg"],
    ), res["msg"]
    assert len(res["steps"]) == 1  # no chat request for a model that is not there


def test_context_overflow_reports_vllms_400_message(model_dir):
    proc, url = start_standin(model_dir, "--max-model-len", "8", api_key=None)
    try:
        res = probe(url, prompt="one two three four five six seven eight nine ten")
    finally:
        stop(proc)
    assert res["ok"] is False and res["steps"][1]["status"] == 400
    assert res["msg"].startswith("chat completion returned HTTP 400: This model's maximum context length is 8 tokens.")


def test_wait_too_short_for_a_slow_start_says_how_long_it_waited(model_dir):
    proc, url = start_standin(model_dir, env={"STANDIN_STARTUP_DELAY": "5"}, wait=False)
    try:
        started = time.monotonic()
        res = probe(url, api_key=KEY, wait_timeout=1, interval=0.25)
        took = time.monotonic() - started
    finally:
        stop(proc)
    assert 0.9 < took < 2.5
    assert res["ok"] is False and res["attempts"] >= 4
    assert re.fullmatch(
        r"connection refused at %s, after 1(\.\d)? s \(%d attempts\)" % (url, res["attempts"]), res["msg"]
    ), res["msg"]


def test_single_try_says_how_to_wait():
    url = "http://127.0.0.1:%d" % free_port()
    res = probe(url)
    assert res["msg"] == (
        "connection refused at %s (1 attempt; wait_timeout 0: set it to wait for the service to come up)" % url
    )


def test_webui_is_checked_after_the_api(vllm, fake):
    calls = []

    def health(request, body):
        calls.append(request.headers.get("Authorization"))
        return (200, {"status": "ok"}) if len(calls) > 1 else (503, {"status": "error", "reason": "starting"})

    webui = fake({"GET /healthz": health})
    res = probe(
        vllm,
        api_key=KEY,
        chat=False,
        webui_url=webui.url + "/",
        webui_health_path="/healthz",
        wait_timeout=5,
        interval=0.1,
    )
    assert res["ok"] is True, res["msg"]
    assert [s["name"] for s in res["steps"]] == ["models", "webui"] and res["answer"] is None
    assert res["steps"][1]["attempts"] == 2 and calls == [None, None]  # the key is not sent to the WebUI
    assert res["msg"].endswith("WebUI %s/healthz answered 200" % webui.url)


# -- broken servers -----------------------------------------------------------------------------


def test_http_500_on_models_is_retried_then_reported(fake):
    server = fake({"GET /v1/models": fixed(500, {"error": {"message": "EngineCore died"}})})
    res = probe(server.url, wait_timeout=0.5, interval=0.1)
    assert res["attempts"] >= 3
    # the time it reports is the time it took: at least the wait, more on a busy machine
    found = re.match(r"(.*/v1/models returned HTTP 500: EngineCore died), after ([0-9.]+) s \(", res["msg"])
    assert found and found.group(1) == "%s/v1/models returned HTTP 500: EngineCore died" % server.url, res["msg"]
    assert float(found.group(2)) >= 0.5, res["msg"]


def test_404_and_html_on_models_fail_at_once(fake):
    page = fake({"GET /v1/models": fixed(200, b"<html>Open WebUI</html>", "text/html")})
    res = probe(page.url, wait_timeout=10)
    assert res["attempts"] == 1 and res["elapsed_s"] < 5  # half the wait_timeout
    assert res["msg"] == "%s/v1/models did not answer an OpenAI model list: <html>Open WebUI</html>" % page.url
    nothing = fake({})
    res = probe(nothing.url, wait_timeout=10)
    assert res["attempts"] == 1
    assert res["msg"] == "%s/v1/models returned HTTP 404: Not Found (is url the vLLM base URL?)" % nothing.url


def chat_server(fake, reply):
    return fake({"GET /v1/models": model_list, "POST /v1/chat/completions": reply})


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (
            fixed(500, {"error": {"message": "CUDA out of memory"}}),
            "chat completion returned HTTP 500: CUDA out of memory",
        ),
        (
            fixed(401, {"error": "Unauthorized"}),
            "chat completion returned 401 Unauthorized: api_key wrong or missing",
        ),
        (fixed(200, b"{not json"), "chat completion answer is not an OpenAI chat completion: {not json"),
        (fixed(200, {"choices": []}), "chat completion answer is not an OpenAI chat completion"),
        (fixed(200, {"choices": [{"message": "Hi"}]}), "chat completion answer is not an OpenAI chat completion"),
        (fixed(200, completion("")), "chat completion returned an empty answer (finish_reason stop)"),
        (
            fixed(200, completion(None, "length")),
            "chat completion returned an empty answer (finish_reason length)",
        ),
        (fixed(200, completion("Hi", None)), "chat completion returned finish_reason None; expected one of stop"),
        (fixed(200, completion("Hi", "abort")), "chat completion returned finish_reason 'abort'"),
    ],
)
def test_bad_chat_answers(fake, reply, words):
    res = probe(chat_server(fake, reply).url)
    assert res["ok"] is False and res["steps"][-1]["name"] == "chat"
    assert res["msg"].startswith(words), res["msg"]


def test_reasoning_only_answer_counts(fake):
    reply = completion(None, "length", reasoning_content="The user wants a description of")
    res = probe(chat_server(fake, fixed(200, reply)).url)
    assert res["ok"] is True and res["answer_from"] == "reasoning_content"
    assert res["answer"] == "The user wants a description of"


def test_long_answer_is_cut(fake):
    res = probe(chat_server(fake, fixed(200, completion("word " * 400))).url)
    assert res["ok"] is True and len(res["answer"]) == core.ANSWER_LIMIT and res["answer"].endswith("...")


@pytest.mark.parametrize(
    ("events", "words"),
    [
        (
            [delta("Hi"), delta(finish_reason="stop")],
            "chat completion stream ended without 'data: [DONE]' after 2 events",
        ),
        (['{"broken'], "chat completion stream sent a line that is not JSON"),
        ([{"error": {"message": "engine dead"}}], "chat completion stream reported an error: engine dead"),
        ([delta(finish_reason="stop"), "[DONE]"], "chat completion returned an empty answer"),
        ([{"choices": ["junk", {"delta": "junk"}]}, delta("ok", "stop"), "[DONE]"], None),
    ],
)
def test_bad_streams(fake, events, words):
    res = probe(chat_server(fake, lambda request, body: sse(request, events)).url, stream=True)
    if words is None:  # odd chunks are skipped, not fatal
        assert res["ok"] is True and res["answer"] == "ok", res["msg"]
    else:
        assert res["ok"] is False and res["msg"].startswith(words), res["msg"]


def test_stream_asked_but_json_answered(fake):
    res = probe(chat_server(fake, fixed(200, completion("Hi"))).url, stream=True)
    assert res["msg"] == (
        "chat completion stream ended without 'data: [DONE]' after 0 events"
        " (the server answered application/json, not text/event-stream)"
    )


def test_stream_with_comments_and_keepalives(fake):
    def reply(request, body):
        request.send_response(200)
        request.send_header("Content-Type", "text/event-stream")
        request.send_header("Connection", "close")
        request.end_headers()
        request.close_connection = True
        for line in (
            ": keep-alive",
            "event: message",
            "data:" + json.dumps(delta("A")),
            "",
            "data: " + json.dumps(delta(" cat", "stop")),
            "data: [DONE]",
        ):
            request.wfile.write(line.encode() + b"\r\n")

    res = probe(chat_server(fake, reply).url, stream=True)
    assert res["ok"] is True and res["answer"] == "A cat" and res["finish_reason"] == "stop"
    assert res["usage"] is None


def test_ttft_is_the_first_token_not_the_first_event(fake):
    role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    events = [role, delta("A"), delta(" cat", "stop"), "[DONE]"]
    res = probe(chat_server(fake, lambda request, body: sse(request, events, pause=0.3)).url, stream=True)
    assert res["ok"] is True and res["answer"] == "A cat"
    assert 0.25 < res["ttft_s"] < 0.5 < res["latency_s"]


def test_slow_server_hits_the_timeout(fake):
    def slow(request, body):
        time.sleep(4)
        return model_list(request, body)

    server = fake({"GET /v1/models": slow})
    started = time.monotonic()
    res = probe(server.url, timeout=0.4)
    assert time.monotonic() - started < 2.5  # well short of the server's 4 s
    assert res["msg"].startswith("no answer from %s/v1/models within 0.4 s (timeout)" % server.url)


def test_trickling_stream_hits_the_timeout(fake):
    events = [delta("word ")] * 20
    server = chat_server(fake, lambda request, body: sse(request, events, pause=0.1))
    res = probe(server.url, stream=True, timeout=0.5)
    assert res["ok"] is False
    assert res["msg"].startswith("chat completion stream did not finish within 0.5 s (")


def test_api_key_never_leaves_the_probe(fake):
    """A server that echoes the Authorization header back, in errors and in the answer."""
    key = "sk-distinctive-ECHO-1234567890"

    def echo(request, body):
        return 400, {"error": {"message": "bad header %s" % request.headers["Authorization"]}}

    def echo_answer(request, body):
        return 200, completion("you sent %s" % request.headers["Authorization"])

    for routes in (
        {"GET /v1/models": echo},
        {"GET /v1/models": model_list, "POST /v1/chat/completions": echo},
        {"GET /v1/models": model_list, "POST /v1/chat/completions": echo_answer},
    ):
        server = fake(routes)
        res = probe(server.url, api_key=key)
        assert server.requests[0]["headers"]["Authorization"] == "Bearer " + key  # it was sent ...
        text = json.dumps(res)
        assert key not in text and "********" in text  # ... and never returned


def test_headers_are_sent_to_the_api(fake):
    server = chat_server(fake, fixed(200, completion("ok")))
    probe(server.url, headers={"X-Probe": "drill-7"})
    assert [request["headers"].get("X-Probe") for request in server.requests] == ["drill-7", "drill-7"]
    chat = server.requests[-1]
    assert (chat["method"], chat["path"]) == ("POST", "/v1/chat/completions")
    assert "Authorization" not in chat["headers"]
    assert json.loads(chat["body"])["messages"][0]["content"][0]["text"] == core.DEFAULT_PROMPT


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A CA and a server certificate for 127.0.0.1, made with cryptography (an Ansible dependency)."""

    def name(text):
        return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("probe test CA"))
        .issuer_name(name("probe test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    root = tmp_path_factory.mktemp("tls")
    (root / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (root / "server.pem").write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return root


def test_https_checks_the_certificate(fake, tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls_files / "server.pem"))
    tls = fake({"GET /v1/models": model_list}, tls_context=context)
    untrusted = probe(tls.url, chat=False, wait_timeout=10)
    assert untrusted["attempts"] == 1  # waiting does not fix a certificate
    assert untrusted["msg"].startswith("TLS certificate of %s is not trusted: " % tls.url)
    assert "set ca_path to its CA, or validate_certs=false" in untrusted["msg"]
    assert probe(tls.url, chat=False, ca_path=str(tls_files / "ca.pem"))["ok"] is True
    assert probe(tls.url, chat=False, validate_certs=False)["ok"] is True


def test_bad_ca_path_is_an_input_error(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    with pytest.raises(core.ProbeError, match="ca_path .*ca.pem: cannot load CA certificates"):
        probe("https://127.0.0.1:1", ca_path=str(tmp_path / "ca.pem"))
