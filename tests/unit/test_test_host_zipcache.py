"""The test hosts' bytecode cache for zip imports (tools/test-host/qwen3vl_test_zipcache.py).

Each case runs a fresh Python that imports a package from a zip archive the way AnsiballZ does, with the
cache pointed at a temporary directory, and prints how many distinct files were really compiled (Python
3.11's zipimport compiles each file twice, once to learn its file name: the cache serves the second)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ZIPCACHE = Path(__file__).resolve().parents[2] / "tools" / "test-host" / "qwen3vl_test_zipcache.py"
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="only root writes the cache")

PROBE = """
import sys, zipimport
sys.path.insert(0, {tools!r})
import qwen3vl_test_zipcache as cache
cache.CACHE_DIR = {cache_dir!r}
calls = []
original = cache._compile_source
def counting(pathname, source):
    calls.append(pathname)
    return original(pathname, source)
cache._compile_source = counting
sys.path.insert(0, {archive!r})
import payload.mod as mod
print(mod.answer(), mod.where(), len(set(calls)))
"""


def make_archive(path, answer):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("payload/__init__.py", "")
        archive.writestr(
            "payload/mod.py",
            f"def answer():\n    return {answer}\n\ndef where():\n    return answer.__code__.co_filename\n",
        )


def run_probe(archive, cache_dir):
    code = PROBE.format(tools=str(ZIPCACHE.parent), cache_dir=str(cache_dir), archive=str(archive))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), out[1], int(out[2])


@NEEDS_ROOT
def test_second_import_reuses_the_compiled_code_and_names_its_own_archive(tmp_path):
    cache_dir = tmp_path / "cache"
    first, second = tmp_path / "run1" / "payload.zip", tmp_path / "run2" / "payload.zip"
    for archive in (first, second):
        archive.parent.mkdir()
        make_archive(archive, 42)

    assert run_probe(first, cache_dir) == (42, f"{first}/payload/mod.py", 2)  # both files compiled
    assert len(list(cache_dir.iterdir())) == 2
    assert oct(cache_dir.stat().st_mode & 0o777) == "0o755"
    # the same sources from another archive: nothing compiled, nested code names the new archive
    assert run_probe(second, cache_dir) == (42, f"{second}/payload/mod.py", 0)


def primed(tmp_path, answer):
    """An archive whose files one run has compiled into a new cache: (archive, cache directory)."""
    cache_dir = tmp_path / "cache"
    archive = tmp_path / "payload.zip"
    make_archive(archive, answer)
    run_probe(archive, cache_dir)
    return archive, cache_dir


@NEEDS_ROOT
def test_changed_source_is_compiled_again(tmp_path):
    archive, cache_dir = primed(tmp_path, 1)
    make_archive(archive, 2)
    assert run_probe(archive, cache_dir)[0::2] == (2, 1)  # mod.py again, the empty __init__ from the cache


@NEEDS_ROOT
def test_a_cache_others_may_write_is_not_read(tmp_path):
    archive, cache_dir = primed(tmp_path, 7)
    cache_dir.chmod(0o777)
    assert run_probe(archive, cache_dir) == (7, f"{archive}/payload/mod.py", 2)
