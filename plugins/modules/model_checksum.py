#!/usr/bin/python
# Copyright (c) 2026 qwen3vl.ha developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_checksum
short_description: Verify model weights against a sha256sum manifest, fast and in parallel
version_added: 0.1.0
description:
  - Checks a model snapshot directory (safetensors shards, JSON and tokenizer files) against a
    manifest in C(sha256sum) format, so C(sha256sum -c) stays a fallback, or writes that manifest
    from a trusted copy (O(mode=create)).
  - "Checks in this order: missing files, files that are not regular files, size mismatches (free:
    only C(stat), for manifest lines with a C(# size) comment), then SHA-256 digests. Files not in
    the manifest are handled by O(extra_files)."
  - Files are hashed with Python's C(hashlib) (OpenSSL, SHA-NI where the CPU has it) by a pool of
    C(min(CPUs, files)) threads. Each thread always takes the file with the most bytes left and
    hashes it in 64 MiB slices, so a large shard moves between threads instead of leaving a core idle.
  - A verified-state cache (per file size, mtime, ctime, inode, device and digest, kept per model
    directory under O(cache_dir)) lets a re-run skip files that did not change. It only ever skips
    files whose cached digest equals the manifest's; anything else is hashed again, so the cache
    cannot turn a mismatch into a pass. O(force=true) ignores it.
  - The cache trusts file metadata; damage that keeps size, mtime, ctime and inode (a failing disk)
    is only found by a run with O(force=true) or O(cache_max_age).
  - Names in the manifest must stay inside O(path) (no absolute paths, no C(..)). A symbolic link
    that stays inside O(path) is followed. One that leads out of it (a Hugging Face cache snapshot's
    links into C(../../blobs), a link to C(/etc/shadow)) is refused by default, naming the link and
    where it leads, and what it leads to is never read, hashed or sized; see O(outside_links).
  - Bad input (a malformed manifest line, a name escaping the directory, a repeated name, an
    unreadable file) fails naming the line or the file, and nothing is written.
author:
  - qwen3vl.ha developers (@qwen3vl)
options:
  path:
    description: The model directory.
    type: path
    required: true
  mode:
    description:
      - V(verify) checks the files against the manifest.
      - V(create) hashes every file under O(path) (except O(exclude)) and writes the manifest.
    type: str
    choices: [verify, create]
    default: verify
  manifest:
    description:
      - Path of the manifest file. Defaults to C(SHA256SUMS) inside O(path).
      - A manifest inside O(path) is never listed as an extra file or in the manifest it describes.
    type: path
  manifest_content:
    description:
      - The manifest text itself, for example from C(lookup('ansible.builtin.file', ...)) on the
        controller. Only with O(mode=verify); O(manifest) is then not read.
    type: str
  extra_files:
    description: What to do with files under O(path) that the manifest does not list.
    type: str
    choices: [ignore, warn, fail]
    default: warn
  exclude:
    description:
      - Shell patterns (C(fnmatch)) of names under O(path) that are neither extra files (verify) nor
        written to the manifest (create). C(*) also matches C(/).
      - The default leaves out Hugging Face's download metadata and a git checkout's internals.
    type: list
    elements: str
    default: ['.cache/*', '.git/*']
  force:
    description: Hash every file even when the cache says it is unchanged and verified.
    type: bool
    default: false
  cache:
    description: Use and update the verified-state cache.
    type: bool
    default: true
  cache_dir:
    description:
      - Directory of the cache files, one per model directory. Created with mode C(0700).
      - A cache file not owned by the current user, or writable by group or others, is ignored.
    type: path
    default: /var/cache/qwen3vl-ha/model_checksum
  cache_max_age:
    description: Hash a file again when its cached verification is older than this many seconds; C(0) means no limit.
    type: int
    default: 0
  workers:
    description: Hashing threads; C(0) means one per CPU this process may use. Never more than the files to hash.
    type: int
    default: 0
  fail_on_mismatch:
    description:
      - Fail the task when a file is missing, has the wrong size or digest, or (with
        O(extra_files=fail)) is not in the manifest.
      - With V(false) the task reports RV(ok=false) and the bad files instead, for use in C(when:).
        Manifest errors and unreadable files fail either way.
    type: bool
    default: true
  sizes:
    description: With O(mode=create), write a C(# size <bytes>) comment before each line so that verify can compare sizes first.
    type: bool
    default: true
  manifest_mode:
    description: File mode of the manifest written by O(mode=create).
    type: raw
    default: "0644"
  outside_links:
    description:
      - V(refuse) fails a file whose path leads out of O(path) through a symbolic link (status C(outside)),
        because a model container mounts only the directory, where such a link is broken, and a manifest on a
        shared directory must not vouch for (or print the digest of) a file elsewhere.
      - V(follow) reads through such links, for a directory whose users see the same filesystem (a Hugging
        Face cache snapshot used in place on the host).
    type: str
    choices: [refuse, follow]
    default: refuse
notes:
  - Verify never changes the model files; it reports RV(ignore:changed=false). Create reports a change when the manifest content changes.
  - The results hold file names, sizes and digests only, so the module is safe to combine with C(no_log).
attributes:
  check_mode:
    support: full
    description: Verify runs in full but does not update the cache; create reports whether the manifest would change without writing it.
  diff_mode:
    support: none
    description: Nothing is shown as a diff; RV(files) lists what was found.
seealso:
  - name: sha256sum manual
    description: The manifest format, and the fallback check C(sha256sum -c SHA256SUMS).
    link: https://www.gnu.org/software/coreutils/manual/html_node/sha2-utilities.html
"""

EXAMPLES = r"""
- name: Write the manifest once, on a host holding a trusted copy
  qwen3vl.ha.model_checksum:
    path: /srv/models/Qwen3-VL-4B-Instruct
    mode: create
    manifest: /srv/models/Qwen3-VL-4B-Instruct.sha256

- name: Verify the weights before any model container starts
  qwen3vl.ha.model_checksum:
    path: /srv/models/Qwen3-VL-4B-Instruct
    manifest_content: "{{ lookup('ansible.builtin.file', 'files/Qwen3-VL-4B-Instruct.sha256') }}"
    extra_files: fail

- name: Report instead of failing, then act on the result
  qwen3vl.ha.model_checksum:
    path: /srv/models/Qwen3-VL-4B-Instruct
    fail_on_mismatch: false
  register: weights

- name: Re-download the bad shards
  ansible.builtin.debug:
    msg: "Fetch again: {{ weights.bad_files | join(', ') }}"
  when: not weights.ok

- name: Weekly full re-read (ignores the cache), e.g. from a scheduled drill
  qwen3vl.ha.model_checksum:
    path: /srv/models/Qwen3-VL-4B-Instruct
    force: true
"""

RETURN = r"""
ok:
  description: True when every listed file is present with the right size and digest (and no extra file, with O(extra_files=fail)).
  returned: always
  type: bool
  sample: true
bad_files:
  description: Names that failed the check.
  returned: always
  type: list
  elements: str
  sample: [model-00002-of-00003.safetensors]
files:
  description:
    - One entry per manifest line (verify) or per file hashed (create), then extra files.
    - C(status) is one of C(ok), C(missing), C(size_mismatch), C(digest_mismatch), C(unreadable),
      C(not_a_file), C(outside) (a link out of O(path); C(target) says where it leads), C(extra).
      C(source) is C(hash) or C(cache) (where the digest came from).
  returned: always
  type: list
  elements: dict
  sample:
    - name: model-00001-of-00003.safetensors
      status: ok
      size: 3968215040
      expected_size: 3968215040
      sha256: 6e2b0d2f3d47c5bd9f3b0c8a4f1b8f6d0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f
      expected_sha256: 6e2b0d2f3d47c5bd9f3b0c8a4f1b8f6d0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f
      source: hash
summary:
  description: Counts, bytes and time of the run.
  returned: always
  type: dict
  sample:
    files: 14
    ok: 14
    missing: 0
    size_mismatch: 0
    digest_mismatch: 0
    unreadable: 0
    extra: 0
    outside: 0
    cached: 0
    bytes_hashed: 8876543210
    bytes_cached: 0
    seconds: 4.6
    hash_gb_per_s: 1.93
    workers: 2
manifest:
  description: Path of the manifest read or written; null when O(manifest_content) was given.
  returned: always
  type: str
  sample: /srv/models/Qwen3-VL-4B-Instruct/SHA256SUMS
cache_file:
  description: The cache file used for this directory; null with O(cache=false).
  returned: always
  type: str
  sample: /var/cache/qwen3vl-ha/model_checksum/5b1f0f9c0d6e2a7c4b3d2e1f.json
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.qwen3vl.ha.plugins.module_utils import model_checksum as core


def run(module, manifest_mode):
    params = module.params
    root = params["path"]
    if not os.path.isdir(root):
        module.fail_json(msg="path %s is not a directory" % root)
    manifest = params["manifest"]
    if params["manifest_content"] is None and not manifest:
        manifest = os.path.join(root, "SHA256SUMS")
    cache_file = core.cache_file_for(params["cache_dir"], root) if params["cache"] else None
    skip = [path for path in (manifest, cache_file) if path]
    exclude = params["exclude"]
    result = {"changed": False, "manifest": manifest, "cache_file": cache_file}

    if params["mode"] == "create":
        entries, files, cache_entries, errors, summary = core.create(
            root, exclude=exclude, skip=skip, workers=params["workers"], outside_links=params["outside_links"]
        )
        result.update(summary=summary, files=files, bad_files=sorted(errors), ok=not errors)
        if errors:
            module.fail_json(
                msg="cannot add to the manifest: " + "; ".join("%s: %s" % item for item in sorted(errors.items())),
                **result,
            )
        text = core.format_manifest(entries, with_sizes=params["sizes"])
        result["changed"] = core.read_text(manifest) != text
        if result["changed"] and not module.check_mode:
            try:
                core.write_atomic(manifest, text, manifest_mode)
            except OSError as exc:
                module.fail_json(msg="cannot write manifest %s: %s" % (manifest, exc), **result)
        if cache_file and not module.check_mode:
            _warn(module, core.save_cache(cache_file, root, cache_entries))
        return result

    tree = core.verify_tree(
        root,
        manifest,
        params["manifest_content"],
        extra_files=params["extra_files"],
        exclude=exclude,
        cache_file=cache_file,
        force=params["force"],
        workers=params["workers"],
        max_age=params["cache_max_age"],
        save=not module.check_mode,
        outside_links=params["outside_links"],
    )
    for warning in tree["warnings"]:
        module.warn(warning)
    checked = tree["checked"]
    if checked is not None:
        result.update(
            files=checked["files"], summary=checked["summary"], bad_files=checked["bad"], ok=not checked["bad"]
        )
    if tree["error"]:
        module.fail_json(msg=tree["error"], **result)
    problems = tree["problems"]
    if checked["bad"]:
        result["msg"] = "%d of %d files failed verification: %s" % (
            len(checked["bad"]),
            checked["summary"]["files"],
            "; ".join(problems),
        )
        if params["fail_on_mismatch"]:
            module.fail_json(**result)
    else:
        result["msg"] = "%d files verified (%d from cache)" % (checked["summary"]["ok"], checked["summary"]["cached"])
    return result


def _mode(module):
    mode = module.params["manifest_mode"]
    try:
        return int(mode, 8) if isinstance(mode, str) else int(mode)
    except ValueError:
        module.fail_json(msg="manifest_mode %r is not an octal file mode" % (mode,))
    return None


def _warn(module, warning):
    if warning:
        module.warn(warning)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            mode=dict(type="str", choices=["verify", "create"], default="verify"),
            manifest=dict(type="path"),
            manifest_content=dict(type="str"),
            extra_files=dict(type="str", choices=["ignore", "warn", "fail"], default="warn"),
            exclude=dict(type="list", elements="str", default=[".cache/*", ".git/*"]),
            force=dict(type="bool", default=False),
            cache=dict(type="bool", default=True),
            cache_dir=dict(type="path", default="/var/cache/qwen3vl-ha/model_checksum"),
            cache_max_age=dict(type="int", default=0),
            workers=dict(type="int", default=0),
            fail_on_mismatch=dict(type="bool", default=True),
            sizes=dict(type="bool", default=True),
            manifest_mode=dict(type="raw", default="0644"),
            outside_links=dict(type="str", choices=list(core.OUTSIDE_LINKS), default=core.OUTSIDE_LINKS[0]),
        ),
        mutually_exclusive=[("manifest", "manifest_content")],
        supports_check_mode=True,
    )
    params = module.params
    if params["mode"] == "create" and params["manifest_content"] is not None:
        module.fail_json(msg="manifest_content is only for mode=verify; create writes the file named by manifest")
    for name in ("workers", "cache_max_age"):
        if params[name] < 0:
            module.fail_json(msg="%s must be 0 or more, got %d" % (name, params[name]))
    manifest_mode = _mode(module) if params["mode"] == "create" else None
    module.exit_json(**run(module, manifest_mode))


if __name__ == "__main__":
    main()
