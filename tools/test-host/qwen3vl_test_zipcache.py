"""Test hosts only: keep the bytecode Python compiles for code it imports from zip archives.

Ansible sends every module it runs as a zip archive (AnsiballZ) and Python imports the module and
ansible.module_utils from that archive. Python never caches bytecode for zip imports, so every task
compiled ansible.module_utils again on the test host (Python 3.11 compiles each file twice). Measured on
these machines, 40 no-op stat tasks against one host: 21 CPU-s without this, 18 with it (11-12 without
re-pointing the code objects at each run's archive, which keeps tracebacks true and costs about 18 ms per
module run).

Installed by tools/bootstrap-docker.sh into the systemd base image that molecule and the lab use (a
.pth line imports it when Python starts); never part of the collection or of a production host. It
replaces zipimport's compile step with a cache lookup keyed by the Python version, the file's path
inside the archive and the SHA-256 of its source, so the code that runs is exactly what compile()
would have produced from the same source. Only root writes the cache; a cache directory that is not
root's, or that others may write, is not read.
"""

import hashlib
import marshal
import os
import stat
import sys
import zipimport

CACHE_DIR = "/var/cache/qwen3vl-test-pyc"
_compile_source = getattr(zipimport, "_compile_source", None)


def _with_filename(code, filename):
    """The code object and every code object nested in it, naming filename (this run's archive)."""
    consts = tuple(_with_filename(c, filename) if isinstance(c, type(code)) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _cache_is_trusted():
    try:
        st = os.lstat(CACHE_DIR)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


def _key(pathname, source):
    inner = pathname.rsplit(".zip" + os.sep, 1)[-1]
    digest = hashlib.sha256()
    for part in (sys.version.encode(), inner.encode(), source):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _store(path, code):
    if not os.path.isdir(CACHE_DIR):
        os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
        os.chmod(CACHE_DIR, 0o755)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "wb") as handle:
        handle.write(marshal.dumps(code))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def cached_compile_source(pathname, source):
    path = os.path.join(CACHE_DIR, _key(pathname, source))
    if _cache_is_trusted():
        try:
            with open(path, "rb") as handle:
                return _with_filename(marshal.loads(handle.read()), pathname)
        except (OSError, EOFError, ValueError, TypeError):
            pass
    code = _compile_source(pathname, source)
    if os.geteuid() == 0:
        try:
            _store(path, code)
        except OSError:
            pass
    return code


if _compile_source is not None:
    zipimport._compile_source = cached_compile_source
