"""The vLLM stand-in behaves like `vllm serve` where the collection depends on it.

Each test starts tests/standin/vllm_standin.py as a process on 127.0.0.1 and talks HTTP to it.
"""

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from standin_testlib import LOOPBACK, VLLM, data_url, jpeg, png, port_open, request, sse_events

KEY = {"Authorization": "Bearer sekrit"}


def chat(port, content, headers=None, **extra):
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **extra}
    return request(port, "POST", "/v1/chat/completions", body, headers=headers)


def image_part(data, mime="image/png"):
    return {"type": "image_url", "image_url": {"url": data_url(data, mime)}}


def metric(text, name, **labels):
    """Value of one sample in Prometheus text format; labels must all match."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([^{ ]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    raise AssertionError("no sample %s%s in:\n%s" % (name, labels, text))


def metrics(port):
    response = request(port, "GET", "/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return response.body.decode()


# -- start-up and command line ------------------------------------------------------------------


def test_port_opens_only_after_the_startup_delay(start_vllm):
    started = time.monotonic()
    proc, port = start_vllm(env={"STANDIN_STARTUP_DELAY": "1.2"}, wait=False)
    time.sleep(0.4)
    assert not port_open(port), "the port must stay closed while the 'model' loads"
    assert "loading model weights" in proc.log
    proc.wait_port(port)
    assert time.monotonic() - started >= 1.2
    assert request(port, "GET", "/health").status == 200
    log = proc.log
    assert log.index("loading model weights") < log.index("Application startup complete.")
    assert "http://%s:%d" % (LOOPBACK, port) in log


def run_cli(*args, timeout=20):
    return subprocess.run(
        [sys.executable, str(VLLM), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_unknown_flag_is_rejected_with_exit_2(model_dir):
    proc = run_cli(str(model_dir), "--max-modle-len", "4096")
    assert proc.returncode == 2
    assert "unrecognized arguments: --max-modle-len" in proc.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["--limit-mm-per-prompt", "{image: 2}"],
        ["--limit-mm-per-prompt", "[1]"],
        ["--gpu-memory-utilization", "1.5"],
        ["--gpu-memory-utilization", "0"],
        ["--max-num-seqs", "0"],
        ["--shutdown-timeout", "-1"],
    ],
)
def test_invalid_values_are_rejected_with_exit_2(model_dir, flags):
    proc = run_cli(str(model_dir), *flags)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert flags[0] in proc.stderr


@pytest.mark.parametrize("config", [None, "{not json"])
def test_missing_or_broken_config_json_exits_1_naming_the_path(tmp_path, config):
    model = tmp_path / "no-such-model"
    model.mkdir()
    if config is not None:
        (model / "config.json").write_text(config)
    proc = run_cli(str(model), "--port", "1")
    assert proc.returncode == 1
    assert str(model) in proc.stdout + proc.stderr
    assert "ERROR" in proc.stderr


def test_ignored_vllm_flags_are_accepted_and_logged(start_vllm):
    proc, port = start_vllm(
        "--dtype", "bfloat16", "--tensor-parallel-size", "1", "--trust-remote-code", "--enable-prefix-caching",
        "--disable-log-requests", "--uvicorn-log-level", "warning", "--max-num-batched-tokens", "8192",
        "--seed", "0", "--gpu-memory-utilization", "0.85", "--max_model_len", "2048",
    )  # fmt: skip
    assert request(port, "GET", "/v1/models").json()["data"][0]["max_model_len"] == 2048
    for flag in ("--dtype bfloat16", "--trust-remote-code", "--seed 0", "--uvicorn-log-level warning"):
        assert "%s is ignored by the stand-in" % flag in proc.log


# -- API ------------------------------------------------------------------------------------------


def test_models_lists_the_served_name_with_vllm_fields(start_vllm, model_dir):
    port = start_vllm("--served-model-name", "qwen3-vl-4b")[1]
    response = request(port, "GET", "/v1/models")
    assert response.status == 200
    listing = response.json()
    assert listing["object"] == "list"
    (card,) = listing["data"]
    assert card["id"] == "qwen3-vl-4b"
    assert card["object"] == "model"
    assert card["owned_by"] == "vllm"
    assert card["root"] == str(model_dir)
    assert card["parent"] is None
    assert card["max_model_len"] == 4096  # from config.json's max_position_embeddings
    assert isinstance(card["created"], int)


def test_served_name_defaults_to_the_model_path(start_vllm, model_dir):
    port = start_vllm("--served-model-name", str(model_dir))[1]
    assert request(port, "GET", "/v1/models").json()["data"][0]["id"] == str(model_dir)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_api_key_guards_v1_but_not_health_or_metrics(start_vllm, how):
    if how == "flag":
        port = start_vllm("--api-key", "sekrit")[1]
    else:
        port = start_vllm(env={"VLLM_API_KEY": "sekrit"})[1]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "sekrit"}):
        response = request(port, "GET", "/v1/models", headers=headers)
        assert response.status == 401
        assert response.json() == {"error": "Unauthorized"}
        assert chat(port, "hi", headers=headers).status == 401
    assert request(port, "GET", "/v1/models", headers=KEY).status == 200
    assert chat(port, "hi", headers=KEY).status == 200
    assert request(port, "GET", "/health").status == 200
    assert request(port, "GET", "/metrics").status == 200


def test_without_a_key_no_auth_is_needed(start_vllm):
    port = start_vllm()[1]
    assert request(port, "GET", "/v1/models").status == 200


def test_wrong_model_is_404_with_vllm_error_object(start_vllm):
    port = start_vllm()[1]
    response = request(port, "POST", "/v1/chat/completions", {"model": "other", "messages": [{"role": "user"}]})
    assert response.status == 404
    assert response.json() == {
        "error": {
            "message": "The model `other` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }


def test_allowed_media_domains_refuses_other_hosts_and_still_fetches_nothing(start_vllm):
    """--allowed-media-domains (as the webui role passes it): a remote image whose host is not listed is refused
    naming the host; a listed one is refused too, because the stand-in never fetches; data: URLs still work."""
    port = start_vllm("--allowed-media-domains", "no-remote-media.invalid", "images.example.invalid")[1]
    for url, needle in [
        ("http://169.254.169.254/latest/meta-data/", "'169.254.169.254' is not in --allowed-media-domains"),
        ("https://IMAGES.example.invalid.evil/cat.png", "is not in --allowed-media-domains"),
        ("https://images.example.invalid/cat.png", "does not fetch"),
    ]:
        response = chat(port, [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}])
        assert response.status == 400
        assert needle in response.json()["error"]["message"], url
    assert chat(port, [{"type": "text", "text": "look"}, image_part(png(8, 8))]).status == 200


@pytest.mark.parametrize(
    ("parts", "needle"),
    [
        ([image_part(png(8, 8))] * 3, "At most 2 image(s)"),
        ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@not-base64"}}], "base64"),
        ([{"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}], "does not fetch"),
        ([{"type": "image_url", "image_url": {"url": "http://example.invalid/cat.png"}}], "does not fetch"),
        ([image_part(b"GIF89a\x08\x00\x08\x00", "image/gif")], "PNG and JPEG"),
        ([{"type": "input_audio", "input_audio": {}}], "unsupported content part"),
    ],
)
def test_bad_images_are_400(start_vllm, parts, needle):
    port = start_vllm("--limit-mm-per-prompt", '{"image": 2}')[1]
    response = chat(port, [{"type": "text", "text": "look"}, *parts])
    assert response.status == 400
    error = response.json()["error"]
    assert error["type"] == "BadRequestError"
    assert error["code"] == 400
    assert needle in error["message"]


def test_default_image_limit_is_one(start_vllm):
    port = start_vllm()[1]
    response = chat(port, [image_part(png(8, 8)), image_part(png(8, 8))])
    assert response.status == 400
    assert "At most 1 image(s)" in response.json()["error"]["message"]


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"model": "m", "messages": []}'])
def test_malformed_requests_are_400(start_vllm, body):
    port = start_vllm()[1]
    response = request(port, "POST", "/v1/chat/completions", body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert response.json()["error"]["type"] == "BadRequestError"


def test_answer_describes_the_images_and_counts_usage(start_vllm):
    port = start_vllm("--limit-mm-per-prompt", '{"image": 2}')[1]
    content = [{"type": "text", "text": "what is this"}, image_part(png(8, 8)), image_part(jpeg(16, 9), "image/jpeg")]
    response = chat(port, content, max_tokens=200)
    assert response.status == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    assert completion["id"].startswith("chatcmpl-")
    assert completion["model"] == "m"
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant"
    answer = choice["message"]["content"]
    assert answer.startswith("I see a 8x8 PNG image and a 16x9 JPEG image.")
    assert choice["finish_reason"] == "stop"
    # prompt: 1 message + 3 words + 2 images
    assert completion["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": len(answer.split()),
        "total_tokens": 6 + len(answer.split()),
    }


def test_answer_is_deterministic(start_vllm):
    port = start_vllm()[1]
    answers = {chat(port, [image_part(png(3, 5))]).json()["choices"][0]["message"]["content"] for _attempt in range(3)}
    assert len(answers) == 1
    assert "3x5 PNG" in answers.pop()


def test_max_tokens_cuts_the_answer_with_finish_reason_length(start_vllm):
    port = start_vllm()[1]
    full = chat(port, "hello", max_tokens=100).json()
    assert full["choices"][0]["finish_reason"] == "stop"
    words = full["choices"][0]["message"]["content"].split()
    assert 8 <= len(words) <= 16  # a natural answer shorter than the default max_tokens (16)
    assert chat(port, "hello").json()["choices"][0]["finish_reason"] == "stop"
    cut = chat(port, "hello", max_completion_tokens=3).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"].split() == words[:3]
    assert cut["usage"]["completion_tokens"] == 3


def test_completion_is_capped_by_max_model_len(start_vllm):
    port = start_vllm("--max-model-len", "6")[1]
    response = chat(port, "one two three", max_tokens=100)  # 4 prompt tokens leave 2
    assert response.json()["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert response.json()["choices"][0]["finish_reason"] == "length"
    too_long = chat(port, "one two three four five six seven")
    assert too_long.status == 400
    assert "maximum context length is 6" in too_long.json()["error"]["message"]


def test_stream_yields_the_same_words_then_done(start_vllm):
    port = start_vllm(env={"STANDIN_TOKEN_DELAY": "0.005"})[1]
    content = [{"type": "text", "text": "describe"}, image_part(png(8, 8))]
    plain = chat(port, content, max_tokens=50).json()
    streamed = chat(port, content, max_tokens=50, stream=True, stream_options={"include_usage": True})
    assert streamed.status == 200
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    assert "Content-Length" not in streamed.headers
    events = sse_events(streamed.body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    token_chunks = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"].get("content")]
    text = "".join(c["choices"][0]["delta"]["content"] for c in token_chunks)
    assert text == plain["choices"][0]["message"]["content"]
    assert len(token_chunks) == plain["usage"]["completion_tokens"]  # one chunk per token
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in final] == ["stop"]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == plain["usage"]


def test_stream_without_include_usage_has_no_usage_chunk(start_vllm):
    port = start_vllm()[1]
    events = sse_events(chat(port, "hi", stream=True, max_tokens=2).body)
    assert events[-1] == "[DONE]"
    assert all('"usage"' not in event for event in events)
    assert '"finish_reason": "length"' in events[-2]


def test_keep_alive_serves_several_requests_on_one_connection(start_vllm):
    port = start_vllm()[1]
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=5)
    try:
        for _attempt in range(3):
            conn.request("GET", "/v1/models")
            response = conn.getresponse()
            assert response.status == 200
            assert response.read()
            assert response.getheader("Connection") != "close"
    finally:
        conn.close()


def test_unknown_path_is_404_json(start_vllm):
    port = start_vllm()[1]
    response = request(port, "GET", "/nope")
    assert response.status == 404
    assert response.json() == {"detail": "Not Found"}


# -- metrics and scheduling -----------------------------------------------------------------------


def test_metrics_count_served_requests(start_vllm):
    port = start_vllm("--served-model-name", "qwen3-vl-4b")[1]
    labels = {"model_name": "qwen3-vl-4b", "engine": "0"}
    before = metrics(port)
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert "# TYPE %s gauge" % name in before
    for name in ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert "# TYPE %s counter" % name in before
    assert metric(before, "vllm:request_success_total", finished_reason="stop", **labels) == 0

    body = {"model": "qwen3-vl-4b", "messages": [{"role": "user", "content": "two words"}]}
    usages = [
        request(port, "POST", "/v1/chat/completions", {**body, "max_tokens": n}).json()["usage"] for n in (3, 100)
    ]
    request(port, "POST", "/v1/chat/completions", {**body, "model": "wrong"})  # an error is not a success

    after = metrics(port)
    assert metric(after, "vllm:request_success_total", finished_reason="length", **labels) == 1
    assert metric(after, "vllm:request_success_total", finished_reason="stop", **labels) == 1
    assert metric(after, "vllm:prompt_tokens_total", **labels) == sum(u["prompt_tokens"] for u in usages)
    assert metric(after, "vllm:generation_tokens_total", **labels) == sum(u["completion_tokens"] for u in usages)
    for hist in ("vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds"):
        assert "# TYPE %s histogram" % hist in after
        assert metric(after, hist + "_count", **labels) == 2
        assert metric(after, hist + "_bucket", le="+Inf", **labels) == 2
        assert metric(after, hist + "_sum", **labels) >= 0
        buckets = [float(line.rsplit(" ", 1)[1]) for line in after.splitlines() if line.startswith(hist + "_bucket{")]
        assert buckets == sorted(buckets), "buckets must be cumulative"


def test_requests_beyond_max_num_seqs_wait(start_vllm):
    port = start_vllm("--max-num-seqs", "1", env={"STANDIN_TOKEN_DELAY": "0.05"})[1]
    results = []

    def one():
        results.append(chat(port, "hi", max_tokens=8).status)

    threads = [threading.Thread(target=one) for _attempt in range(3)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    seen_waiting = seen_running = 0.0
    while any(thread.is_alive() for thread in threads):
        text = metrics(port)
        seen_waiting = max(seen_waiting, metric(text, "vllm:num_requests_waiting"))
        seen_running = max(seen_running, metric(text, "vllm:num_requests_running"))
        assert metric(text, "vllm:kv_cache_usage_perc") <= 1.0
        time.sleep(0.03)
    for thread in threads:
        thread.join()
    assert results == [200, 200, 200]
    assert seen_running == 1
    assert seen_waiting >= 1
    assert time.monotonic() - started >= 3 * 8 * 0.05 * 0.9, "one at a time: 3 x 8 tokens x 50 ms"
    assert metric(metrics(port), "vllm:num_requests_waiting") == 0


# -- shutdown ------------------------------------------------------------------------------------


def slow_chat_in_thread(port, results, max_tokens):
    def run():
        try:
            results.append(chat(port, "hi", max_tokens=max_tokens))
        except (OSError, http.client.HTTPException) as exc:
            results.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_running(port, count=1, timeout=5):
    deadline = time.monotonic() + timeout
    while metric(metrics(port), "vllm:num_requests_running") < count:
        assert time.monotonic() < deadline, "request never started"
        time.sleep(0.02)


def test_sigterm_with_shutdown_timeout_drains_in_flight_requests(start_vllm):
    proc, port = start_vllm("--shutdown-timeout", "5", env={"STANDIN_TOKEN_DELAY": "0.1"})
    results = []
    thread = slow_chat_in_thread(port, results, max_tokens=10)  # about 1 s
    wait_running(port)
    signalled = time.monotonic()
    proc.signal(signal.SIGTERM)
    time.sleep(0.3)
    try:
        refused = request(port, "GET", "/health", timeout=2).status == 503
    except ConnectionRefusedError:
        refused = True
    assert refused, "new requests must not be served while draining"
    thread.join(timeout=10)
    (response,) = results
    assert response.status == 200, response
    assert response.json()["usage"]["completion_tokens"] == 10
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - signalled < 5
    assert "draining" in proc.log
    assert "drain complete" in proc.log


def test_sigterm_drain_gives_up_after_the_timeout(start_vllm):
    proc, port = start_vllm("--shutdown-timeout", "0.5", env={"STANDIN_TOKEN_DELAY": "0.5"})
    results = []
    thread = slow_chat_in_thread(port, results, max_tokens=20)  # 10 s: longer than the drain
    wait_running(port)
    signalled = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert 0.4 <= time.monotonic() - signalled < 3
    assert "drain timeout" in proc.log
    thread.join(timeout=5)
    assert not isinstance(results[0], http.client.HTTPResponse)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_without_drain_exits_at_once(start_vllm, signum):
    proc, port = start_vllm(env={"STANDIN_TOKEN_DELAY": "0.5"})
    results = []
    thread = slow_chat_in_thread(port, results, max_tokens=20)
    wait_running(port)
    signalled = time.monotonic()
    proc.signal(signum)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - signalled < 1.5
    assert "aborted" in proc.log
    thread.join(timeout=5)
    assert isinstance(results[0], Exception), "the in-flight request is aborted, not answered"


def test_sigterm_during_model_load_exits(start_vllm):
    proc, port = start_vllm(env={"STANDIN_STARTUP_DELAY": "30"}, wait=False)
    proc.wait_log("loading model weights")  # the signal handlers are in place before this line
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=3) == 0
    assert not port_open(port)
