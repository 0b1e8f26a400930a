"""Named volumes without root: names, options, idempotent create, in-use removal, prune, copy-up, subpath."""

from __future__ import annotations

import os
import stat

import pytest

from engine.errors import VolumeError, VolumeInUse, VolumeNotFound
from engine.state import StateRoot
from engine.volumes import ANONYMOUS_LABEL, VolumeStore, labels_match, validate_name


@pytest.fixture
def root(tmp_path):
    state = StateRoot.open(tmp_path / "root")
    try:
        yield state
    finally:
        state.close()


@pytest.fixture
def store(root):
    return VolumeStore(root)


# -- names and options --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["db", "my-vol", "a.b_c-9", "0x", "A" * 255])
def test_docker_names_are_accepted(name):
    validate_name(name)


@pytest.mark.parametrize("name", ["", "a", "-x", "_x", ".x", "a/b", "a b", "/abs", "é-vol", "x:y", "A" * 256])
def test_names_outside_dockers_pattern_are_refused(store, name):
    with pytest.raises(VolumeError, match="invalid volume name"):
        store.create(name)


def test_create_makes_a_0755_data_dir_and_a_row(store, root):
    volume = store.create("data", labels={"com.example": "1"})
    assert volume.mountpoint == root.path / "volumes" / "data" / "_data"
    assert stat.S_IMODE(volume.mountpoint.stat().st_mode) == 0o755
    assert store.get("data") == volume
    assert [v.name for v in store.list()] == ["data"]


def test_create_is_idempotent_when_options_match_and_keeps_data(store):
    first = store.create("data", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    (first.mountpoint / "keep").write_text("x")
    again = store.create("data", driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert again == first
    assert (first.mountpoint / "keep").read_text() == "x"


def test_create_with_other_options_is_an_error(store):
    store.create("data")
    with pytest.raises(VolumeError, match="different options"):
        store.create("data", driver_opts={"type": "tmpfs", "device": "tmpfs"})


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"size": "1g"}, "invalid option"),
        ({"type": "tmpfs"}, "missing required option: 'device'"),
        ({"o": "bind", "device": "/"}, "missing required option: 'type'"),
        ({"type": "none", "o": "bind", "device": "relative"}, "absolute"),
        ({"type": "none", "o": "bind", "device": "/nonexistent/pyc-test"}, "does not exist"),
        ({"type": "tmpfs", "device": "tmpfs", "o": "size=lots"}, "bad tmpfs size"),
        ({"type": "tmpfs", "device": "tmpfs", "o": "mode=999"}, "bad tmpfs mode"),
    ],
)
def test_bad_driver_opts_are_refused_at_create(store, opts, message):
    with pytest.raises(VolumeError, match=message):
        store.create("data", driver_opts=opts)
    assert store.list() == []


def test_only_the_local_driver(store):
    with pytest.raises(VolumeError, match="not supported"):
        store.create("data", driver="rexray")


def test_anonymous_volume_gets_a_hex_name_and_dockers_label(store):
    volume = store.create()
    assert len(volume.name) == 64 and int(volume.name, 16) >= 0
    assert ANONYMOUS_LABEL in volume.labels


# -- get / inspect / external ---------------------------------------------------------------------------


def test_missing_and_external_volumes_are_not_created(store):
    with pytest.raises(VolumeNotFound, match="no such volume"):
        store.get("nope")
    with pytest.raises(VolumeNotFound, match='external volume "shared" not found'):
        store.get("shared", external=True)
    assert store.list() == []


def test_inspect_has_dockers_fields(store):
    store.create("data", labels={"k": "v"})
    document = store.inspect("data")
    assert set(document) == {"CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"}
    assert document["Driver"] == "local" and document["Scope"] == "local"
    assert document["Labels"] == {"k": "v"} and document["Options"] is None
    assert document["CreatedAt"].endswith("Z") and document["Mountpoint"].endswith("/volumes/data/_data")


# -- in use, remove, prune --------------------------------------------------------------------------------


def test_a_volume_in_use_is_not_removed_even_with_force(store):
    volume = store.create("data")
    store.mark_in_use("data", "c1")
    store.mark_in_use("data", "c1")  # idempotent
    with pytest.raises(VolumeInUse, match=r"in use - \[c1\]"):
        store.remove("data")
    with pytest.raises(VolumeInUse):
        store.remove("data", force=True)
    assert volume.mountpoint.is_dir()
    store.release("data", "c1")
    assert store.remove("data") is True
    assert not volume.mountpoint.parent.exists()


def test_remove_missing_volume(store):
    with pytest.raises(VolumeNotFound):
        store.remove("nope")
    assert store.remove("nope", force=True) is False


def test_mark_in_use_needs_the_volume(store):
    with pytest.raises(VolumeNotFound):
        store.mark_in_use("nope", "c1")


def test_release_all_of_a_container(store):
    store.create("aa")
    store.create("bb")
    store.mark_in_use("aa", "c1")
    store.mark_in_use("bb", "c1")
    store.mark_in_use("bb", "c2")
    assert store.release_all("c1") == ["aa", "bb"]
    assert store.users("bb") == ["c2"]


def test_prune_keeps_in_use_and_named_by_default(store):
    store.create("named")
    anon_used, anon_free = store.create(), store.create()
    (anon_free.mountpoint / "f").write_bytes(b"x" * 10000)
    store.mark_in_use(anon_used.name, "c1")
    report = store.prune()
    assert report.deleted == [anon_free.name]
    assert report.reclaimed >= 10000
    assert {v.name for v in store.list()} == {"named", anon_used.name}


def test_prune_all_with_label_filters(store):
    store.create("keep-used", labels={"app": "x"})
    store.create("gone", labels={"app": "x"})
    store.create("other", labels={"app": "y"})
    store.create("plain")
    store.mark_in_use("keep-used", "c1")
    assert store.prune(all=True, label=["app=x"]).deleted == ["gone"]
    assert store.prune(all=True, label_not=["app"]).deleted == ["plain"]
    assert store.prune(all=True).deleted == ["other"]
    assert [v.name for v in store.list()] == ["keep-used"]


def test_label_filter_forms():
    labels = {"a": "1", "b": ""}
    assert labels_match(labels, ["a"]) and labels_match(labels, ["a=1", "b"]) and labels_match(labels, ["b="])
    assert not labels_match(labels, ["a=2"]) and not labels_match(labels, ["c"])
    assert not labels_match(labels, [], ["a"]) and labels_match(labels, [], ["a=2"])


def test_data_survives_reopening_the_store(tmp_path):
    with StateRoot.open(tmp_path / "root") as state:
        volume = VolumeStore(state).create("data", labels={"k": "v"})
        (volume.mountpoint / "f").write_text("kept")
        VolumeStore(state).mark_in_use("data", "c1")
    with StateRoot.open(tmp_path / "root") as state:
        again = VolumeStore(state)
        assert again.get("data") == volume
        assert (again.get("data").mountpoint / "f").read_text() == "kept"
        assert again.users("data") == ["c1"]


def test_a_rowless_leftover_directory_is_cleared_by_create(store, root):
    leftover = root.path / "volumes" / "data" / "_data"
    leftover.mkdir(parents=True)
    (leftover / "stale").write_text("x")
    volume = store.create("data")
    assert list(volume.mountpoint.iterdir()) == []


# -- mount_source ------------------------------------------------------------------------------------------


def test_mount_sources(store, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    plain = store.create("plain")
    bind = store.create("bound", driver_opts={"type": "none", "o": "bind,ro", "device": str(host)})
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=64m,mode=1777"}
    tmpfs = store.create("scratch", driver_opts=opts)
    assert store.mount_source(plain) == ("bind", str(plain.mountpoint), ())
    assert store.mount_source(bind) == ("bind", str(host), ("ro",))
    assert store.mount_source(tmpfs) == ("tmpfs", "tmpfs", ("size=64m", "mode=1777"))
    assert store.data_path(bind) == host and store.data_path(tmpfs) is None


def test_bind_device_removed_after_create_fails_at_mount(store, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    volume = store.create("bound", driver_opts={"type": "none", "o": "bind", "device": str(host)})
    host.rmdir()
    with pytest.raises(VolumeError, match="does not exist"):
        store.mount_source(volume)


# -- copy-up (as the current user) -------------------------------------------------------------------------


def _image_dir(tmp_path):
    image = tmp_path / "image" / "etc-app"
    (image / "sub").mkdir(parents=True)
    (image / "conf").write_text("hello")
    (image / "conf").chmod(0o640)
    (image / "sub" / "deep").write_text("deep")
    os.link(image / "conf", image / "hard")
    (image / "link").symlink_to("conf")
    (image / "dangling").symlink_to("/nonexistent")
    os.mkfifo(image / "fifo")
    image.chmod(0o711)
    os.utime(image / "conf", (1_000_000_000, 1_000_000_000))
    return image


def test_copy_up_fills_an_empty_volume_once(store, tmp_path):
    image = _image_dir(tmp_path)
    volume = store.create("data")
    assert store.populate_from_image(volume, image) is True
    data = volume.mountpoint
    assert (data / "conf").read_text() == "hello" and (data / "sub" / "deep").read_text() == "deep"
    assert stat.S_IMODE((data / "conf").stat().st_mode) == 0o640
    assert (data / "conf").stat().st_mtime == 1_000_000_000
    assert os.path.samefile(data / "conf", data / "hard")
    assert os.readlink(data / "link") == "conf" and os.readlink(data / "dangling") == "/nonexistent"
    assert stat.S_ISFIFO((data / "fifo").lstat().st_mode)
    assert stat.S_IMODE(data.stat().st_mode) == 0o711  # the volume root takes the image dir's mode
    (image / "new").write_text("x")
    assert store.populate_from_image(volume, image) is False  # not empty any more
    assert not (data / "new").exists()


def test_copy_up_skipped_for_nocopy_and_missing_image_dir(store, tmp_path):
    image = _image_dir(tmp_path)
    volume = store.create("data")
    assert store.populate_from_image(volume, image, nocopy=True) is False
    assert store.populate_from_image(volume, tmp_path / "absent") is False
    assert list(volume.mountpoint.iterdir()) == []


def test_copy_up_into_a_bind_volume_goes_to_the_device(store, tmp_path):
    image = _image_dir(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    volume = store.create("bound", driver_opts={"type": "none", "o": "bind", "device": str(host)})
    assert store.populate_from_image(volume, image) is True
    assert (host / "conf").read_text() == "hello"


def test_copy_up_into_a_tmpfs_volume_needs_the_mounted_path(store, tmp_path):
    image = _image_dir(tmp_path)
    volume = store.create("scratch", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    assert store.populate_from_image(volume, image) is False
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    assert store.populate_from_image(volume, image, into=mounted) is True
    assert (mounted / "conf").read_text() == "hello"


# -- subpath -----------------------------------------------------------------------------------------------


def test_subpath_inside_is_resolved(store, tmp_path):
    volume = store.create("data")
    (volume.mountpoint / "a" / "b").mkdir(parents=True)
    (volume.mountpoint / "alias").symlink_to("a/b")
    assert store.resolve_subpath(volume, "a/b") == volume.mountpoint / "a" / "b"
    assert store.resolve_subpath(volume, "alias") == volume.mountpoint / "a" / "b"
    fd = store.open_subpath(volume, "./a/")
    try:
        assert os.path.samefile(f"/proc/self/fd/{fd}", volume.mountpoint / "a")
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("subpath", "message"),
    [
        ("missing", "does not exist"),
        ("/etc", "relative"),
        ("", "relative"),
        ("../data", r"'\.\.'"),
        ("escape", "outside"),
        ("escape-rel/x", "outside"),
    ],
)
def test_subpath_must_exist_and_stay_inside(store, tmp_path, subpath, message):
    volume = store.create("data")
    (volume.mountpoint / "escape").symlink_to(tmp_path)
    (volume.mountpoint / "escape-rel").symlink_to("../../..")
    with pytest.raises(VolumeError, match=message):
        store.resolve_subpath(volume, subpath)


def test_subpath_of_a_tmpfs_volume_is_refused(store):
    volume = store.create("scratch", driver_opts={"type": "tmpfs", "device": "tmpfs"})
    with pytest.raises(VolumeError, match="subpath"):
        store.resolve_subpath(volume, "x")


# -- CLI ---------------------------------------------------------------------------------------------------


def _cli(tmp_path, *argv):
    """Run `pycompose volume ...` on a state root under tmp_path; returns (exit code, stdout, stderr)."""
    import argparse
    import io

    from compose.cli.commands import volume
    from compose.cli.context import CliContext

    parser = argparse.ArgumentParser()
    parser.add_argument("--root")
    volume.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--root", str(tmp_path / "cli-root"), "volume", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = args.handler(args, CliContext(out, err))
    return code, out.getvalue(), err.getvalue()


def test_cli_create_ls_inspect_rm(tmp_path):
    import json

    assert _cli(tmp_path, "create", "--label", "k=v", "data")[1] == "data\n"
    assert _cli(tmp_path, "create", "other")[1] == "other\n"
    code, out, _ = _cli(tmp_path, "ls")
    assert code == 0 and out.splitlines()[0].split() == ["DRIVER", "VOLUME", "NAME"]
    assert [line.split() for line in out.splitlines()[1:]] == [["local", "data"], ["local", "other"]]
    assert _cli(tmp_path, "ls", "-q", "--filter", "label=k=v")[1] == "data\n"
    assert _cli(tmp_path, "ls", "-q", "--filter", "label!=k", "--filter", "name=oth")[1] == "other\n"
    assert _cli(tmp_path, "ls", "-q", "--filter", "dangling=false")[1] == ""
    row = json.loads(_cli(tmp_path, "ls", "--format", "json", "-f", "name=data")[1])
    assert row["Name"] == "data" and row["Labels"] == "k=v" and row["Driver"] == "local"
    documents = json.loads(_cli(tmp_path, "inspect", "data")[1])
    assert documents[0]["Name"] == "data" and documents[0]["Labels"] == {"k": "v"}
    with pytest.raises(VolumeNotFound):
        _cli(tmp_path, "inspect", "data", "nope")
    assert _cli(tmp_path, "rm", "data", "other")[1] == "data\nother\n"
    assert _cli(tmp_path, "ls", "-q")[1] == ""


def test_cli_rm_refuses_a_volume_in_use_and_goes_on(tmp_path):
    _cli(tmp_path, "create", "busy")
    _cli(tmp_path, "create", "free")
    with StateRoot.open(tmp_path / "cli-root") as state:
        VolumeStore(state).mark_in_use("busy", "c1")
    with pytest.raises(VolumeInUse):
        _cli(tmp_path, "rm", "busy", "free")
    assert _cli(tmp_path, "ls", "-q")[1] == "busy\n"


def test_cli_prune_all_with_label(tmp_path):
    _cli(tmp_path, "create", "--label", "app=x", "gone")
    _cli(tmp_path, "create", "kept")
    code, out, _ = _cli(tmp_path, "prune", "-f", "-a", "--filter", "label=app")
    assert code == 0 and out.startswith("Deleted Volumes:\ngone\n\nTotal reclaimed space: ")
    assert _cli(tmp_path, "ls", "-q")[1] == "kept\n"


def test_cli_create_with_driver_opts_and_bad_input(tmp_path):
    from compose.errors import UsageError

    code, out, _ = _cli(tmp_path, "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "t1")
    assert (code, out) == (0, "t1\n")
    assert json_inspect(tmp_path, "t1")["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    with pytest.raises(VolumeError, match="invalid volume name"):
        _cli(tmp_path, "create", "x")
    with pytest.raises(UsageError):
        _cli(tmp_path, "ls", "--filter", "bogus=1")
    anonymous = _cli(tmp_path, "create")[1].strip()
    assert len(anonymous) == 64


def json_inspect(tmp_path, name):
    import json

    return json.loads(_cli(tmp_path, "inspect", name)[1])[0]


def test_only_filesystem_driver_opts_need_a_host_mount():
    from engine.volumes.mounts import needs_host_mount

    assert needs_host_mount({"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert needs_host_mount({"type": "nfs", "device": ":/export", "o": "addr=10.0.0.1,ro"})
    assert not needs_host_mount({})
    assert not needs_host_mount({"type": "none", "device": "/srv", "o": "bind"})
    assert not needs_host_mount({"type": "none", "device": "/srv", "o": "rbind,ro"})
