"""The collection's documentation and packaging metadata agree with what it contains.

Four rules, each a test below:

1. ``defaults/main.yml`` and ``meta/argument_specs.yml`` describe the same variables with the same
   defaults (argument_specs is the full description, defaults/main.yml holds the values).
2. Every role variable a README names exists (roles/<role>/README.md and README.md).
3. galaxy.yml's ``dependencies`` lists exactly the collections the shipped content uses.
4. galaxy.yml's description promises only what exists.

Every file is read with PyYAML; nothing here imports Ansible except the version check of rule 3.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "qwen3vl.ha"
# Roles whose name starts with "_" are internal (included by the others, not documented for users).
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir() and not p.name.startswith("_"))


class _Loader(yaml.SafeLoader):
    """safe_load, plus Ansible's !vault and !unsafe tags (read as plain strings)."""


_Loader.add_constructor("!vault", lambda loader, node: loader.construct_scalar(node))
_Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_yaml(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)


# --- 1. defaults/main.yml <-> meta/argument_specs.yml ----------------------------------------------
#
# Rules (also in the role READMEs' "Variables" sections):
# - Every variable in defaults/main.yml is an option of the `main` entry point, and every option of `main`
#   is in defaults/main.yml, except options marked `required: true` without a default.
# - argument_specs' `default` equals the value in defaults/main.yml, compared as parsed YAML and strict
#   about types (true is not 1, "5" is not 5; 0 and 0.0 are the same number). A missing `default` means
#   null, as in Ansible, so a variable whose value is not null needs one.
# - A value that is a Jinja template (anywhere inside it) is rendered only when the role runs, so
#   argument_specs leaves `default` out and its description says what the default is (it must contain
#   the word "default"). The unrendered text would otherwise show up in ansible-doc as if it were the
#   value, with the wrong type for a list or a number.
# - A value that is not a template fits the option's type, elements and choices.
# - Other entry points (docker_engine's daemon_json) that share an option with defaults/main.yml carry the
#   same default.

_JINJA = re.compile(r"{{|{%")
_TYPES = {
    "str": lambda v: isinstance(v, str),
    "path": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
    "raw": lambda v: True,
}


def is_template(value):
    if isinstance(value, str):
        return bool(_JINJA.search(value))
    if isinstance(value, list):
        return any(is_template(v) for v in value)
    if isinstance(value, dict):
        return any(is_template(k) or is_template(v) for k, v in value.items())
    return False


def canonical(value):
    """A comparable form of a parsed YAML value that keeps bool, number and string apart."""
    if isinstance(value, list):
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), canonical(v)) for k, v in value.items())))
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, (int, float)):
        kind = "number"
    else:
        kind = type(value).__name__  # str, NoneType, date ...
    return (kind, value)


def description_text(option):
    text = option.get("description", "")
    return " ".join(text) if isinstance(text, list) else str(text)


def type_problems(name, option, value):
    """What is wrong with a (non-template, non-null) default for this option's type and choices."""
    kind = option.get("type", "str")
    check = _TYPES.get(kind)
    if check is None:
        return [f"{name}: argument_specs type {kind!r} is not one this test knows"]
    if not check(value):
        return [f"{name}: the default {value!r} is not of type {kind}"]
    problems = []
    elements = option.get("elements")
    if kind == "list" and elements:
        problems += [
            f"{name}: element {item!r} of the default is not of type {elements}"
            for item in value
            if not _TYPES.get(elements, lambda v: True)(item)
        ]
    choices = option.get("choices")
    if choices is not None:
        values = value if kind == "list" else [value]
        problems += [f"{name}: {item!r} is not one of the choices {choices}" for item in values if item not in choices]
    return problems


def spec_problems(role, defaults, specs):
    """Every disagreement between a role's defaults/main.yml and its meta/argument_specs.yml."""
    problems = []
    entry_points = (specs or {}).get("argument_specs") or {}
    if "main" not in entry_points:
        return [f"{role}: meta/argument_specs.yml has no main entry point"]
    main = entry_points["main"].get("options") or {}
    for name in sorted(set(defaults) - set(main)):
        problems.append(f"{role}: {name} is in defaults/main.yml but not in argument_specs (main)")
    for name in sorted(set(main) - set(defaults)):
        option = main[name] or {}
        if not (option.get("required") and "default" not in option):
            problems.append(
                f"{role}: {name} is in argument_specs (main) but not in defaults/main.yml "
                "(only required options without a default may be missing there)"
            )
    for entry_name, entry in sorted(entry_points.items()):
        for name, given in sorted(((entry or {}).get("options") or {}).items()):
            if name not in defaults:
                continue
            option = given or {}
            where = f"{role}: {name} ({entry_name})"
            value = defaults[name]
            if is_template(value):
                if "default" in option:
                    problems.append(
                        f"{where}: defaults/main.yml holds a template ({value!r}); argument_specs must leave "
                        "`default` out and say in the description what it defaults to"
                    )
                elif "default" not in description_text(option).lower():
                    problems.append(f"{where}: templated default; the description must say what the default is")
                continue
            spec_default = option.get("default")
            if canonical(spec_default) != canonical(value):
                shown = repr(spec_default) if "default" in option else "no default (null)"
                problems.append(f"{where}: argument_specs default {shown} != defaults/main.yml {value!r}")
            if value is not None:
                problems += [f"{role}: {p}" for p in type_problems(name, option, value)]
    return problems


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    base = REPO / "roles" / role
    defaults = load_yaml(base / "defaults" / "main.yml") or {}
    specs = load_yaml(base / "meta" / "argument_specs.yml")
    problems = spec_problems(role, defaults, specs)
    assert not problems, "\n".join(problems)


_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):")
MAX_COMMENT_LINES = 2


def long_comments(text):
    """[(variable, lines)] for defaults whose own comment (the comment lines right above it, section
    headers "# ---" left out) is longer than MAX_COMMENT_LINES: the full text belongs in argument_specs."""
    found = []
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = _TOP_LEVEL_KEY.match(line)
        if not match:
            continue
        count = 0
        for above in reversed(lines[:number]):
            if not above.startswith("#"):
                break
            if not above.startswith("# ---"):
                count += 1
        if count > MAX_COMMENT_LINES:
            found.append((match.group(1), count))
    return found


@pytest.mark.parametrize("role", ROLES)
def test_defaults_comments_are_short(role):
    text = (REPO / "roles" / role / "defaults" / "main.yml").read_text(encoding="utf-8")
    found = long_comments(text)
    listing = "\n".join(f"  {name}: {count} lines" for name, count in found)
    assert not found, (
        f"roles/{role}/defaults/main.yml: comments over {MAX_COMMENT_LINES} lines "
        f"(move the text to meta/argument_specs.yml):\n{listing}"
    )


# --- 2. Variable names in the READMEs exist ----------------------------------------------------------
#
# A name `<role>_something` in a README is known when it is one of that role's: options (any entry
# point), defaults, facts it sets (set_fact) or results it registers, tags, or a string default value
# (keepalived_script_user's "keepalived_script"); or a plugin of this collection (webui_plan ...) or an
# option of one of its modules (inference_probe's webui_url). File names (webui_standin.py) are skipped.
# An internal name `_<role>_something` must be in the role's vars/ or be set or registered by its tasks.
# Wildcards (`nfs_server_*_port`) are not checked.


def _walk(node):
    """Every mapping in a parsed YAML document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _tags(value):
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {t for t in value if isinstance(t, str)}
    return set()


def _yaml_files(directory):
    return sorted(p for p in directory.rglob("*") if p.suffix in (".yml", ".yaml")) if directory.is_dir() else []


def role_names(role):
    """(public, internal) names a README may use for this role."""
    base = REPO / "roles" / role
    public, internal = set(), set()
    defaults = load_yaml(base / "defaults" / "main.yml") or {}
    public |= set(defaults)
    public |= {v for v in defaults.values() if isinstance(v, str)}
    specs = load_yaml(base / "meta" / "argument_specs.yml") or {}
    for entry in (specs.get("argument_specs") or {}).values():
        public |= set((entry or {}).get("options") or {})
    for path in _yaml_files(base / "vars"):
        internal |= set(load_yaml(path) or {})
    for path in _yaml_files(base / "tasks") + _yaml_files(base / "handlers"):
        for mapping in _walk(load_yaml(path)):
            for key in ("ansible.builtin.set_fact", "set_fact"):
                if isinstance(mapping.get(key), dict):
                    names = set(mapping[key])
                    public |= names
                    internal |= names
            if isinstance(mapping.get("register"), str):
                public.add(mapping["register"])
                internal.add(mapping["register"])
            public |= _tags(mapping.get("tags"))
            apply = mapping.get("apply")
            if isinstance(apply, dict):
                public |= _tags(apply.get("tags"))
            if isinstance(mapping.get("vars"), dict):
                internal |= {k for k in mapping["vars"] if isinstance(k, str) and k.startswith("_")}
    return public | collection_plugin_names(), internal


def collection_plugin_names():
    """This collection's plugin, module_utils and playbook names (a drill such as webui_killed), and its modules'
    option names (a module option such as inference_probe's webui_url may look like a variable of the webui role)."""
    names = {p.stem for p in (REPO / "plugins").glob("*/*") if p.suffix in (".py", ".yml") or p.is_dir()}
    names |= {p.stem for p in (REPO / "playbooks").rglob("*.yml")}
    for path in (REPO / "plugins" / "modules").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "DOCUMENTATION" for t in node.targets)
                and isinstance(node.value, ast.Constant)
            ):
                for mapping in _walk(yaml.safe_load(node.value.value)):
                    if isinstance(mapping.get("options"), dict):
                        names |= set(mapping["options"])
    return names


def unknown_names(text, roles):
    """[(name, why)] for every role variable named in text that the role does not have."""
    found = []
    names = {role: role_names(role) for role in roles}
    for role in roles:
        public, internal = names[role]
        # (a file name such as webui_standin.py is not a variable)
        pattern = re.compile(
            r"(?<![A-Za-z0-9_])(_?)"
            + re.escape(role)
            + r"_([A-Za-z0-9_]*[A-Za-z0-9])(?![A-Za-z0-9_])(?!\.(?:py|sh|yml|yaml|j2|md)\b)"
        )
        for match in pattern.finditer(text):
            name = match.group(0)
            if match.group(1):
                if name not in internal:
                    found.append((name, f"not in roles/{role}/vars/ nor set by its tasks"))
            elif name not in public:
                found.append((name, f"not a variable, fact, tag or plugin of roles/{role}"))
    return sorted(set(found))


def readme_paths():
    return [REPO / "README.md"] + [REPO / "roles" / role / "README.md" for role in ROLES]


@pytest.mark.parametrize("path", readme_paths(), ids=lambda p: str(p.relative_to(REPO)))
def test_readme_names_only_existing_variables(path):
    assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    bad = unknown_names(path.read_text(encoding="utf-8"), ROLES)
    assert not bad, f"{path.relative_to(REPO)} names what does not exist:\n" + "\n".join(
        f"  {name}: {why}" for name, why in bad
    )


@pytest.mark.parametrize("role", ROLES)
def test_role_readme_points_to_the_variable_reference(role):
    text = (REPO / "roles" / role / "README.md").read_text(encoding="utf-8")
    assert "meta/argument_specs.yml" in text
    assert f"ansible-doc -t role {COLLECTION}.{role}" in text
    assert f"roles/{role}/README.md" in (REPO / "README.md").read_text(encoding="utf-8"), (
        f"README.md does not link to roles/{role}/README.md"
    )


# --- 3. galaxy.yml declares the collections the shipped content uses --------------------------------
#
# What ships is what `ansible-galaxy collection build` puts in the tarball: every file except
# ansible-galaxy's own ignore list and galaxy.yml's build_ignore (molecule/, tests/, tools/, bench/, ...
# are test and development material and do not ship; roles/, playbooks/, plugins/, meta/, inventories/
# and site.yml do). In the shipped files, a collection is used by:
# - a task whose action is `ns.coll.module` (roles' tasks and handlers, playbooks), an include_role or
#   import_role of `ns.coll.role`, a play's `roles:` entry, `collections:` keyword or module_defaults;
# - a role dependency (roles/*/meta/main.yml);
# - Jinja anywhere in YAML or a .j2 template: `| ns.coll.filter`, `is ns.coll.test`,
#   `lookup('ns.coll.x')` / `query(...)` / `q(...)`;
# - a connection, become or strategy plugin named in an inventory or play (ansible_connection: ...);
# - a plugin_routing redirect in meta/runtime.yml;
# - Python under plugins/ importing `ansible_collections.ns.coll`.
# ansible.builtin, ansible.legacy and this collection itself are not dependencies.

_IGNORED_BY_GALAXY = [
    "MANIFEST.json",
    "FILES.json",
    "galaxy.yml",
    "galaxy.yaml",
    ".git",
    "*.pyc",
    "*.retry",
    "tests/output",
    "qwen3vl-ha-*.tar.gz",
]
_IGNORED_DIRS = {"CVS", ".bzr", ".hg", ".git", ".svn", "__pycache__", ".tox"}
_FQCN = r"([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+"
_FQCN_FULL = re.compile(r"^" + _FQCN + r"$")
_JINJA_USES = [
    re.compile(r"\|\s*" + _FQCN + r"\b"),  # filter
    re.compile(r"\bis\s+(?:not\s+)?" + _FQCN + r"\b"),  # test
    re.compile(r"\b(?:lookup|query|q)\s*\(\s*['\"]" + _FQCN + r"['\"]"),  # lookup
]
_PLUGIN_KEYS = {
    "ansible_connection",
    "connection",
    "ansible_become_method",
    "become_method",
    "strategy",
    "ansible_network_os",
}
_NOT_DEPENDENCIES = {"ansible.builtin", "ansible.legacy", COLLECTION}


def shipped_files(galaxy):
    """Relative paths of the files `ansible-galaxy collection build` packs, by the same rules."""
    if galaxy.get("manifest"):
        pytest.fail("galaxy.yml uses `manifest`; teach shipped_files() its rules")
    patterns = _IGNORED_BY_GALAXY + list(galaxy.get("build_ignore") or [])
    found = []
    for top, dirs, files in os.walk(REPO):
        rel_top = os.path.relpath(top, REPO)
        rel_top = "" if rel_top == "." else rel_top
        kept = []
        for name in dirs:
            rel = os.path.join(rel_top, name)
            if name in _IGNORED_DIRS or any(fnmatch.fnmatch(rel, p) for p in patterns):
                continue
            if os.path.islink(os.path.join(top, name)):
                continue
            kept.append(name)
        dirs[:] = kept
        for name in files:
            rel = os.path.join(rel_top, name)
            if not any(fnmatch.fnmatch(rel, p) for p in patterns):
                found.append(rel)
    return sorted(found)


def _collection_of(name):
    match = _FQCN_FULL.match(name.strip()) if isinstance(name, str) else None
    return match.group(1) if match else None


_CONDITIONALS = {"when", "that", "changed_when", "failed_when", "until"}


def _jinja_strings(node, conditional=False):
    """Strings that Ansible templates: those with {{ or {%, and the (implicit Jinja) conditionals."""
    if isinstance(node, str):
        if conditional or _JINJA.search(node):
            yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _jinja_strings(value, key in _CONDITIONALS)
    elif isinstance(node, list):
        for value in node:
            yield from _jinja_strings(value, conditional)


def _task_uses(tasks):
    """Collections used by the actions of a task list (blocks included)."""
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        for key, value in task.items():
            if key in ("block", "rescue", "always"):
                yield from _task_uses(value)
                continue
            used = _collection_of(key)
            if used:
                yield used
            if key.startswith("with_"):
                used = _collection_of(key[len("with_") :])
                if used:
                    yield used
            if key in ("action", "local_action"):
                module = value.get("module") if isinstance(value, dict) else str(value).split(" ", 1)[0]
                used = _collection_of(module)
                if used:
                    yield used
            short = key.rsplit(".", 1)[-1]
            if short in ("include_role", "import_role") and isinstance(value, dict):
                used = _collection_of(value.get("name"))
                if used:
                    yield used


def _play_uses(plays):
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        if "hosts" not in play:
            yield from _task_uses([play])  # import_playbook
            continue
        for section in ("pre_tasks", "tasks", "post_tasks", "handlers"):
            yield from _task_uses(play.get(section))
        for role in play.get("roles") or []:
            name = role if isinstance(role, str) else (role or {}).get("role", (role or {}).get("name"))
            used = _collection_of(name)
            if used:
                yield used
        yield from play.get("collections") or []
        for name in play.get("module_defaults") or {}:
            used = _collection_of(str(name).removeprefix("group/"))
            if used:
                yield used


def collection_uses(galaxy):
    """{collection: [shipped files that use it]}."""
    uses = {}

    def add(collection, where):
        if collection and collection not in _NOT_DEPENDENCIES:
            uses.setdefault(collection, set()).add(where)

    for rel in shipped_files(galaxy):
        path = REPO / rel
        parts = Path(rel).parts
        if path.suffix in (".yml", ".yaml"):
            data = load_yaml(path)
            if parts[0] == "roles" and len(parts) > 2 and parts[2] in ("tasks", "handlers"):
                for used in _task_uses(data):
                    add(used, rel)
            if parts[0] == "playbooks" or rel in ("site.yml", "site.yaml"):
                for used in _play_uses(data):
                    add(used, rel)
            if parts[0] == "roles" and parts[2:] == ("meta", "main.yml"):
                for dep in (data or {}).get("dependencies") or []:
                    name = dep if isinstance(dep, str) else (dep or {}).get("role", (dep or {}).get("name"))
                    add(_collection_of(name), rel)
            for mapping in _walk(data):
                for key in _PLUGIN_KEYS & set(mapping):
                    add(_collection_of(mapping[key]), rel)
                if rel == "meta/runtime.yml" and isinstance(mapping.get("redirect"), str):
                    add(_collection_of(mapping["redirect"]), rel)
            texts = list(_jinja_strings(data))
        elif path.suffix == ".j2":
            texts = [path.read_text(encoding="utf-8")]
        elif path.suffix == ".py" and parts[0] == "plugins":
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                modules = []
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    modules = [node.module]
                for module in modules:
                    bits = module.split(".")
                    if bits[0] == "ansible_collections" and len(bits) >= 3:
                        add(f"{bits[1]}.{bits[2]}", rel)
            continue
        else:
            continue
        for text in texts:
            for pattern in _JINJA_USES:
                for match in pattern.finditer(text):
                    add(match.group(1), rel)
    return {name: sorted(files) for name, files in uses.items()}


@pytest.fixture(scope="module")
def galaxy():
    return load_yaml(REPO / "galaxy.yml")


def test_galaxy_declares_every_collection_it_uses(galaxy):
    declared = set(galaxy.get("dependencies") or {})
    missing = {name: files for name, files in collection_uses(galaxy).items() if name not in declared}
    assert not missing, "galaxy.yml dependencies lack collections the shipped content uses:\n" + "\n".join(
        f"  {name}: used in {', '.join(files)}" for name, files in sorted(missing.items())
    )


def test_galaxy_declares_no_unused_collection(galaxy):
    unused = sorted(set(galaxy.get("dependencies") or {}) - set(collection_uses(galaxy)))
    assert not unused, f"galaxy.yml declares dependencies nothing shipped uses: {', '.join(unused)}"


def test_molecule_and_tests_do_not_ship(galaxy):
    shipped = shipped_files(galaxy)
    assert "roles/webui/tasks/main.yml" in shipped
    for prefix in ("molecule/", "tests/", "tools/", "bench/", ".venv/", ".cache/"):
        assert not [f for f in shipped if f.startswith(prefix)], f"{prefix} would ship"


def _installed_collection_versions():
    spec = importlib.util.find_spec("ansible_collections")
    versions = {}
    for location in list(spec.submodule_search_locations or []) if spec else []:
        for manifest in Path(location).glob("*/*/MANIFEST.json"):
            info = json.loads(manifest.read_text(encoding="utf-8"))["collection_info"]
            versions.setdefault(f"{info['namespace']}.{info['name']}", info["version"])
    return versions


def test_dependency_ranges_hold_the_bundled_versions(galaxy):
    versioning = pytest.importorskip("ansible.galaxy.dependency_resolution.versioning")
    installed = _installed_collection_versions()
    problems = []
    for name, requirement in sorted((galaxy.get("dependencies") or {}).items()):
        if name not in installed:
            continue
        if not versioning.meets_requirements(installed[name], str(requirement)):
            problems.append(f"{name}: {requirement} does not admit the installed {installed[name]}")
    assert not problems, "\n".join(problems)


# --- 4. galaxy.yml's description promises only what exists -------------------------------------------
#
# Parts of the design that are not built yet, with what their arrival will add; a word in the description
# (or in the tags) needs at least one of its paths to exist. Every public role must be recognisable in
# the description by one of its words.

PLANNED = {
    "prometheus": ["roles/prometheus"],
    "alertmanager": ["roles/alertmanager"],
    "blackbox": ["roles/blackbox_exporter", "roles/prometheus"],
    "grafana": ["roles/grafana", "dashboards/qwen3vl-service.json"],
    "monitoring": ["roles/prometheus"],
    "drill": ["playbooks/drills"],
    "firewall": ["roles/firewall", "roles/nftables"],
    "nftables": ["roles/nftables", "roles/firewall"],
    "load generator": ["plugins/modules/load_generator.py", "tools/loadgen"],
}
ROLE_WORDS = {
    "docker_engine": ["docker engine", "docker"],
    "nvidia_container_toolkit": ["nvidia container toolkit"],
    "webui": ["webui"],
    "nfs_server": ["nfs"],
    "nfs_client": ["nfs"],
    "nginx_lb": ["nginx"],
    "keepalived": ["keepalived"],
    "node_exporter": ["node_exporter", "exporters"],
    "nginx_exporter": ["nginx exporter", "exporters"],
    "blackbox_exporter": ["blackbox"],
    "prometheus": ["prometheus"],
    "alertmanager": ["alertmanager"],
    "firewall": ["firewall"],
}


def test_galaxy_description_promises_only_what_exists(galaxy):
    text = " ".join([galaxy.get("description") or ""] + list(galaxy.get("tags") or [])).lower()
    absent = [
        word
        for word, paths in PLANNED.items()
        if re.search(r"\b" + re.escape(word), text) and not any((REPO / p).exists() for p in paths)
    ]
    assert not absent, f"galaxy.yml description or tags mention what does not exist yet: {', '.join(absent)}"


@pytest.mark.parametrize("role", ROLES)
def test_galaxy_description_covers_each_role(galaxy, role):
    assert role in ROLE_WORDS, f"new role {role}: add it to ROLE_WORDS and to galaxy.yml's description"
    text = (galaxy.get("description") or "").lower()
    assert any(word in text for word in ROLE_WORDS[role]), f"galaxy.yml description does not mention {role}"
