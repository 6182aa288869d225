"""model_checksum on a real host: the converged manifest, damaged copies, an unprivileged reader."""

import uuid

import pytest

MODEL = "/srv/models/Qwen3-VL-test"
MANIFEST = "/srv/models/Qwen3-VL-test.sha256"
CACHE_DIR = "/var/cache/qwen3vl-ha/model_checksum"
SHARDS = ["model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]
FILES = 7  # three shards, three JSON files, one name with a backslash


@pytest.fixture
def scratch(host):
    """A private copy of the converged model directory, removed afterwards."""
    path = "/srv/scratch-%s" % uuid.uuid4().hex[:8]
    host.run_expect([0], "cp -a %s %s" % (MODEL, path))
    yield path
    host.run("rm -rf %s" % path)


def test_manifest_is_sha256sum_compatible_on_the_host(host):
    result = host.run("cd %s && sha256sum -c --strict %s" % (MODEL, MANIFEST))
    assert result.rc == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == FILES


def test_second_verify_comes_from_the_cache_which_only_root_can_write(host, adhoc):
    res = adhoc("qwen3vl.ha.model_checksum", {"path": MODEL, "manifest": MANIFEST})
    assert res["ok"] is True and res["changed"] is False
    assert res["summary"]["cached"] == FILES and res["summary"]["bytes_hashed"] == 0
    cache = host.file(res["cache_file"])
    assert cache.user == "root" and cache.mode == 0o600
    assert host.file(CACHE_DIR).mode == 0o700


def test_corrupted_truncated_and_missing_files_fail(host, adhoc, scratch):
    # one flipped byte in the middle of a shard, same size and (restored) mtime
    host.run_expect(
        [0],
        "touch -r {f} /tmp/ref && printf '\\377' | dd of={f} bs=1 seek=40000000 conv=notrunc status=none && touch -r /tmp/ref {f}".format(
            f="%s/%s" % (scratch, SHARDS[0])
        ),
    )
    host.run_expect([0], "truncate -s -4096 %s/%s" % (scratch, SHARDS[1]))
    host.run_expect([0], "rm %s/tokenizer/tokenizer.json" % scratch)
    res = adhoc("qwen3vl.ha.model_checksum", {"path": scratch, "manifest": MANIFEST})
    assert res["failed"] is True and res["ok"] is False
    assert sorted(res["bad_files"]) == sorted([SHARDS[0], SHARDS[1], "tokenizer/tokenizer.json"])
    status = {item["name"]: item["status"] for item in res["files"]}
    assert status[SHARDS[0]] == "digest_mismatch"
    assert status[SHARDS[1]] == "size_mismatch"
    assert status["tokenizer/tokenizer.json"] == "missing"
    assert status[SHARDS[2]] == "ok"
    assert "3 of %d files failed verification" % FILES in res["msg"]
    # the same check with sha256sum, the documented fallback, agrees
    fallback = host.run("cd %s && sha256sum -c --quiet %s" % (scratch, MANIFEST))
    assert fallback.rc != 0 and SHARDS[0] in fallback.stdout and SHARDS[2] not in fallback.stdout


def test_unreadable_file_fails_naming_it(host, adhoc, scratch):
    host.run_expect([0], "chmod 0755 %s && chmod 0600 %s/config.json" % (scratch, scratch))
    res = adhoc(
        "qwen3vl.ha.model_checksum",
        {"path": scratch, "manifest": MANIFEST, "cache": False, "fail_on_mismatch": False},
        become_user="modeluser",
    )
    assert res["failed"] is True
    assert "cannot verify, unreadable: config.json: unreadable: Permission denied (errno EACCES)" in res["msg"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "{digest}  ../../etc/passwd",
            "manifest_content: manifest line 2: name '../../etc/passwd' escapes the model directory",
        ),
        ("{digest}  /etc/passwd", "manifest line 2: absolute path '/etc/passwd'"),
        ("{digest} config.json", "manifest line 2: expected two spaces or ' *' between the digest and the name"),
    ],
)
def test_bad_manifest_fails_naming_the_line_and_writes_nothing(host, adhoc, line, expected):
    before = host.run("ls -l --time-style=full-iso %s" % CACHE_DIR).stdout
    first = host.file(MANIFEST).content_string.splitlines()[2]  # '# size', then the first file
    content = "%s\n%s\n" % (first, line.format(digest="0" * 64))
    res = adhoc("qwen3vl.ha.model_checksum", {"path": MODEL, "manifest_content": content})
    assert res["failed"] is True and expected in res["msg"]
    assert host.run("ls -l --time-style=full-iso %s" % CACHE_DIR).stdout == before


def test_check_mode_create_reports_and_writes_nothing(host, adhoc, scratch):
    host.run_expect([0], "echo '{}' > %s/new.json" % scratch)
    target = "%s.sha256" % scratch
    res = adhoc(
        "qwen3vl.ha.model_checksum", {"path": scratch, "mode": "create", "manifest": target, "cache": False}, check=True
    )
    assert res["changed"] is True
    assert not host.file(target).exists
