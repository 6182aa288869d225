"""The model_checksum core, without Ansible, on real files; coreutils sha256sum is the reference."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.qwen3vl.ha.plugins.module_utils import model_checksum as core

TRICKY_NAMES = [
    "plain.json",
    "back\\slash.bin",
    "new\nline.txt",
    "car\rriage",
    "*star",
    " lead space",
    "sub/dir/x.json",
]
SHA256SUM = shutil.which("sha256sum")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def make_tree(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def model(tmp_path):
    files = {
        "model-00001-of-00002.safetensors": os.urandom(3 * 1024 * 1024 + 17),
        "model-00002-of-00002.safetensors": os.urandom(1024 * 1024 + 5),
        "config.json": b'{"model_type": "qwen3_vl"}\n',
        "tokenizer/tokenizer.json": b"{}\n",
    }
    root = make_tree(tmp_path / "model", files)
    entries = [core.ManifestEntry(name, sha(data), len(data)) for name, data in files.items()]
    return root, files, entries


# -- names and manifest format ------------------------------------------------------------------


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_escape_round_trip(name):
    escaped, prefix = core.escape_name(name)
    assert prefix == any(char in name for char in "\\\n\r")
    assert "\n" not in escaped and "\r" not in escaped
    assert core.unescape_name(escaped) == name


@pytest.mark.skipif(SHA256SUM is None, reason="coreutils sha256sum not installed")
def test_reads_what_coreutils_writes_and_coreutils_reads_what_we_write(tmp_path):
    root = make_tree(tmp_path / "m", {name: name.encode() * 3 for name in TRICKY_NAMES})
    names = sorted(core.list_files(root))
    assert names == sorted(TRICKY_NAMES)
    theirs = subprocess.run([SHA256SUM, "--", *names], cwd=root, capture_output=True, text=True, check=True).stdout
    parsed = core.parse_manifest(theirs)
    assert {(e.name, e.digest) for e in parsed} == {(n, sha(n.encode() * 3)) for n in TRICKY_NAMES}
    # binary-mode lines (" *name") read the same
    binary = subprocess.run([SHA256SUM, "-b", "--", *names], cwd=root, capture_output=True, text=True, check=True)
    assert [e.key() for e in core.parse_manifest(binary.stdout)] == [e.key() for e in parsed]
    # our manifest, size comments included, passes sha256sum -c --strict
    ours = core.format_manifest([core.ManifestEntry(e.name, e.digest, 9) for e in parsed])
    (tmp_path / "SUMS").write_text(ours)
    check = subprocess.run(
        [SHA256SUM, "-c", "--strict", str(tmp_path / "SUMS")], cwd=root, capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(TRICKY_NAMES)


def test_parse_sizes_tagged_crlf_and_comments():
    digest = "ab" * 32
    text = "# header\r\n# size 12\r\n%s  a.bin\r\n\r\nSHA256 (b c.json) = %s\n%s *./d/e\n" % (
        digest,
        digest.upper(),
        digest,
    )
    entries = core.parse_manifest(text)
    assert [e.key() for e in entries] == [("a.bin", digest, 12), ("b c.json", digest, None), ("d/e", digest, None)]
    assert [e.line for e in entries] == [3, 5, 6]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("%s  ok\nnot-a-digest  x\n" % ("0" * 64), 2, "sha256sum format"),
        ("%s x\n" % ("0" * 64), 1, "two spaces"),
        ("%s  ../etc/passwd\n" % ("0" * 64), 1, "escapes the model directory"),
        ("%s  a/../../b\n" % ("0" * 64), 1, "escapes the model directory"),
        ("%s  /etc/shadow\n" % ("0" * 64), 1, "absolute path"),
        ("%s  a\n%s  ./a\n" % ("0" * 64, "1" * 64), 2, "already listed on line 1"),
        ("# size 4\n# size 5\n%s  a\n" % ("0" * 64), 2, "follows another"),
        ("%s  a\n# size 4\n" % ("0" * 64), 2, "not followed"),
        ("\\%s  bad\\tescape\n" % ("0" * 64), 1, "unknown escape"),
        ("%s  \n" % ("0" * 64), 1, "two spaces"),
        ("%s  .\n" % ("0" * 64), 1, "not a file name"),
    ],
)
def test_bad_manifest_lines_name_the_line(text, line, words):
    with pytest.raises(core.ManifestError) as err:
        core.parse_manifest(text)
    assert "manifest line %d:" % line in str(err.value)
    assert words in str(err.value)


def test_format_is_sorted_and_parses_back(model):
    _root, _files, entries = model
    text = core.format_manifest(list(reversed(entries)))
    parsed = core.parse_manifest(text)
    assert [e.key() for e in parsed] == sorted(e.key() for e in entries)
    assert "# size " not in core.format_manifest(entries, with_sizes=False)


# -- listing and hashing --------------------------------------------------------------------


def test_list_files_excludes_skips_and_does_not_follow_dir_links(tmp_path):
    root = make_tree(tmp_path / "m", {"a": b"1", ".cache/huggingface/x": b"2", "SHA256SUMS": b"", "d/b": b"3"})
    (root / "linkdir").symlink_to(root / "d")
    (root / "linkfile").symlink_to(root / "a")
    names = core.list_files(root, exclude=[".cache/*"], skip=[str(root / "SHA256SUMS")])
    assert names == ["a", "d/b", "linkfile"]


@pytest.mark.parametrize(("workers", "read_ahead"), [(1, 0), (2, 0), (2, 8192), (3, 1 << 20), (8, 1 << 20)])
def test_parallel_hash_matches_hashlib_with_tiny_slices(tmp_path, workers, read_ahead):
    """Slices of 4 KiB force every file through many threads; digests must still be exact."""
    blobs = {"f%d" % i: os.urandom(size) for i, size in enumerate([0, 1, 4095, 4096, 70001, 300007])}
    root = make_tree(tmp_path / "m", blobs)
    jobs = [(name, str(root / name), len(data)) for name, data in blobs.items()]
    digests, errors = core.hash_files(jobs, workers=workers, buffer_size=1000, slice_size=4096, read_ahead=read_ahead)
    assert errors == {}
    assert {name: value[0] for name, value in digests.items()} == {name: sha(data) for name, data in blobs.items()}


def test_hash_errors_are_per_file(tmp_path):
    root = make_tree(tmp_path / "m", {"good": b"x"})
    (root / "adir").mkdir()
    (root / "eio").symlink_to("/proc/self/mem")  # a regular file whose first read fails with EIO, even for root
    jobs = [(n, str(root / n), 1) for n in ("good", "adir", "eio", "gone")]
    digests, errors = core.hash_files(jobs, workers=2)
    assert set(digests) == {"good"}
    assert errors["adir"] == "not a regular file"
    assert "EIO" in errors["eio"]
    assert "ENOENT" in errors["gone"]


def test_worker_count():
    assert core.worker_count(0, 1) == 1
    assert core.worker_count(4, 2) == 2
    assert core.worker_count(0, 1000) == core.available_cpus()


# -- verify ---------------------------------------------------------------------------------


def test_verify_good_tree(model):
    root, _files, entries = model
    out = core.verify(str(root), entries)
    assert out["bad"] == [] and out["warnings"] == []
    assert {f["status"] for f in out["files"]} == {"ok"}
    assert out["summary"]["ok"] == 4 and out["summary"]["bytes_hashed"] == sum(e.size for e in entries)
    assert set(out["cache"]) == {e.name for e in entries}


def test_verify_finds_each_kind_of_damage(model):
    root, files, entries = model
    first, second = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
    data = bytearray(files[first])
    data[12345] ^= 0x01  # one flipped bit, same size
    (root / first).write_bytes(bytes(data))
    (root / second).write_bytes(files[second][:-1])  # truncated by one byte
    (root / "config.json").unlink()
    (root / "notes.txt").write_text("left behind\n")
    out = core.verify(str(root), entries, extra_files="fail")
    status = {f["name"]: f["status"] for f in out["files"]}
    assert status == {
        first: "digest_mismatch",
        second: "size_mismatch",
        "config.json": "missing",
        "tokenizer/tokenizer.json": "ok",
        "notes.txt": "extra",
    }
    by_name = {f["name"]: f for f in out["files"]}
    assert by_name[second]["source"] is None  # size mismatch: never read
    assert sorted(out["bad"]) == sorted([first, second, "config.json", "notes.txt"])
    assert set(out["cache"]) == {"tokenizer/tokenizer.json"}
    text = "\n".join(core.describe_bad(out["files"], "fail"))
    assert "flipped" not in text and first in text and "size %d" % (len(files[second]) - 1) in text
    summary = out["summary"]
    assert (summary["digest_mismatch"], summary["size_mismatch"], summary["missing"], summary["extra"]) == (1, 1, 1, 1)


@pytest.mark.parametrize(
    ("policy", "bad", "warned"), [("ignore", [], False), ("warn", [], True), ("fail", ["x.bin"], False)]
)
def test_extra_file_policy(model, policy, bad, warned):
    root, _files, entries = model
    (root / "x.bin").write_bytes(b"x")
    out = core.verify(str(root), entries, extra_files=policy)
    assert out["bad"] == bad
    assert bool(out["warnings"]) is warned
    assert ("x.bin" in [f["name"] for f in out["files"]]) is (policy != "ignore")


def test_unsized_manifest_still_catches_truncation_by_digest(model):
    root, files, entries = model
    name = "model-00002-of-00002.safetensors"
    (root / name).write_bytes(files[name][:100])
    unsized = [core.ManifestEntry(e.name, e.digest) for e in entries]
    out = core.verify(str(root), unsized)
    assert out["bad"] == [name]
    assert next(f for f in out["files"] if f["name"] == name)["status"] == "digest_mismatch"


# -- the verified-state cache ---------------------------------------------------------------------


def test_cache_skips_unchanged_files(model):
    root, _files, entries = model
    first = core.verify(str(root), entries)
    second = core.verify(str(root), entries, cache=first["cache"])
    assert {f["source"] for f in second["files"]} == {"cache"}
    assert second["summary"]["bytes_hashed"] == 0 and second["summary"]["cached"] == 4
    forced = core.verify(str(root), entries, cache=first["cache"], force=True)
    assert {f["source"] for f in forced["files"]} == {"hash"}


def test_cache_never_passes_a_file_changed_in_place_with_its_mtime_restored(model):
    root, files, entries = model
    name = "model-00001-of-00002.safetensors"
    cache = core.verify(str(root), entries)["cache"]
    path = root / name
    before = path.stat()
    data = bytearray(files[name])
    data[-1] ^= 0xFF
    with open(path, "r+b") as handle:  # same inode, same size
        handle.write(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # hide the write from mtime; ctime still moves
    out = core.verify(str(root), entries, cache=cache)
    result = next(f for f in out["files"] if f["name"] == name)
    assert (result["status"], result["source"]) == ("digest_mismatch", "hash")
    assert name not in out["cache"]


def test_cached_digest_that_disagrees_with_the_manifest_is_rehashed(model):
    root, _files, entries = model
    cache = core.verify(str(root), entries)["cache"]
    name = entries[0].name
    cache[name] = dict(cache[name], sha256="0" * 64)
    out = core.verify(str(root), entries, cache=cache)
    result = next(f for f in out["files"] if f["name"] == name)
    assert (result["status"], result["source"]) == ("ok", "hash")


def test_cache_max_age(model):
    root, _files, entries = model
    cache = core.verify(str(root), entries, now=1000)["cache"]
    fresh = core.verify(str(root), entries, cache=cache, now=1500, max_age=600)
    stale = core.verify(str(root), entries, cache=cache, now=1700, max_age=600)
    assert fresh["summary"]["cached"] == 4
    assert stale["summary"]["cached"] == 0


def test_cache_file_round_trip_and_trust_rules(tmp_path, model):
    root, _files, entries = model
    path = core.cache_file_for(str(tmp_path / "cache"), str(root))
    assert core.load_cache(path, str(root)) == ({}, None)
    entries_cache = core.verify(str(root), entries)["cache"]
    assert core.save_cache(path, str(root), entries_cache) is None
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert core.load_cache(path, str(root)) == (entries_cache, None)
    assert core.load_cache(path, str(tmp_path)) == ({}, None)  # another directory's cache
    os.chmod(path, 0o666)
    loaded, warning = core.load_cache(path, str(root))
    assert loaded == {} and "not group/other writable" in warning
    os.chmod(path, 0o600)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("{not json")
    loaded, warning = core.load_cache(path, str(root))
    assert loaded == {} and "not used" in warning
    assert json.loads(json.dumps(entries_cache))  # plain JSON types only


def test_save_cache_reports_instead_of_raising(tmp_path, model):
    root, _files, _entries = model
    blocker = tmp_path / "file"
    blocker.write_text("")
    warning = core.save_cache(str(blocker / "sub" / "c.json"), str(root), {})
    assert warning and "not written" in warning


# -- create -----------------------------------------------------------------------------------


def test_create_then_verify(model):
    root, files, _entries = model
    entries, results, cache, errors, summary = core.create(str(root), skip=[str(root / "SHA256SUMS")])
    assert errors == {}
    assert sorted(e.key() for e in entries) == sorted((n, sha(d), len(d)) for n, d in files.items())
    assert [f["status"] for f in results] == ["ok"] * 4
    assert summary["bytes_hashed"] == sum(len(d) for d in files.values())
    text = core.format_manifest(entries)
    assert core.verify(str(root), core.parse_manifest(text), cache=cache)["summary"]["cached"] == 4


def test_create_reports_unreadable_files(model):
    root, _files, _entries = model
    (root / "broken").symlink_to("does-not-exist")
    entries, results, _cache, errors, _summary = core.create(str(root))
    assert "broken" in errors and "broken" not in [e.name for e in entries]
    assert next(f for f in results if f["name"] == "broken")["status"] == "unreadable"


# -- links out of the model directory ------------------------------------------------------------


def test_escapes_names_where_a_link_out_of_the_directory_leads(tmp_path):
    root = make_tree(tmp_path / "m", {"a": b"1", "d/b": b"2"})
    outside = make_tree(tmp_path / "o", {"x": b"3"})
    (root / "in").symlink_to("d/b")
    (root / "up").symlink_to("../o/x")
    (root / "dir").symlink_to(outside)
    assert core.escapes(str(root), str(root / "a")) is None
    assert core.escapes(str(root), str(root / "in")) is None
    assert core.escapes(str(root), str(root / "up")) == str(outside / "x")
    assert core.escapes(str(root), str(root / "dir" / "x")) == str(outside / "x")
    # a sibling whose name starts with the directory's is outside too
    make_tree(tmp_path / "m2", {"y": b"4"})
    (root / "sib").symlink_to("../m2/y")
    assert core.escapes(str(root), str(root / "sib")) == str(tmp_path / "m2" / "y")


def test_verify_refuses_a_link_out_of_the_directory_without_reading_it(model):
    root, files, entries = model
    (root / "config.json").unlink()
    (root / "config.json").symlink_to("/proc/self/mem")  # reading it would fail with EIO: it is never read
    out = core.verify(str(root), entries)
    mem = os.path.realpath("/proc/self/mem")  # /proc/<pid>/mem: where the link really leads
    item = next(f for f in out["files"] if f["name"] == "config.json")
    assert (item["status"], item["target"], item["size"], item["sha256"]) == ("outside", mem, None, None)
    assert out["bad"] == ["config.json"] and "config.json" not in out["cache"]
    assert core.describe_bad([item]) == [
        "config.json: a symbolic link out of the model directory, to %s (a model container mounts "
        "only the directory, where the link is broken; copy the file into the directory)" % mem
    ]
    followed = core.verify(str(root), entries, outside_links="follow")
    # followed: stat'ed through the link (0 bytes, so the size differs before anything is read)
    assert next(f for f in followed["files"] if f["name"] == "config.json")["status"] == "size_mismatch"


def test_verify_through_a_directory_link_out_of_the_directory_is_refused(model, tmp_path):
    root, files, entries = model
    elsewhere = make_tree(tmp_path / "elsewhere", {"tokenizer.json": files["tokenizer/tokenizer.json"]})
    (root / "tokenizer" / "tokenizer.json").unlink()
    (root / "tokenizer").rmdir()
    (root / "tokenizer").symlink_to(elsewhere)
    out = core.verify(str(root), entries)
    assert out["bad"] == ["tokenizer/tokenizer.json"]
    assert out["summary"]["outside"] == 1 and out["summary"]["ok"] == 3


def test_create_leaves_out_and_reports_a_link_out_of_the_directory(model):
    root, _files, _entries = model
    (root / "leak").symlink_to("/proc/self/mem")
    entries, results, _cache, errors, summary = core.create(str(root))
    assert "leak" not in [e.name for e in entries]
    mem = os.path.realpath("/proc/self/mem")
    assert errors["leak"].startswith("a symbolic link out of the model directory, to %s " % mem)
    assert next(f for f in results if f["name"] == "leak")["status"] == "outside"
    assert summary["outside"] == 1
