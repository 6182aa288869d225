"""qwen3vl.ha.model_checksum through the real ansible CLI, on real files in a temp directory."""

import hashlib
import os

import pytest
from module_runner import run_module as run_any

SHARDS = {"model-00001-of-00002.safetensors": 2_000_003, "model-00002-of-00002.safetensors": 700_001}


def run_module(args, check=False):
    return run_any("qwen3vl.ha.model_checksum", args, check=check)


@pytest.fixture
def model(tmp_path):
    root = tmp_path / "Qwen3-VL-4B-Instruct"
    (root / "tokenizer").mkdir(parents=True)
    for name, size in SHARDS.items():
        (root / name).write_bytes(os.urandom(size))
    (root / "config.json").write_text('{"architectures": ["Qwen3VLForConditionalGeneration"]}\n')
    (root / "tokenizer" / "vocab.json").write_text("{}\n")
    return root


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


def created(model, cache_dir, **extra):
    args = {"path": str(model), "mode": "create", "cache_dir": str(cache_dir)}
    args.update(extra)
    res = run_module(args)
    assert res.get("failed") is not True, res
    return res


def test_create_writes_manifest_once(model, cache_dir):
    res = created(model, cache_dir)
    manifest = model / "SHA256SUMS"
    assert res["changed"] is True and res["manifest"] == str(manifest)
    text = manifest.read_text()
    for name, size in SHARDS.items():
        digest = hashlib.sha256((model / name).read_bytes()).hexdigest()
        assert "# size %d\n%s  %s\n" % (size, digest, name) in text
    assert "SHA256SUMS" not in [f["name"] for f in res["files"]]
    assert oct(manifest.stat().st_mode & 0o777) == "0o644"
    again = created(model, cache_dir)
    assert again["changed"] is False


def test_create_in_check_mode_writes_nothing(model, cache_dir):
    res = run_module({"path": str(model), "mode": "create", "cache_dir": str(cache_dir)}, check=True)
    assert res["changed"] is True
    assert not (model / "SHA256SUMS").exists()
    assert not cache_dir.exists()


def test_verify_uses_cache_on_second_run(model, cache_dir):
    created(model, cache_dir, cache=False)
    first = run_module({"path": str(model), "cache_dir": str(cache_dir)})
    assert first["changed"] is False and first["ok"] is True
    assert first["summary"]["cached"] == 0 and first["summary"]["ok"] == 4
    second = run_module({"path": str(model), "cache_dir": str(cache_dir)})
    assert second["summary"]["cached"] == 4 and second["summary"]["bytes_hashed"] == 0
    forced = run_module({"path": str(model), "cache_dir": str(cache_dir), "force": True})
    assert forced["summary"]["cached"] == 0


def test_verify_in_check_mode_does_not_write_cache(model, cache_dir):
    created(model, cache_dir, cache=False)
    res = run_module({"path": str(model), "cache_dir": str(cache_dir)}, check=True)
    assert res["ok"] is True
    assert not cache_dir.exists()


def test_corrupt_truncated_and_missing_files_fail_naming_each(model, cache_dir):
    created(model, cache_dir)
    first, second = list(SHARDS)
    with open(model / first, "r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0x40]))
    with open(model / second, "r+b") as handle:
        handle.truncate(SHARDS[second] // 2)
    (model / "tokenizer" / "vocab.json").unlink()
    res = run_module({"path": str(model), "cache_dir": str(cache_dir)})
    assert res["failed"] is True and res["ok"] is False
    assert sorted(res["bad_files"]) == sorted([first, second, "tokenizer/vocab.json"])
    assert "3 of 4 files failed verification" in res["msg"]
    assert "%s: sha256 " % first in res["msg"]
    assert "%s: size %d, manifest says %d" % (second, SHARDS[second] // 2, SHARDS[second]) in res["msg"]
    assert "tokenizer/vocab.json: missing" in res["msg"]


def test_report_only_is_usable_in_when(model, cache_dir):
    created(model, cache_dir)
    (model / "config.json").write_text("{}\n")
    res = run_module({"path": str(model), "cache_dir": str(cache_dir), "fail_on_mismatch": False})
    assert res.get("failed") is not True
    assert res["ok"] is False and res["bad_files"] == ["config.json"]


def test_extra_files_policy(model, cache_dir):
    created(model, cache_dir)
    (model / "stray.bin").write_bytes(b"x")
    warn = run_module({"path": str(model), "cache_dir": str(cache_dir)})
    assert warn["ok"] is True and any("stray.bin" in w for w in warn.get("warnings", []))
    fail = run_module({"path": str(model), "cache_dir": str(cache_dir), "extra_files": "fail"})
    assert fail["failed"] is True and "stray.bin: not in the manifest" in fail["msg"]


def test_manifest_content_from_controller(model, cache_dir, tmp_path):
    created(model, cache_dir, manifest=str(tmp_path / "elsewhere.sha256"))
    text = (tmp_path / "elsewhere.sha256").read_text()
    res = run_module({"path": str(model), "manifest_content": text, "cache": False, "extra_files": "fail"})
    assert res["ok"] is True and res["manifest"] is None and res["cache_file"] is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("not a checksum line", "manifest line 2: expected '<64 hex digits>  <name>'"),
        ("%s  ../../etc/passwd" % ("0" * 64), "manifest line 2: name '../../etc/passwd' escapes the model directory"),
        ("%s  /etc/passwd" % ("0" * 64), "manifest line 2: absolute path '/etc/passwd'"),
    ],
)
def test_bad_manifest_fails_naming_the_line_and_writes_nothing(model, cache_dir, line, words):
    manifest = model / "SHA256SUMS"
    manifest.write_text(
        "%s  config.json\n%s\n" % (hashlib.sha256((model / "config.json").read_bytes()).hexdigest(), line)
    )
    res = run_module({"path": str(model), "cache_dir": str(cache_dir)})
    assert res["failed"] is True
    assert words in res["msg"] and str(manifest) in res["msg"]
    assert not cache_dir.exists()


def test_unreadable_file_fails_even_in_report_mode_and_writes_nothing(model, cache_dir):
    created(model, cache_dir, cache=False, sizes=False)  # no sizes: the check has to read the file
    (model / "config.json").unlink()
    (model / "config.json").symlink_to("/proc/self/mem")  # stat says a 0-byte regular file; reading fails (EIO)
    # the link leads out of the directory, which is refused before anything is read unless links are followed
    args = {"path": str(model), "cache_dir": str(cache_dir), "fail_on_mismatch": False, "outside_links": "follow"}
    res = run_module(args)
    assert res["failed"] is True
    assert "cannot verify, unreadable: config.json: unreadable:" in res["msg"]
    assert not cache_dir.exists()


def test_bad_parameters(model, cache_dir):
    missing = run_module({"path": str(model / "nope")})
    assert missing["failed"] is True and "is not a directory" in missing["msg"]
    no_manifest = run_module({"path": str(model), "cache": False})
    assert no_manifest["failed"] is True and "SHA256SUMS does not exist" in no_manifest["msg"]
    workers = run_module({"path": str(model), "workers": -1})
    assert workers["failed"] is True and "workers must be 0 or more" in workers["msg"]
    both = run_module({"path": str(model), "mode": "create", "manifest_content": "x"})
    assert both["failed"] is True and "manifest_content is only for mode=verify" in both["msg"]
    mode = run_module({"path": str(model), "mode": "create", "manifest_mode": "rw-r"})
    assert mode["failed"] is True and "manifest_mode" in mode["msg"]
    assert not (model / "SHA256SUMS").exists() and not cache_dir.exists()


# --- links out of the model directory -----------------------------------------------------------


def test_a_link_out_of_the_directory_fails_naming_it_and_never_prints_what_it_leads_to(model, cache_dir, tmp_path):
    """config.json becomes a link to a file outside the directory (a stand-in for /etc/shadow): verify fails
    naming the link and its target, even in report mode, and no digest or size of the outside file appears."""
    created(model, cache_dir, cache=False)
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$not-a-real-hash:19000:0:99999:7:::\n")
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(secret)
    res = run_module({"path": str(model), "cache_dir": str(cache_dir), "fail_on_mismatch": False})
    assert res.get("failed") is not True and res["ok"] is False, res
    assert res["bad_files"] == ["config.json"]
    item = next(f for f in res["files"] if f["name"] == "config.json")
    assert (item["status"], item["target"], item["sha256"], item["size"]) == ("outside", str(secret), None, None)
    assert "config.json: a symbolic link out of the model directory, to %s" % secret in res["msg"]
    assert res["summary"]["outside"] == 1
    text = repr(res)
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in text
    assert str(secret.stat().st_size) not in [str(f.get("size")) for f in res["files"]]
    failing = run_module({"path": str(model), "cache_dir": str(cache_dir)})
    assert failing["failed"] is True and "config.json: a symbolic link out of" in failing["msg"]


def test_create_refuses_a_link_out_of_the_directory_and_writes_nothing(model, cache_dir, tmp_path):
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}\n")
    (model / "extra.json").symlink_to(outside)
    res = run_module({"path": str(model), "mode": "create", "cache_dir": str(cache_dir)})
    assert res["failed"] is True
    expected = "cannot add to the manifest: extra.json: a symbolic link out of the model directory, to %s" % outside
    assert expected in res["msg"]
    assert not (model / "SHA256SUMS").exists()
    followed = created(model, cache_dir, outside_links="follow")  # the directory's users see the same filesystem
    assert "extra.json" in (model / "SHA256SUMS").read_text() and followed["ok"] is True


def test_a_link_that_stays_inside_the_directory_is_followed(model, cache_dir):
    (model / "tokenizer" / "config.json").symlink_to("../config.json")
    created(model, cache_dir)
    assert "tokenizer/config.json" in (model / "SHA256SUMS").read_text()
    res = run_module({"path": str(model), "cache_dir": str(cache_dir)})
    assert res.get("failed") is not True and res["ok"] is True, res
