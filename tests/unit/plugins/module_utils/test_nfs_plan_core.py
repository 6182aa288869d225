"""nfs_plan core: exports and fstab entries from the nfs_server and nfs_client roles' variables, and a
message naming the variable for each problem."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.qwen3vl.ha.plugins.filter.nfs_plan import (
    nfs_client_mountpoint_errors,
    nfs_client_plan,
    nfs_server_plan,
)
from ansible_collections.qwen3vl.ha.plugins.module_utils import nfs_plan as core

DATA = {"path": "/srv/qwen3vl/data", "clients": ["10.0.0.0/24"]}


def server(exports, **kwargs):
    return core.server_plan(exports, **kwargs)


def only_error(result):
    assert result["exports"] == [] if "exports" in result else result["mounts"] == []
    assert len(result["errors"]) == 1, result["errors"]
    return result["errors"][0]


# --- server -------------------------------------------------------------------------------------------


def test_defaults_are_root_squash_sec_sys_rw_and_the_kernel_line_says_so():
    plan = server([DATA])
    assert plan["errors"] == []
    (export,) = plan["exports"]
    assert export["kernel_line"] == (
        "/srv/qwen3vl/data 10.0.0.0/24(rw,root_squash,sec=sys,anonuid=65534,anongid=65534,secure,sync,no_subtree_check)"
    )
    assert (export["pseudo"], export["owner"], export["group"], export["mode"]) == (
        "/srv/qwen3vl/data",
        "root",
        "root",
        "0755",
    )


def test_every_client_gets_its_own_options_group_and_sec_flavours_join_with_colons():
    plan = server([dict(DATA, clients=["10.0.0.0/24", "gpu1.example.com", "@gpu"], sec=["krb5p", "sys"], access="ro")])
    line = plan["exports"][0]["kernel_line"]
    assert line.count("(ro,root_squash,sec=krb5p:sys,") == 3
    assert " gpu1.example.com(" in line and " @gpu(" in line


def test_subtree_check_given_by_the_user_replaces_the_default_no_subtree_check():
    line = server([dict(DATA, options=["async", "subtree_check"])])["exports"][0]["kernel_line"]
    assert line.endswith("(rw,root_squash,sec=sys,anonuid=65534,anongid=65534,secure,async,subtree_check)")
    assert "no_subtree_check" not in line


def test_empty_options_still_get_no_subtree_check_so_exportfs_does_not_warn():
    assert server([dict(DATA, options=[])])["exports"][0]["kernel_line"].endswith(
        "anongid=65534,secure,no_subtree_check)"
    )


@pytest.mark.parametrize("path", ["/", "//", "/srv/..", "/./"])
def test_exporting_the_root_is_refused(path):
    assert "nfs_server_exports[0].path: exporting /" in only_error(server([dict(DATA, path=path)]))


@pytest.mark.parametrize("path", ["/etc", "/proc/sys", "/dev/shm", "/boot"])
def test_system_directories_are_refused(path):
    assert "system directory" in only_error(server([dict(DATA, path=path)]))


@pytest.mark.parametrize("path", ["srv/data", "/srv/my data", '/srv/"x"', "/srv/x;y", "/srv/{x}", None, 5])
def test_paths_that_are_not_clean_absolute_paths_are_refused(path):
    assert "nfs_server_exports[0].path" in server([dict(DATA, path=path)])["errors"][0]


@pytest.mark.parametrize("client", ["*", "0.0.0.0/0", "::/0", "0.0.0.0/0.0.0.0"])
def test_world_clients_are_refused_unless_allowed(client):
    message = only_error(server([dict(DATA, clients=[client])]))
    assert message.startswith("nfs_server_exports[0].clients[0]")
    assert "nfs_server_allow_any_client" in message
    assert server([dict(DATA, clients=[client])], allow_any_client=True)["errors"] == []


@pytest.mark.parametrize("client", ["*.*", "???", "10.0.0.0/33", "10.0.0.300", "a b", "", "gpu(rw)", None])
def test_bad_clients_are_refused(client):
    assert "nfs_server_exports[0].clients[0]" in only_error(server([dict(DATA, clients=[client])]))


@pytest.mark.parametrize("client", ["10.1.2.3", "10.1.0.0/16", "fd00::/64", "gpu-*.example.com", "gpu?", "@netgroup"])
def test_good_clients_pass(client):
    assert server([dict(DATA, clients=[client])])["errors"] == []


def test_missing_or_empty_clients_are_refused():
    assert "nfs_server_exports[0].clients" in only_error(server([{"path": "/srv/x"}]))
    assert "nfs_server_exports[0].clients" in only_error(server([dict(DATA, clients=[])]))


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ("bogus", "not an option exports(5) knows"),
        ("no_root_squash", "'squash' key"),
        ("rw", "'access' key"),
        ("sec=krb5", "'sec' key"),
        ("anonuid=0", "'anonuid' key"),
        ("sync=1", "does not take a value"),
        ("fsid=", "needs a value"),
        ("a,b", "is not an exports(5) option"),
    ],
)
def test_options_are_recognised_or_refused(option, fragment):
    message = only_error(server([dict(DATA, options=[option])]))
    assert message.startswith("nfs_server_exports[0].options")
    assert fragment in message


def test_known_valued_options_pass():
    assert server([dict(DATA, options=["fsid=1", "crossmnt", "no_wdelay"])])["errors"] == []


def test_privileged_ports_by_default_and_insecure_only_through_its_key():
    (export,) = server([DATA])["exports"]
    assert export["privileged_port"] is True and ",secure," in export["kernel_line"]
    (export,) = server([dict(DATA, privileged_port=False)])["exports"]
    assert export["privileged_port"] is False and ",insecure," in export["kernel_line"]
    assert "'privileged_port' key" in only_error(server([dict(DATA, options=["insecure"])]))
    assert "privileged_port: 'no' must be true or false" in only_error(server([dict(DATA, privileged_port="no")]))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("access", "readwrite"),
        ("squash", "squash_all"),
        ("sec", ["ntlm"]),
        ("sec", []),
        ("anonuid", -1),
        ("anongid", "65534"),
        ("owner", "Bad User"),
        ("mode", "777x"),
        ("export_id", 0),
        ("export_id", 70000),
        ("color", "blue"),
    ],
)
def test_bad_export_keys_are_refused_naming_the_key(key, value):
    assert only_error(server([dict(DATA, **{key: value})])).startswith("nfs_server_exports[0]")
    assert key in only_error(server([dict(DATA, **{key: value})]))


def test_pseudo_root_is_refused_and_pseudo_defaults_to_path():
    assert "nfs_server_exports[0].pseudo" in only_error(server([dict(DATA, pseudo="/")]))
    assert server([DATA])["exports"][0]["pseudo"] == DATA["path"]


def test_duplicates_and_nested_exports_are_refused():
    assert "path '/srv/qwen3vl/data' is used by" in only_error(server([DATA, dict(DATA, pseudo="/other")]))
    assert "pseudo '/p' is used by" in only_error(
        server([dict(DATA, pseudo="/p"), {"path": "/srv/b", "clients": ["h"], "pseudo": "/p"}])
    )
    assert "inside the export /srv/qwen3vl" in only_error(server([dict(DATA, path="/srv/qwen3vl"), DATA]))


def test_ganesha_export_ids_do_not_change_when_the_list_is_reordered():
    models = {"path": "/srv/qwen3vl/models", "clients": ["10.0.0.0/24"], "access": "ro"}
    first = {e["path"]: e["export_id"] for e in server([DATA, models])["exports"]}
    second = {e["path"]: e["export_id"] for e in server([models, DATA])["exports"]}
    assert first == second
    assert len(set(first.values())) == 2 and all(1 <= i <= 65535 for i in first.values())
    assert server([dict(DATA, export_id=7)])["exports"][0]["export_id"] == 7


def test_duplicate_explicit_export_ids_are_refused():
    message = only_error(server([dict(DATA, export_id=7), {"path": "/srv/b", "clients": ["h"], "export_id": 7}]))
    assert "export_id 7" in message and "set export_id on one" in message


def test_implementation_and_versions_are_checked():
    assert "nfs_server_implementation" in server([DATA], implementation="samba")["errors"][0]
    for versions in ([2], [], [4, 4], "4"):
        assert "nfs_server_nfs_versions" in server([DATA], versions=versions)["errors"][0]
    assert server([DATA], versions=[3, 4])["errors"] == []


def test_not_a_list_is_refused():
    assert server({"path": "/x"})["errors"] == ["nfs_server_exports: must be a list of exports"]
    assert "must be a mapping" in only_error(server(["/srv/x"]))


# --- client -------------------------------------------------------------------------------------------

MOUNT = {"server": "storage1", "export": "/srv/qwen3vl/data", "path": "/mnt/qwen3vl-data"}
SETTINGS = {
    "nfs_version": "4.1",
    "hard": True,
    "timeo": 600,
    "retrans": 2,
    "boot_mode": "nofail",
    "mount_timeout": 30,
    "idle_timeout": 600,
    "extra_options": [],
    "state": "mounted",
}


def client(mounts, fstab_text="", **settings):
    return core.client_plan(mounts, dict(SETTINGS, **settings), fstab_text=fstab_text)


def test_the_fstab_options_are_composed_in_order():
    (mount,) = client([MOUNT])["mounts"]
    assert mount["src"] == "storage1:/srv/qwen3vl/data"
    assert (
        mount["opts"]
        == "nfsvers=4.1,proto=tcp,hard,nosuid,nodev,timeo=600,retrans=2,_netdev,nofail,x-systemd.mount-timeout=30"
    )


def test_soft_automount_and_extra_options():
    (mount,) = client([MOUNT], hard=False, boot_mode="automount", idle_timeout=0, extra_options=["noatime"])["mounts"]
    assert mount["opts"] == (
        "nfsvers=4.1,proto=tcp,soft,nosuid,nodev,timeo=600,retrans=2,_netdev,x-systemd.automount,x-systemd.idle-timeout=0,"
        "x-systemd.mount-timeout=30,noatime"
    )


def test_per_mount_options_replace_the_extra_options():
    (mount,) = client([dict(MOUNT, options=["ro"])], extra_options=["noatime"])["mounts"]
    assert mount["opts"].endswith("x-systemd.mount-timeout=30,ro")


def test_an_ipv6_server_is_bracketed():
    assert client([dict(MOUNT, server="fd00::10")])["mounts"][0]["src"] == "[fd00::10]:/srv/qwen3vl/data"


@pytest.mark.parametrize(
    "option",
    [
        "hard",
        "soft",
        "nfsvers=3",
        "vers=4",
        "timeo=1",
        "nofail",
        "_netdev",
        "x-systemd.automount",
        "proto=udp",
        "suid",
        "dev",
    ],
)
def test_options_the_role_sets_are_refused_as_extras(option):
    message = only_error(client([dict(MOUNT, options=[option])]))
    assert message.startswith("nfs_client_mounts[0].options") and "is set by the role" in message


@pytest.mark.parametrize(
    ("mount", "variable"),
    [
        (dict(MOUNT, path="/"), "nfs_client_mounts[0].path"),
        (dict(MOUNT, path="mnt/x"), "nfs_client_mounts[0].path"),
        (dict(MOUNT, server=""), "nfs_client_mounts[0].server"),
        (dict(MOUNT, server="bad host"), "nfs_client_mounts[0].server"),
        (dict(MOUNT, export="data"), "nfs_client_mounts[0].export"),
        (dict(MOUNT, mode="rwx"), "nfs_client_mounts[0].mode"),
        (dict(MOUNT, owner="Bad Owner"), "nfs_client_mounts[0].owner"),
        (dict(MOUNT, options="ro"), "nfs_client_mounts[0].options"),
        (dict(MOUNT, options=["a b"]), "nfs_client_mounts[0].options"),
        (dict(MOUNT, colour="red"), "nfs_client_mounts[0]: unknown key"),
    ],
)
def test_bad_mounts_are_refused_naming_the_variable(mount, variable):
    assert only_error(client([mount])).startswith(variable)


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"nfs_version": "5"}, "nfs_client_nfs_version"),
        ({"boot_mode": "wait"}, "nfs_client_boot_mode"),
        ({"timeo": 0}, "nfs_client_timeo"),
        ({"retrans": "2"}, "nfs_client_retrans"),
        ({"mount_timeout": 0}, "nfs_client_mount_timeout"),
        ({"state": "unmounted"}, "nfs_client_mount_state"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(settings, variable):
    assert client([MOUNT], **settings)["errors"][0].startswith(variable)


def test_two_mounts_on_one_point_or_one_inside_another_are_refused():
    assert "two mounts use the mount point" in only_error(client([MOUNT, dict(MOUNT, export="/srv/b")]))
    assert "inside the mount point /mnt/qwen3vl-data" in only_error(
        client([MOUNT, dict(MOUNT, path="/mnt/qwen3vl-data/models")])
    )


def test_fstab_ours_marks_a_mount_already_in_fstab_with_the_same_source():
    fstab = "# comment\nstorage1:/srv/qwen3vl/data  /mnt/qwen3vl-data  nfs  hard 0 0\n/dev/sda1 / ext4 defaults 0 1\n"
    assert client([MOUNT], fstab)["mounts"][0]["fstab_ours"] is True
    other = fstab.replace("storage1:", "storage2:")
    assert client([MOUNT], other)["mounts"][0]["fstab_ours"] is False
    assert client([MOUNT], "")["mounts"][0]["fstab_ours"] is False
    assert (
        client([MOUNT], "#storage1:/srv/qwen3vl/data /mnt/qwen3vl-data nfs hard 0 0\n")["mounts"][0]["fstab_ours"]
        is False
    )


def test_filters_accept_ansible_style_input():
    assert nfs_server_plan({"exports": [DATA], "implementation": "ganesha", "nfs_versions": [4]})["errors"] == []
    assert nfs_client_plan(dict(SETTINGS, mounts=[MOUNT]))["mounts"][0]["src"] == "storage1:/srv/qwen3vl/data"


# --- the settings the role's preflight checked in Jinja, and the filters' calling convention -----------


@pytest.mark.parametrize(("grace", "lease"), [(89, 90), (10, 11), (0, 1)])
def test_a_grace_period_shorter_than_the_lease_time_is_refused(grace, lease):
    assert only_error(server([DATA], grace_period=grace, lease_time=lease)) == (
        f"nfs_server_grace_period: {grace} is shorter than nfs_server_lease_time ({lease}); "
        "clients could not reclaim their state"
    )


@pytest.mark.parametrize(("grace", "lease"), [(90, 90), (120, 90), (11, 10), (None, 90), (90, None)])
def test_a_grace_period_of_at_least_one_lease_passes(grace, lease):
    assert server([DATA], grace_period=grace, lease_time=lease)["errors"] == []


def test_an_empty_export_list_is_a_warning_not_an_error():
    assert server([]) == {
        "errors": [],
        "warnings": ["nfs_server_exports: empty; the server will export nothing"],
        "exports": [],
    }
    assert server([DATA])["warnings"] == []


def test_the_server_filter_reads_the_roles_settings_without_the_prefix():
    config = {
        "exports": [DATA],
        "implementation": "kernel",
        "nfs_versions": [3, 4],
        "allow_any_client": False,
        "grace_period": 60,
        "lease_time": 90,
    }
    result = nfs_server_plan(config)
    assert result["errors"] == [
        "nfs_server_grace_period: 60 is shorter than nfs_server_lease_time (90); clients could not reclaim their state"
    ]
    assert nfs_server_plan(dict(config, grace_period=90))["exports"][0]["path"] == DATA["path"]
    assert nfs_server_plan(dict(config, exports=[], grace_period=90)) == {
        "errors": [],
        "warnings": ["nfs_server_exports: empty; the server will export nothing"],
        "exports": [],
    }
    with pytest.raises(AnsibleFilterError):
        nfs_server_plan([DATA])


def test_the_client_filter_reads_mount_state_and_the_fstab_text():
    config = dict({k: v for k, v in SETTINGS.items() if k != "state"}, mounts=[MOUNT], mount_state="unmounted")
    (message,) = nfs_client_plan(config)["errors"]
    assert message.startswith("nfs_client_mount_state: ") and "'unmounted'" in message
    fstab = "storage1:/srv/qwen3vl/data /mnt/qwen3vl-data nfs hard 0 0\n"
    result = nfs_client_plan(dict(config, mount_state="present"), fstab)
    assert (result["errors"], result["warnings"], result["mounts"][0]["fstab_ours"]) == ([], [], True)
    with pytest.raises(AnsibleFilterError):
        nfs_client_plan([MOUNT])


# mount points: what the role's stat and find tasks found on the host

PLANNED = client([MOUNT], "")["mounts"]
DIRECTORY = {"exists": True, "isdir": True, "isreg": False}


@pytest.mark.parametrize(
    ("stat", "kind"),
    [
        ({"exists": True, "isdir": False, "isreg": True}, "a file"),
        ({"exists": True, "isdir": False, "isreg": False, "islnk": True}, "a link or special file"),
    ],
)
def test_a_mount_point_that_is_not_a_directory_is_refused(stat, kind):
    assert core.mountpoint_errors(PLANNED, [stat], [""]) == [
        f"nfs_client_mounts[0].path: /mnt/qwen3vl-data exists and is not a directory ({kind}); "
        "a mount point must be a directory"
    ]
    # allowing a non-empty directory does not make a file a directory
    assert core.mountpoint_errors(PLANNED, [stat], [""], allow_nonempty=True) != []


@pytest.mark.parametrize("stat", [{"exists": False}, DIRECTORY, None])
def test_a_missing_or_empty_mount_point_directory_passes(stat):
    assert core.mountpoint_errors(PLANNED, [stat], [""]) == []


def test_a_non_empty_mount_point_is_refused_naming_what_it_holds():
    assert core.mountpoint_errors(PLANNED, [DIRECTORY], ["/mnt/qwen3vl-data/keep.txt"]) == [
        "nfs_client_mounts[0].path: /mnt/qwen3vl-data is not empty (it holds /mnt/qwen3vl-data/keep.txt); "
        "mounting storage1:/srv/qwen3vl/data there would hide its content. Move it away, or set "
        "nfs_client_allow_nonempty: true"
    ]


def test_a_non_empty_mount_point_passes_when_allowed_or_when_the_role_wrote_its_fstab_entry():
    assert core.mountpoint_errors(PLANNED, [DIRECTORY], ["/mnt/qwen3vl-data/x"], allow_nonempty=True) == []
    ours = client([MOUNT], "storage1:/srv/qwen3vl/data /mnt/qwen3vl-data nfs hard 0 0\n")["mounts"]
    assert core.mountpoint_errors(ours, [DIRECTORY], ["/mnt/qwen3vl-data/x"]) == []


def test_each_mount_point_is_named_by_its_index():
    planned = client([MOUNT, dict(MOUNT, path="/mnt/b"), dict(MOUNT, path="/mnt/c")], "")["mounts"]
    stats = [DIRECTORY, {"exists": True, "isdir": False, "isreg": True}, DIRECTORY]
    errors = core.mountpoint_errors(planned, stats, ["", "", "/mnt/c/x"])
    assert [e.split(":")[0] for e in errors] == ["nfs_client_mounts[1].path", "nfs_client_mounts[2].path"]


def test_the_mountpoint_filter_reads_registered_loop_results():
    """Registered results as Ansible hands them over: a skipped find (nothing to look at, or something is
    mounted there) has no stdout."""
    planned = client([MOUNT, dict(MOUNT, path="/mnt/b")], "")["mounts"]
    stats = [{"stat": DIRECTORY, "item": planned[0]}, {"stat": DIRECTORY, "item": planned[1]}]
    finds = [{"skipped": True, "item": [planned[0]]}, {"stdout": "/mnt/b/x", "rc": 0, "item": [planned[1]]}]
    assert [e.split(":")[0] for e in nfs_client_mountpoint_errors(planned, stats, finds, False)] == [
        "nfs_client_mounts[1].path"
    ]
    assert nfs_client_mountpoint_errors(planned, stats, finds, True) == []
    assert nfs_client_mountpoint_errors([], [], []) == []
    with pytest.raises(AnsibleFilterError):
        nfs_client_mountpoint_errors({"path": "/mnt/b"}, stats, finds)
    with pytest.raises(AnsibleFilterError):
        nfs_client_mountpoint_errors(planned, stats[:1], finds)


def test_the_module_loads_by_file_path_outside_the_collection():
    """tests/vm/test_nfs_boot.py loads nfs_plan.py by its path, without ansible_collections on sys.path, for
    client_options: the module finds its sibling checks.py then."""
    path = Path(core.__file__).resolve()
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('nfs_plan', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "assert 'ansible_collections.qwen3vl' not in sys.modules\n"
        "print(','.join(module.client_options({'boot_mode': 'nofail'})))\n"
        "print(module.server_plan([], grace_period=1, lease_time=2)['errors'][0].split(':')[0])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "nfsvers=4.1,proto=tcp,hard,nosuid,nodev,timeo=600,retrans=2,_netdev,nofail,x-systemd.mount-timeout=30",
        "nfs_server_grace_period",
    ]
