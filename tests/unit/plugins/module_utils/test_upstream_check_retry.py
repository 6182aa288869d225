"""qwen3vl-upstream-check keeps going when a write or a reload fails, and tries again."""

import os

from ansible_collections.qwen3vl.ha.plugins.module_utils import upstream_check as uc


def checks(*servers):
    return [
        {"server": s, "key": "h@%d" % n, "checks": [{"name": "vllm", "url": "http://%s/health" % s}]}
        for n, s in enumerate(servers)
    ]


def checker(tmp_path, reload_results, upstreams_conf=None):
    raw = {
        "state_file": str(tmp_path / "state.json"),
        "drain_dir": str(tmp_path / "drain"),
        "upstreams_conf": upstreams_conf or str(tmp_path / "upstreams.conf"),
        "upstreams": {"webui": checks("10.0.0.1:7860", "10.0.0.2:7860"), "api": checks("10.0.0.1:8000")},
    }
    config, errors = uc.load_config(raw)
    assert errors == []
    log = []
    now = [1000.0]
    instance = uc.Checker(config, lambda: reload_results.pop(0), log.append, clock=lambda: now[0])
    for url in instance.urls():
        instance.record(url, True, "ok")
    return instance, log, now


def test_a_failed_reload_is_logged_once_and_retried_until_nginx_takes_it(tmp_path):
    results = [True, False, False, True]
    c, log, now = checker(tmp_path, results)
    assert c.update(force=True) is True
    for _attempt in range(c.config["fall"]):
        c.record("http://10.0.0.1:7860/health", False, "refused")
    assert c.update() is False  # written, but nginx's pid could not be signalled
    assert "down;" in (tmp_path / "upstreams.conf").read_text()
    assert c.due() is True
    now[0] += 0.2
    assert c.update() is False  # the second try fails too: no second log line
    assert len([line for line in log if "could not signal nginx" in line]) == 1
    now[0] += 0.2
    assert c.update() is True  # the file did not change again, but the reload is still owed
    assert results == [] and c.due() is False


def test_a_write_that_fails_does_not_end_the_checker_and_is_retried(tmp_path):
    target = tmp_path / "nginx" / "upstreams.conf"
    c, log, now = checker(tmp_path, [True, True], upstreams_conf=str(target))
    assert c.update(force=True) is False  # the directory is not there: logged, nothing raised
    assert any("cannot write %s" % target in line for line in log)
    assert c.due() is True
    os.mkdir(tmp_path / "nginx")
    now[0] += 0.2
    assert c.update() is True
    assert "upstream qwen3vl_webui" in target.read_text()


def test_a_state_file_that_cannot_be_written_is_logged_not_fatal(tmp_path):
    c, log, now = checker(tmp_path, [True])
    c.config["state_file"] = str(tmp_path / "missing" / "state.json")
    assert c.update(force=True) is True
    assert any("cannot write the state file" in line for line in log)
