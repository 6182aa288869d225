# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Verify a model snapshot directory against a sha256sum-format manifest.

Pure Python, no Ansible: the module ``qwen3vl.ha.model_checksum`` is a thin wrapper and the unit
tests call these functions directly.

Manifest format (``sha256sum -c`` reads it unchanged):

    # size 3968215040
    7f3c...e1  model-00001-of-00003.safetensors

* ``<64 hex>  <name>`` (text marker) or ``<64 hex> *<name>`` (binary marker); the BSD tagged form
  ``SHA256 (<name>) = <64 hex>`` is read too.
* A name holding a backslash, newline or carriage return is escaped as GNU coreutils does: the
  line starts with a backslash and the name carries ``\\\\``, ``\\n``, ``\\r``.
* Lines starting with ``#`` are comments (coreutils skips them). ``# size <bytes>`` is this
  project's optional size of the entry on the next line: the size check is free and runs first.

Hashing: files are read with ``os.preadv`` into one reusable buffer per worker and fed to
``hashlib.sha256`` (OpenSSL, SHA-NI where the CPU has it; it releases the GIL). Files are hashed by
a pool of ``min(cpus, files)`` threads that always work on the file with the most bytes left. A
file is hashed in slices; between slices it may move to another thread (its hash state goes with
it), so one big shard does not leave a core idle at the end while another thread still has two
files queued. Only one thread works on a file at any time: a digest is sequential.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import stat
import tempfile
import threading
import time

HEX_LEN = 64
CACHE_VERSION = 1
DEFAULT_BUFFER = 1 << 20  # 1 MiB: measured fastest here among 128 KiB .. 8 MiB and mmap
DEFAULT_SLICE = 64 << 20  # a file may change thread every 64 MiB (about 40 ms of hashing)
DEFAULT_READ_AHEAD = 512 << 20  # requested from the disk ahead of each file being hashed
READ_AHEAD_STEP = 32 << 20
MANIFEST_HEADER = "# qwen3vl.ha model_checksum manifest (sha256sum format; '# size' lines are optional)"

STATUS_OK = "ok"
STATUS_MISSING = "missing"
STATUS_SIZE = "size_mismatch"
STATUS_DIGEST = "digest_mismatch"
STATUS_UNREADABLE = "unreadable"
STATUS_NOT_FILE = "not_a_file"
STATUS_EXTRA = "extra"
# What a name leading out of the directory through a symbolic link gets, instead of a size or a digest: a model
# container mounts only the directory, so the link is broken in there, and what it points at is not the
# manifest's to vouch for (nor to print a digest of).
STATUS_OUTSIDE = "outside"
BAD_STATUSES = (STATUS_MISSING, STATUS_SIZE, STATUS_DIGEST, STATUS_UNREADABLE, STATUS_NOT_FILE, STATUS_OUTSIDE)
# outside_links: refuse such a name (the default), or follow the link.
OUTSIDE_LINKS = ("refuse", "follow")

_HEX_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_SIZE_RE = re.compile(r"^#\s*size\s+(\d+)\s*$")
_TAGGED_RE = re.compile(r"^SHA256 \((.*)\) = ([0-9a-fA-F]{64})$")


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message names the line."""


class ManifestEntry:
    __slots__ = ("name", "digest", "size", "line")

    def __init__(self, name, digest, size=None, line=0):
        self.name = name
        self.digest = digest.lower()
        self.size = size
        self.line = line

    def __repr__(self):
        return "ManifestEntry(%r, %r, size=%r, line=%r)" % (self.name, self.digest, self.size, self.line)

    def key(self):
        return (self.name, self.digest, self.size)


# --------------------------------------------------------------------------------------------
# Names


def escape_name(name):
    """Return (escaped, needs_prefix) the way GNU coreutils writes a name into a checksum line."""
    if "\\" not in name and "\n" not in name and "\r" not in name:
        return name, False
    return name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r"), True


def unescape_name(text):
    """Undo escape_name. Raises ValueError on an escape coreutils would not write."""
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(text):
            raise ValueError("name ends with a lone backslash")
        code = text[i + 1]
        if code == "\\":
            out.append("\\")
        elif code == "n":
            out.append("\n")
        elif code == "r":
            out.append("\r")
        else:
            raise ValueError("unknown escape '\\%s' in name" % code)
        i += 2
    return "".join(out)


def check_name(name):
    """Return the normalised relative name, or raise ValueError if it could leave the directory."""
    if not name:
        raise ValueError("empty file name")
    if "\0" in name:
        raise ValueError("file name contains a NUL byte")
    if name.startswith("/"):
        raise ValueError("absolute path %r: names must be relative to the model directory" % name)
    parts = name.split("/")
    if ".." in parts:
        raise ValueError("name %r escapes the model directory ('..')" % name)
    norm = posixpath.normpath(name)
    if norm in (".", "") or norm.endswith("/"):
        raise ValueError("name %r is not a file name" % name)
    return norm


# --------------------------------------------------------------------------------------------
# Manifest


def parse_manifest(text):
    """Parse manifest text into a list of ManifestEntry, in file order.

    Raises ManifestError naming the first line that is malformed, names a path outside the
    directory, or repeats a name.
    """
    entries = []
    seen = {}
    pending_size = None
    pending_line = 0
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line.strip():
            continue
        if line.startswith("#"):
            match = _SIZE_RE.match(line)
            if match:
                if pending_size is not None:
                    raise ManifestError(
                        "manifest line %d: '# size' follows another '# size' (line %d)" % (number, pending_line)
                    )
                pending_size = int(match.group(1))
                pending_line = number
            continue
        try:
            name, digest = _parse_entry_line(line)
            name = check_name(name)
        except ValueError as exc:
            raise ManifestError("manifest line %d: %s" % (number, exc)) from None
        if name in seen:
            raise ManifestError("manifest line %d: %r is already listed on line %d" % (number, name, seen[name]))
        seen[name] = number
        entries.append(ManifestEntry(name, digest, pending_size, number))
        pending_size = None
    if pending_size is not None:
        raise ManifestError("manifest line %d: '# size' is not followed by a checksum line" % pending_line)
    return entries


def _parse_entry_line(line):
    escaped = line.startswith("\\")
    body = line[1:] if escaped else line
    tagged = _TAGGED_RE.match(body)
    if tagged:
        name, digest = tagged.group(1), tagged.group(2)
    else:
        digest = body[:HEX_LEN]
        if not _HEX_RE.match(digest):
            raise ValueError("expected '<64 hex digits>  <name>' (sha256sum format), got %r" % _clip(line))
        if len(body) < HEX_LEN + 3 or body[HEX_LEN] != " " or body[HEX_LEN + 1] not in " *":
            raise ValueError("expected two spaces or ' *' between the digest and the name, got %r" % _clip(line))
        name = body[HEX_LEN + 2 :]
    if escaped:
        name = unescape_name(name)
    return name, digest


def _clip(text, limit=80):
    return text if len(text) <= limit else text[:limit] + "..."


def format_manifest(entries, with_sizes=True):
    """Render entries (sorted by name) as manifest text that ``sha256sum -c`` accepts."""
    out = [MANIFEST_HEADER]
    for entry in sorted(entries, key=lambda item: item.name):
        if with_sizes and entry.size is not None:
            out.append("# size %d" % entry.size)
        escaped, prefix = escape_name(entry.name)
        out.append("%s%s  %s" % ("\\" if prefix else "", entry.digest, escaped))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# Directory listing


def list_files(root, exclude=(), skip=()):
    """Relative names of the regular files (and symlinks to them) under root, sorted.

    ``exclude`` holds fnmatch patterns matched against the relative name ('*' also matches '/');
    ``skip`` holds absolute paths never listed (the manifest and cache themselves).
    Symlinked directories are not followed.
    """
    return sorted(scan_files(root, exclude, skip))


def escapes(root, path):
    """Where ``path`` really leads when that is outside the directory ``root`` (through a symbolic link on the
    way), else None."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
        return None
    return real


def scan_files(root, exclude=(), skip=(), outside=None):
    """{relative name: size} of what list_files() lists; a dangling link is listed with size 0
    (reading it reports the error). With ``outside`` (a dict), a name whose link leads out of root is left
    out and recorded there as {name: where it leads}, never stat'ed or read."""
    skip_real = set(os.path.realpath(path) for path in skip if path)
    sizes = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for filename in filenames:
            full = os.path.join(dirpath, filename)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude):
                continue
            if os.path.realpath(full) in skip_real:
                continue
            if outside is not None:
                target = escapes(root, full)
                if target is not None:
                    outside[rel] = target
                    continue
            try:
                st = os.stat(full)
            except OSError:
                sizes[rel] = 0
                continue
            if stat.S_ISREG(st.st_mode):
                sizes[rel] = st.st_size
    return sizes


# --------------------------------------------------------------------------------------------
# Parallel hashing


class _Job:
    __slots__ = ("name", "path", "size", "offset", "hasher", "fd", "busy", "done", "before")

    def __init__(self, name, path, size):
        self.name = name
        self.path = path
        self.size = size
        self.offset = 0
        self.hasher = hashlib.sha256()
        self.fd = None
        self.busy = False
        self.done = False
        self.before = None


def hash_files(jobs, workers=0, buffer_size=DEFAULT_BUFFER, slice_size=DEFAULT_SLICE, read_ahead=DEFAULT_READ_AHEAD):
    """Hash files in parallel.

    ``jobs`` is a list of (name, path, expected_size_or_None). Returns {name: (hexdigest, stat)} for
    files read completely and {name: error_text} for the others, as (digests, errors). ``stat`` is
    the os.stat_result taken when the file was opened; a file whose size or mtime changed while it
    was read is an error.

    With ``read_ahead`` > 0 a further thread asks the kernel (POSIX_FADV_WILLNEED) to load up to
    that many bytes ahead of where each file is being hashed, and of the next file in line, so
    that on a cold page cache the disk is busy while the CPUs hash. It only waits on I/O; on a warm
    cache it finds everything resident and costs next to nothing.
    """
    pending = [_Job(name, path, size or 0) for name, path, size in jobs]
    if not pending:
        return {}, {}
    workers = worker_count(workers, len(pending))
    lock = threading.Lock()
    digests = {}
    errors = {}

    def take():
        with lock:
            best = None
            for job in pending:
                if job.busy or job.done:
                    continue
                if best is None or job.size - job.offset > best.size - best.offset:
                    best = job
            if best is not None:
                best.busy = True
            return best

    def give_back(job):
        with lock:
            job.busy = False
            if job.done:
                pending.remove(job)

    def finish(job, error=None):
        if job.fd is not None:
            os.close(job.fd)
            job.fd = None
        job.done = True
        if error is not None:
            errors[job.name] = error
        else:
            digests[job.name] = (job.hasher.hexdigest(), job.before)

    def work():
        buf = bytearray(buffer_size)
        view = memoryview(buf)
        while True:
            job = take()
            if job is None:
                return
            try:
                _hash_slice(job, view, slice_size, finish)
            except OSError as exc:
                finish(job, _os_error_text(exc))
            give_back(job)

    stop = threading.Event()
    threads = [threading.Thread(target=work, name="sha256-%d" % i, daemon=True) for i in range(workers - 1)]
    if read_ahead > 0 and hasattr(os, "POSIX_FADV_WILLNEED"):
        threads.append(threading.Thread(target=_read_ahead, args=(list(pending), read_ahead, stop), daemon=True))
    for thread in threads:
        thread.start()
    work()  # the calling thread is one of the workers
    stop.set()
    for thread in threads:
        thread.join()
    return digests, errors


def _read_ahead(jobs, window, stop):
    """Keep up to ``window`` bytes requested from the disk ahead of where each file is hashed.

    Files being hashed come first; once each has its window, the largest file not started yet
    (the next one a hasher takes) gets one too. Nothing further ahead is requested, so the page
    cache is not filled with files that will wait a long time.
    """
    fds = {}
    ahead = {}
    try:
        while not stop.is_set():
            for job in jobs:
                if job.done and job.name in fds:
                    os.close(fds.pop(job.name))
            chosen = _next_read_ahead(jobs, ahead, window)
            if chosen is None:
                stop.wait(0.02)
                continue
            start = max(ahead.get(chosen.name, 0), chosen.offset)
            ahead[chosen.name] = start + READ_AHEAD_STEP
            fd = fds.get(chosen.name)
            try:
                if fd is None:
                    fd = fds[chosen.name] = os.open(chosen.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                os.posix_fadvise(fd, start, READ_AHEAD_STEP, os.POSIX_FADV_WILLNEED)
            except OSError:
                ahead[chosen.name] = chosen.size  # the hasher meets the same error and reports it
    finally:
        for fd in fds.values():
            os.close(fd)


def _next_read_ahead(jobs, ahead, window):
    """The job to request the next step of, or None when every window is full.

    Offsets are read without the lock: a stale value only shifts a window by one buffer.
    """
    started, started_lead = None, window
    waiting = None
    for job in jobs:
        if job.done:
            continue
        if job.busy or job.offset > 0:
            start = max(ahead.get(job.name, 0), job.offset)
            if start < job.size and start - job.offset < started_lead:
                started, started_lead = job, start - job.offset
        elif waiting is None or job.size > waiting.size:
            waiting = job
    if started is not None:
        return started
    if waiting is not None and ahead.get(waiting.name, 0) < min(window, waiting.size):
        return waiting
    return None


def _hash_slice(job, view, slice_size, finish):
    if job.fd is None:
        job.fd = os.open(job.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        job.before = os.fstat(job.fd)
        if not stat.S_ISREG(job.before.st_mode):
            finish(job, "not a regular file")
            return
        job.size = job.before.st_size
        _advise(job.fd, 0, 0, "POSIX_FADV_SEQUENTIAL")
    end = min(job.size, job.offset + slice_size)
    hasher = job.hasher
    while job.offset < end:
        want = min(len(view), end - job.offset)
        got = os.preadv(job.fd, [view[:want]], job.offset)
        if got == 0:
            finish(job, "file shrank while it was read (%d of %d bytes)" % (job.offset, job.size))
            return
        hasher.update(view[:got])
        job.offset += got
    if job.offset >= job.size:
        if os.preadv(job.fd, [view[:1]], job.offset) != 0:
            finish(job, "file grew while it was read (beyond %d bytes)" % job.size)
            return
        after = os.fstat(job.fd)
        if (after.st_size, after.st_mtime_ns) != (job.before.st_size, job.before.st_mtime_ns):
            finish(job, "file changed while it was read")
            return
        finish(job)


def _advise(fd, offset, length, name):
    advice = getattr(os, name, None)
    if advice is not None:
        os.posix_fadvise(fd, offset, length, advice)


def _os_error_text(exc):
    return "%s (errno %s)" % (exc.strerror or str(exc), errno.errorcode.get(exc.errno, exc.errno))


def worker_count(requested, files):
    """Threads used for ``files`` files: ``requested`` (0 = the CPUs this process may use), at most one per file."""
    wanted = requested if requested > 0 else available_cpus()
    return max(1, min(wanted, files))


def available_cpus():
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Verified-state cache


def cache_file_for(cache_dir, root):
    """One cache file per model directory (by real path) in cache_dir."""
    key = hashlib.sha256(os.path.realpath(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(cache_dir, "%s.json" % key)


def load_cache(path, root):
    """Return (entries, warning). A cache that is missing, foreign, unsafe or unreadable is empty.

    The cache is trusted only when it belongs to the current user and nobody else may write it:
    otherwise anyone who can write it could mark a tampered file as verified.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, "cache %s not used: %s" % (path, _os_error_text(exc))
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return {}, "cache %s not used: it must be owned by uid %d and not group/other writable" % (path, os.geteuid())
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        return {}, "cache %s not used: %s" % (path, exc)
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or data.get("root") != os.path.realpath(root):
        return {}, None
    files = data.get("files")
    return (files if isinstance(files, dict) else {}), None


def save_cache(path, root, entries):
    """Write the cache atomically (0600, directory 0700 when created). Returns a warning or None."""
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        payload = json.dumps(
            {"version": CACHE_VERSION, "root": os.path.realpath(root), "files": entries}, sort_keys=True, indent=1
        )
        write_atomic(path, payload, 0o600)
    except OSError as exc:
        return "cache %s not written: %s" % (path, _os_error_text(exc))
    return None


def cache_entry(st, digest, now):
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "ino": st.st_ino,
        "dev": st.st_dev,
        "sha256": digest,
        "verified_at": int(now),
    }


def cache_hit(entry, st, now, max_age=0):
    """True when a cache entry describes exactly this file (same size, mtime, ctime, inode, device)."""
    if not isinstance(entry, dict):
        return False
    try:
        same = (
            entry["size"] == st.st_size
            and entry["mtime_ns"] == st.st_mtime_ns
            and entry["ctime_ns"] == st.st_ctime_ns
            and entry["ino"] == st.st_ino
            and entry["dev"] == st.st_dev
            and isinstance(entry["sha256"], str)
        )
        if same and max_age > 0:
            same = now - int(entry["verified_at"]) <= max_age
    except (KeyError, TypeError, ValueError):
        return False
    return same


def write_atomic(path, text, mode):
    """Write text to path through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# --------------------------------------------------------------------------------------------
# Verify and create


def verify(
    root,
    entries,
    *,
    extra_files="warn",
    exclude=(),
    skip=(),
    cache=None,
    force=False,
    workers=0,
    max_age=0,
    now=None,
    outside_links="refuse",
):
    """Check the files under root against manifest entries.

    A name that leads out of root through a symbolic link is ``outside`` (bad, with the place it leads to as
    ``target``) and is never stat'ed or read, unless ``outside_links`` is "follow".

    Order: stat every file (missing, not a file, size mismatch: no reading needed), then the cache
    (a hit counts only when its digest equals the manifest's), then hash what is left, largest
    first, in parallel. A cached digest that differs from the manifest is never trusted either
    way: the file is hashed again.

    Returns a dict: ``files`` (per-file results, manifest order, then extras), ``summary``,
    ``bad`` (names that fail the check), ``cache`` (new cache entries for files found good) and
    ``warnings``.
    """
    now = time.time() if now is None else now
    cache = cache or {}
    started = time.monotonic()
    results = {}
    to_hash = []
    new_cache = {}
    cached_bytes = 0
    for entry in entries:
        full = os.path.join(root, entry.name)
        result = {
            "name": entry.name,
            "status": None,
            "size": None,
            "expected_size": entry.size,
            "sha256": None,
            "expected_sha256": entry.digest,
            "source": None,
        }
        results[entry.name] = result
        target = escapes(root, full) if outside_links == "refuse" else None
        if target is not None:
            result.update(status=STATUS_OUTSIDE, target=target)
            continue
        try:
            st = os.stat(full)
        except FileNotFoundError:
            result["status"] = STATUS_MISSING
            continue
        except OSError as exc:
            result.update(status=STATUS_UNREADABLE, error=_os_error_text(exc))
            continue
        result["size"] = st.st_size
        if not stat.S_ISREG(st.st_mode):
            result["status"] = STATUS_NOT_FILE
            continue
        if entry.size is not None and st.st_size != entry.size:
            result["status"] = STATUS_SIZE
            continue
        cached = cache.get(entry.name)
        if not force and cache_hit(cached, st, now, max_age) and cached["sha256"] == entry.digest:
            result.update(status=STATUS_OK, sha256=entry.digest, source="cache")
            new_cache[entry.name] = cached
            cached_bytes += st.st_size
            continue
        to_hash.append((entry.name, full, st.st_size))

    digests, errors = hash_files(to_hash, workers=workers)
    hashed_bytes = 0
    for name, _path, size in to_hash:
        result = results[name]
        result["source"] = "hash"
        if name in errors:
            result.update(status=STATUS_UNREADABLE, error=errors[name])
            continue
        digest, st = digests[name]
        hashed_bytes += size
        result["sha256"] = digest
        result["size"] = st.st_size
        if digest == result["expected_sha256"]:
            result["status"] = STATUS_OK
            new_cache[name] = cache_entry(st, digest, now)
        else:
            result["status"] = STATUS_DIGEST

    ordered = [results[entry.name] for entry in entries]
    warnings = []
    if extra_files != "ignore":
        listed = set(results)
        for name in list_files(root, exclude=exclude, skip=skip):
            if name not in listed:
                ordered.append({"name": name, "status": STATUS_EXTRA, "source": None})
        extras = [item["name"] for item in ordered if item["status"] == STATUS_EXTRA]
        if extras and extra_files == "warn":
            warnings.append("files not in the manifest: %s" % ", ".join(extras))

    bad = [
        item["name"]
        for item in ordered
        if item["status"] in BAD_STATUSES or (item["status"] == STATUS_EXTRA and extra_files == "fail")
    ]
    elapsed = time.monotonic() - started
    summary = _summary(ordered, elapsed, hashed_bytes, cached_bytes, worker_count(workers, len(to_hash)))
    return {"files": ordered, "summary": summary, "bad": bad, "cache": new_cache, "warnings": warnings}


def read_text(path):
    """The file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def verify_tree(
    root,
    manifest=None,
    manifest_text=None,
    *,
    extra_files="warn",
    exclude=(),
    cache_file=None,
    force=False,
    workers=0,
    max_age=0,
    save=True,
    outside_links="refuse",
):
    """Read the manifest (or take ``manifest_text``), verify root against it through the cache, save the
    cache: the steps the module and the GPU hosts' boot gate (instance_gate) share.

    Returns a dict: ``error`` (why the tree could not be verified at all: no manifest, a bad or empty
    manifest, unreadable files; None otherwise), ``checked`` (verify()'s result, or None when it did not
    run), ``problems`` (one line per bad file) and ``warnings``.
    """
    out = {"error": None, "checked": None, "problems": [], "warnings": []}
    if manifest_text is None:
        manifest_text = read_text(manifest)
        if manifest_text is None:
            out["error"] = "manifest %s does not exist" % manifest
            return out
    try:
        entries = parse_manifest(manifest_text)
    except ManifestError as exc:
        out["error"] = "%s: %s" % ("manifest_content" if manifest is None else manifest, exc)
        return out
    if not entries:
        out["error"] = "the manifest lists no files"
        return out
    cache = {}
    if cache_file and not force:
        cache, warning = load_cache(cache_file, root)
        out["warnings"] += [warning] if warning else []
    checked = verify(
        root,
        entries,
        extra_files=extra_files,
        exclude=exclude,
        skip=[path for path in (manifest, cache_file) if path],
        cache=cache,
        force=force,
        workers=workers,
        max_age=max_age,
        outside_links=outside_links,
    )
    out["checked"] = checked
    out["warnings"] += checked["warnings"]
    out["problems"] = describe_bad(checked["files"], extra_files)
    unreadable = [item for item in checked["files"] if item["status"] in (STATUS_UNREADABLE, STATUS_NOT_FILE)]
    if unreadable:
        out["error"] = "cannot verify, unreadable: " + "; ".join(describe_bad(unreadable))
        return out
    if cache_file and save:
        warning = save_cache(cache_file, root, checked["cache"])
        out["warnings"] += [warning] if warning else []
    return out


def create(root, *, exclude=(), skip=(), workers=0, now=None, outside_links="refuse"):
    """Hash every file under root.

    Returns (entries, files, cache, errors, summary): manifest entries, per-file results and
    summary in the shape verify() uses, cache entries, and {name: error text} for unreadable files and
    for links out of root (never read, unless ``outside_links`` is "follow").
    """
    now = time.time() if now is None else now
    started = time.monotonic()
    outside = {} if outside_links == "refuse" else None
    sizes = scan_files(root, exclude=exclude, skip=skip, outside=outside)
    names = sorted(sizes)
    jobs = [(name, os.path.join(root, name), sizes[name]) for name in names]
    digests, errors = hash_files(jobs, workers=workers)
    entries, files, cache = [], [], {}
    for name in names:
        if name in digests:
            digest, st = digests[name]
            entries.append(ManifestEntry(name, digest, st.st_size))
            cache[name] = cache_entry(st, digest, now)
            files.append({"name": name, "status": STATUS_OK, "size": st.st_size, "sha256": digest, "source": "hash"})
        else:
            files.append({"name": name, "status": STATUS_UNREADABLE, "error": errors[name], "source": "hash"})
    for name, target in sorted((outside or {}).items()):
        errors[name] = outside_text(target)
        files.append({"name": name, "status": STATUS_OUTSIDE, "target": target, "source": None})
    hashed = sum(entry.size for entry in entries)
    summary = _summary(files, time.monotonic() - started, hashed, 0, worker_count(workers, len(jobs)))
    return entries, files, cache, errors, summary


def _summary(files, elapsed, hashed_bytes, cached_bytes, workers):
    counts = {}
    for item in files:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    return {
        "files": sum(1 for item in files if item["status"] != STATUS_EXTRA),
        "ok": counts.get(STATUS_OK, 0),
        "missing": counts.get(STATUS_MISSING, 0),
        "size_mismatch": counts.get(STATUS_SIZE, 0),
        "digest_mismatch": counts.get(STATUS_DIGEST, 0),
        "unreadable": counts.get(STATUS_UNREADABLE, 0) + counts.get(STATUS_NOT_FILE, 0),
        "extra": counts.get(STATUS_EXTRA, 0),
        "outside": counts.get(STATUS_OUTSIDE, 0),
        "cached": sum(1 for item in files if item.get("source") == "cache"),
        "bytes_hashed": hashed_bytes,
        "bytes_cached": cached_bytes,
        "seconds": round(elapsed, 3),
        "hash_gb_per_s": round(hashed_bytes / elapsed / 1e9, 3) if elapsed > 0 and hashed_bytes else 0.0,
        "workers": workers,
    }


def outside_text(target):
    """Why a link out of the model directory is refused (the file it leads to is neither read nor hashed)."""
    return (
        "a symbolic link out of the model directory, to %s (a model container mounts only the directory, where "
        "the link is broken; copy the file into the directory)" % target
    )


def describe_bad(files, extra_files="warn"):
    """One human line per bad file, for the failure message."""
    lines = []
    for item in files:
        status = item["status"]
        if status == STATUS_MISSING:
            lines.append("%s: missing" % item["name"])
        elif status == STATUS_SIZE:
            lines.append("%s: size %s, manifest says %s" % (item["name"], item["size"], item["expected_size"]))
        elif status == STATUS_DIGEST:
            lines.append("%s: sha256 %s, manifest says %s" % (item["name"], item["sha256"], item["expected_sha256"]))
        elif status == STATUS_UNREADABLE:
            lines.append("%s: unreadable: %s" % (item["name"], item.get("error")))
        elif status == STATUS_NOT_FILE:
            lines.append("%s: not a regular file" % item["name"])
        elif status == STATUS_OUTSIDE:
            lines.append("%s: %s" % (item["name"], outside_text(item.get("target"))))
        elif status == STATUS_EXTRA and extra_files == "fail":
            lines.append("%s: not in the manifest" % item["name"])
    return lines
