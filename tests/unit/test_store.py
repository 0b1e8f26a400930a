"""ImageStore: blobs, shared layers, names, removal, prune, import, crash leftovers, two processes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import multiprocessing
import os
import tarfile
import time
from pathlib import Path

import pytest

from engine.errors import DigestMismatch, EngineError, ImageInUse, ImageNotFound, InvalidReference
from engine.images import manifest as mf
from engine.images import store as store_mod
from engine.images.changes import apply_changes
from engine.images.store import ImageStore
from engine.images.types import Descriptor, Platform
from engine.state import StateRoot

# ----------------------------------------------------------------------------------------- fixtures


def make_tar(files: dict[str, bytes], *, dirs: tuple[str, ...] = (), mtime: int = 1_700_000_000) -> bytes:
    """A small root filesystem tarball, deterministic so equal inputs give equal digests."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, mtime
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


BASE_TAR = make_tar({"etc/os-release": b"ID=test\n", "bin/sh": b"#!fake\n"}, dirs=("etc", "bin"))
APP_TAR = make_tar({"app/main.py": b"print('hi')\n"}, dirs=("app",))
OTHER_TAR = make_tar({"srv/data": b"x" * 5000}, dirs=("srv",))


@pytest.fixture
def root(tmp_path: Path):
    state = StateRoot.open(tmp_path / "state")
    try:
        yield state
    finally:
        state.close()


@pytest.fixture
def store(root: StateRoot) -> ImageStore:
    return ImageStore(root)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_image(store: ImageStore, layer_tars: list[bytes], *, tags=(), label: str = "x", gzip_layers=False):
    """Write layer, config and manifest blobs the way a pull would, then register the image."""
    layer_descs = []
    for data in layer_tars:
        blob = gzip.compress(data, mtime=0) if gzip_layers else data
        media = mf.OCI_LAYER_GZIP if gzip_layers else mf.OCI_LAYER
        layer_descs.append(store.write_blob([blob], expected_digest=digest_of(blob), media_type=media))
    config = mf.new_image_config(
        diff_ids=[digest_of(t) for t in layer_tars],
        platform=Platform("linux", "amd64"),
        created="2024-01-02T03:04:05Z",
        config={"Labels": {"which": label}},
    )
    config_desc = store.write_blob([mf.canonical_json(config)], media_type=mf.OCI_CONFIG)
    manifest = mf.canonical_json(mf.new_manifest(config_desc, layer_descs, oci=True))
    return store.register_image(manifest, mf.OCI_MANIFEST, tags=tags)


def temp_entries(root: StateRoot) -> list[str]:
    """What is staged under tmp/, ignoring the (empty) per-process session directories themselves."""
    found = []
    for entry in Path(root.tmp_dir).iterdir():
        found += [str(p) for p in entry.iterdir()] if entry.is_dir() else [str(entry)]
    return found


def layer_dirs_on_disk(root: StateRoot) -> set[str]:
    return set(os.listdir(root.layers_dir))


def blob_files_on_disk(root: StateRoot) -> set[str]:
    return set(os.listdir(root.blobs_dir))


# -------------------------------------------------------------------------------------------- blobs


def test_write_blob_verifies_and_stores(store: ImageStore, root: StateRoot) -> None:
    data = b'{"hello": "world"}'
    desc = store.write_blob(
        iter([data[:5], data[5:]]), expected_digest=digest_of(data), expected_size=len(data)
    )
    assert desc == Descriptor("application/octet-stream", digest_of(data), len(data))
    assert store.has_blob(desc.digest)
    assert store.read_blob(desc.digest) == data
    assert store.blob_path(desc.digest).read_bytes() == data
    with store.open_blob(desc.digest) as stream:
        assert stream.read() == data
    assert temp_entries(root) == []


def test_write_blob_from_stream_and_bytes(store: ImageStore) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several read chunks
    desc = store.write_blob(io.BytesIO(data), media_type=mf.OCI_LAYER)
    assert desc.digest == digest_of(data) and desc.size == len(data) and desc.media_type == mf.OCI_LAYER
    assert store.write_blob(b"abc").digest == digest_of(b"abc")


@pytest.mark.parametrize(
    ("expected_digest", "expected_size", "message"),
    [
        (digest_of(b"other"), None, "hashes to"),
        (None, 3, "longer than"),
        (None, 100, "truncated"),
    ],
)
def test_write_blob_mismatch_keeps_nothing(store, root, expected_digest, expected_size, message) -> None:
    data = b"the real content"
    with pytest.raises(DigestMismatch, match=message):
        store.write_blob([data], expected_digest=expected_digest, expected_size=expected_size)
    assert not store.has_blob(digest_of(data))
    assert blob_files_on_disk(root) == set()
    assert temp_entries(root) == []
    assert root.db.query("SELECT * FROM blobs") == []


def test_write_blob_interrupted_keeps_nothing(store: ImageStore, root: StateRoot) -> None:
    def chunks():
        yield b"a" * 1000
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write_blob(chunks())
    assert blob_files_on_disk(root) == set() and temp_entries(root) == []


def test_write_blob_disk_full_is_reported(store: ImageStore, root: StateRoot, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod.os, "fsync", full)
    with pytest.raises(store_mod.DiskFullError, match="no space left"):
        store.write_blob([b"data"])
    assert blob_files_on_disk(root) == set() and temp_entries(root) == []


def test_write_blob_already_present_is_not_read(store: ImageStore) -> None:
    desc = store.write_blob([b"same"])

    def never():
        raise AssertionError("content should not be read")
        yield b""

    again = store.write_blob(never(), expected_digest=desc.digest, expected_size=4, media_type="x/y")
    assert again == Descriptor("x/y", desc.digest, 4)
    with pytest.raises(DigestMismatch):
        store.write_blob(never(), expected_digest=desc.digest, expected_size=5)


def test_read_blob_detects_corruption(store: ImageStore) -> None:
    desc = store.write_blob([b'{"a": 1}'])
    store.blob_path(desc.digest).write_bytes(b'{"a": 2}')
    with pytest.raises(DigestMismatch, match="corrupt"):
        store.read_blob(desc.digest)


def test_bad_and_missing_digests(store: ImageStore) -> None:
    with pytest.raises(InvalidReference):
        store.has_blob("sha256:XYZ")
    with pytest.raises(ImageNotFound, match="blob"):
        store.open_blob(digest_of(b"nothing"))


# ------------------------------------------------------------------------------------- images, names


def test_register_image_unpacks_layers_in_order(store: ImageStore, root: StateRoot) -> None:
    image = build_image(store, [BASE_TAR, APP_TAR], tags=["example/app:1"], gzip_layers=True)
    assert image.id == digest_of(store.blob_path(image.id).read_bytes())
    assert image.repo_tags == ("docker.io/example/app:1",)
    assert [layer.diff_id for layer in image.layers] == [digest_of(BASE_TAR), digest_of(APP_TAR)]
    assert [layer.chain_id for layer in image.layers] == mf.compute_chain_ids(
        [digest_of(BASE_TAR), digest_of(APP_TAR)]
    )
    top, bottom = store.layer_dirs(image)
    assert Path(top, "app/main.py").read_bytes() == b"print('hi')\n"
    assert Path(bottom, "etc/os-release").read_bytes() == b"ID=test\n"
    assert not Path(top, "etc").exists()
    content = len(b"ID=test\n") + len(b"#!fake\n") + len(b"print('hi')\n")  # file bytes, as docker counts
    assert image.size == store.image_size(image) == content
    assert image.platform == Platform("linux", "amd64")
    assert image.config["config"]["Labels"] == {"which": "x"}
    assert image.layers[0].blob_digest == digest_of(gzip.compress(BASE_TAR, mtime=0))


def test_register_image_rejects_wrong_diff_id(store: ImageStore, root: StateRoot) -> None:
    layer = store.write_blob([BASE_TAR])
    config = mf.new_image_config(diff_ids=[digest_of(APP_TAR)], created="2024-01-01T00:00:00Z")
    config_desc = store.write_blob([mf.canonical_json(config)], media_type=mf.OCI_CONFIG)
    manifest = mf.canonical_json(
        mf.new_manifest(config_desc, [Descriptor(mf.OCI_LAYER, layer.digest, layer.size)], oci=True)
    )
    with pytest.raises(DigestMismatch, match="diff_id"):
        store.register_image(manifest, mf.OCI_MANIFEST, tags=["bad"])
    assert store.list_images() == []
    assert layer_dirs_on_disk(root) == set()
    assert temp_entries(root) == []


def test_register_image_needs_its_blobs(store: ImageStore) -> None:
    config = mf.new_image_config(diff_ids=[digest_of(BASE_TAR)], created="2024-01-01T00:00:00Z")
    config_desc = store.write_blob([mf.canonical_json(config)], media_type=mf.OCI_CONFIG)
    missing = Descriptor(mf.OCI_LAYER, digest_of(BASE_TAR), len(BASE_TAR))
    manifest = mf.canonical_json(mf.new_manifest(config_desc, [missing], oci=True))
    with pytest.raises(ImageNotFound, match="layer blob"):
        store.register_image(manifest, mf.OCI_MANIFEST)


def test_resolve_by_tag_digest_and_ids(store: ImageStore) -> None:
    image = build_image(store, [BASE_TAR], tags=["nginx"])
    short = image.id[7:19]
    for text in (
        "nginx",
        "nginx:latest",
        "docker.io/library/nginx:latest",
        image.id,
        image.id[7:],
        short,
        short[:4],
    ):
        assert store.resolve(text).id == image.id, text
    with pytest.raises(ImageNotFound, match="nginx:other"):
        store.resolve("nginx:other")
    with pytest.raises(ImageNotFound):
        store.resolve("sha256:" + "0" * 64)
    digest_ref = "localhost:5000/web/app@" + image.manifest_digest
    again = store.register_image(store.read_blob(image.manifest_digest), None, repo_digest=digest_ref)
    assert again.repo_digests == (digest_ref,)
    assert store.resolve(digest_ref).id == image.id


def test_ambiguous_prefix_is_an_error(store: ImageStore) -> None:
    images = [build_image(store, [BASE_TAR], label=str(i)) for i in range(40)]
    by_first = {}
    for image in images:
        by_first.setdefault(image.id[7], []).append(image)
    shared = next(group for group in by_first.values() if len(group) > 1)
    with pytest.raises(InvalidReference, match="ambiguous"):
        store.resolve(shared[0].id[7])
    assert store.resolve(shared[0].id[7:20]).id == shared[0].id


def test_tag_untag_and_moving_a_tag(store: ImageStore) -> None:
    first = build_image(store, [BASE_TAR], tags=["app:1"], label="first")
    tagged = store.tag("app:1", "registry.local:5000/team/app:v1")
    assert set(tagged.repo_tags) == {"docker.io/library/app:1", "registry.local:5000/team/app:v1"}
    second = build_image(store, [BASE_TAR], tags=["app:1"], label="second")
    assert store.resolve("app:1").id == second.id
    assert store.get_image(first.id).repo_tags == ("registry.local:5000/team/app:v1",)
    assert store.untag("registry.local:5000/team/app:v1") == first.id
    assert store.get_image(first.id).repo_tags == ()
    with pytest.raises(ImageNotFound):
        store.untag("registry.local:5000/team/app:v1")
    with pytest.raises(InvalidReference):
        store.tag("app:1", "app@sha256:" + "a" * 64)


def test_list_images(store: ImageStore) -> None:
    a = build_image(store, [BASE_TAR], tags=["a"], label="a")
    b = build_image(store, [BASE_TAR, APP_TAR], tags=["b"], label="b")
    assert {i.id for i in store.list_images()} == {a.id, b.id}


def test_shared_base_layer_is_unpacked_once(store: ImageStore, root: StateRoot, monkeypatch) -> None:
    from engine.images import unpack

    calls = []
    real = unpack.unpack_layer

    def counting(stream, dest, *args, **kwargs):
        calls.append(dest)
        return real(stream, dest, *args, **kwargs)

    monkeypatch.setattr(unpack, "unpack_layer", counting)
    one = build_image(store, [BASE_TAR, APP_TAR], tags=["one"])
    two = build_image(store, [BASE_TAR, OTHER_TAR], tags=["two"])
    assert len(calls) == 3
    assert one.layers[0].chain_id == two.layers[0].chain_id
    assert one.layers[0].path == two.layers[0].path
    assert len(layer_dirs_on_disk(root)) == 3


# ------------------------------------------------------------------------------------------ removal


def test_remove_shared_layers_survive_until_last_image(store: ImageStore, root: StateRoot) -> None:
    one = build_image(store, [BASE_TAR, APP_TAR], tags=["one"])
    two = build_image(store, [BASE_TAR, OTHER_TAR], tags=["two"])
    report = store.remove("one")
    assert report.untagged == ["one:latest"] and report.deleted == [one.id]
    assert report.layers_removed == [one.layers[1].chain_id]
    assert digest_of(APP_TAR) in report.blobs_removed and digest_of(BASE_TAR) not in report.blobs_removed
    assert Path(two.layers[0].path, "etc/os-release").exists()
    assert not Path(one.layers[1].path).exists()
    assert store.has_blob(digest_of(BASE_TAR)) and not store.has_blob(digest_of(APP_TAR))
    report = store.remove(two.id[7:19])
    assert report.deleted == [two.id] and report.untagged == ["two:latest"]
    assert set(report.layers_removed) == {two.layers[1].chain_id, two.layers[0].chain_id}
    assert report.reclaimed >= len(BASE_TAR) + len(OTHER_TAR)  # blobs plus unpacked content
    assert layer_dirs_on_disk(root) == set() and blob_files_on_disk(root) == set()
    for table in ("images", "layers", "blobs", "image_layers", "image_blobs", "tags", "repo_digests"):
        assert root.db.query(f"SELECT * FROM {table}") == [], table
    assert temp_entries(root) == []


def test_remove_by_tag_only_untags_while_other_names_remain(store: ImageStore) -> None:
    image = build_image(store, [BASE_TAR], tags=["app:1", "app:2"])
    report = store.remove("app:1")
    assert report.untagged == ["app:1"] and report.deleted == []
    assert store.resolve("app:2").id == image.id


def test_remove_last_tag_drops_digests_of_that_repo(store: ImageStore, root: StateRoot) -> None:
    image = build_image(store, [BASE_TAR], tags=["app:1"])
    store.register_image(
        store.read_blob(image.manifest_digest), None, repo_digest=f"app@{image.manifest_digest}"
    )
    report = store.remove("app:1")
    assert report.untagged == ["app:1", f"app@{image.manifest_digest}"]
    assert report.deleted == [image.id]


def test_remove_by_id_with_several_repositories_needs_force(store: ImageStore) -> None:
    image = build_image(store, [BASE_TAR], tags=["one:1", "two:1"])
    with pytest.raises(ImageInUse, match="must be forced"):
        store.remove(image.id[7:19])
    assert store.resolve("one:1").id == image.id
    report = store.remove(image.id[7:19], force=True)
    assert sorted(report.untagged) == ["one:1", "two:1"] and report.deleted == [image.id]


def test_remove_by_id_with_one_tag_needs_no_force(store: ImageStore) -> None:
    image = build_image(store, [BASE_TAR], tags=["one:1"])
    assert store.remove(image.id).deleted == [image.id]
    with pytest.raises(ImageNotFound):
        store.remove(image.id)


def test_prune_dangling_then_all(store: ImageStore, root: StateRoot) -> None:
    kept = build_image(store, [BASE_TAR], tags=["kept"], label="kept")
    dangling = build_image(store, [BASE_TAR, APP_TAR], label="dangling")
    report = store.prune()
    assert report.deleted == [dangling.id]
    assert [i.id for i in store.list_images()] == [kept.id]
    assert Path(kept.layers[0].path).is_dir()
    report = store.prune(all=True)
    assert report.deleted == [kept.id]
    assert layer_dirs_on_disk(root) == set() and blob_files_on_disk(root) == set()


# ------------------------------------------------------------------------------------------- import


def test_import_rootfs_plain_and_gzip_give_one_image(store: ImageStore) -> None:
    a = store.import_rootfs(io.BytesIO(BASE_TAR), "imported:plain", changes=["CMD /bin/sh"])
    b = store.import_rootfs(io.BytesIO(gzip.compress(BASE_TAR)), "imported:gz", changes=["CMD /bin/sh"])
    for image in (a, b):
        assert len(image.layers) == 1 and image.layers[0].diff_id == digest_of(BASE_TAR)
        assert image.config["rootfs"] == {"type": "layers", "diff_ids": [digest_of(BASE_TAR)]}
        assert image.config["config"]["Cmd"] == ["/bin/sh", "-c", "/bin/sh"]
        assert image.config["history"][0]["comment"] == "Imported from -"
        assert image.platform == mf.host_platform()
        assert image.manifest_media_type == mf.OCI_MANIFEST
        assert Path(image.layers[0].path, "bin/sh").read_bytes() == b"#!fake\n"
    assert a.layers[0].chain_id == b.layers[0].chain_id
    manifest = json.loads(store.read_blob(a.manifest_digest))
    assert manifest["layers"][0] == {
        "mediaType": mf.OCI_LAYER,
        "digest": digest_of(BASE_TAR),
        "size": len(BASE_TAR),
    }


def test_import_zstd_message_platform_and_untagged(store: ImageStore) -> None:
    zstd = pytest.importorskip("zstandard")
    blob = zstd.ZstdCompressor().compress(APP_TAR)
    image = store.import_rootfs(
        io.BytesIO(blob), None, message="hello", platform=Platform("linux", "arm64", "v8")
    )
    assert image.repo_tags == ()
    assert image.platform == Platform("linux", "arm64", "v8")
    assert image.config["history"][0]["comment"] == "hello"
    assert image.layers[0].diff_id == digest_of(APP_TAR)


def test_import_garbage_leaves_store_unchanged(store: ImageStore, root: StateRoot) -> None:
    with pytest.raises(EngineError):
        store.import_rootfs(io.BytesIO(b"this is not a tar archive at all" * 100), "junk")
    assert store.list_images() == []
    assert layer_dirs_on_disk(root) == set() and blob_files_on_disk(root) == set()
    assert root.db.query("SELECT * FROM blobs") == [] and temp_entries(root) == []


def test_import_bad_change_is_refused_before_work(store: ImageStore, root: StateRoot) -> None:
    with pytest.raises(EngineError, match="RUN is not a supported change"):
        store.import_rootfs(io.BytesIO(BASE_TAR), "x", changes=["RUN rm -rf /"])
    assert blob_files_on_disk(root) == set()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (['CMD ["nginx", "-g", "daemon off;"]'], {"Cmd": ["nginx", "-g", "daemon off;"]}),
        (["entrypoint /init --flag"], {"Entrypoint": ["/bin/sh", "-c", "/init --flag"]}),
        (['ENV A=1 B="two words"', "ENV A 3 4"], {"Env": ["A=3 4", "B=two words"]}),
        (
            ["EXPOSE 80 53/udp 8000-8001"],
            {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}},
        ),
        (['LABEL a=b "c d"=e', "LABEL x y z"], {"Labels": {"a": "b", "c d": "e", "x": "y z"}}),
        (["USER 1000:1000"], {"User": "1000:1000"}),
        (["WORKDIR /srv", "WORKDIR app/../data"], {"WorkingDir": "/srv/data"}),
        (
            ['VOLUME ["/data", "/logs"]', "VOLUME /cache /tmp/x"],
            {"Volumes": {"/data": {}, "/logs": {}, "/cache": {}, "/tmp/x": {}}},
        ),
        (["STOPSIGNAL SIGQUIT"], {"StopSignal": "SIGQUIT"}),
        (["STOPSIGNAL 9"], {"StopSignal": "9"}),
    ],
)
def test_apply_changes(changes, expected) -> None:
    assert apply_changes({}, changes) == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("FROM scratch", "FROM is not a supported change"),
        ("CMD", "needs an argument"),
        ("EXPOSE 70000", "invalid port range"),
        ("EXPOSE 80/icmp", "invalid port"),
        ("STOPSIGNAL SIGNOPE", "invalid stop signal"),
        ("ENV novalue", "needs key=value"),
        ("LABEL =x", "expects key=value"),
        ('ENV A="unterminated', "cannot parse"),
    ],
)
def test_apply_changes_errors(change, message) -> None:
    with pytest.raises(EngineError, match=message) as info:
        apply_changes({}, [change])
    assert info.value.subject == change


# ------------------------------------------------------------------------------------ crash leftovers


def test_exception_during_unpack_leaves_nothing(store: ImageStore, root: StateRoot, monkeypatch) -> None:
    from engine.images import unpack

    def exploding(stream, dest, *args, **kwargs):
        Path(dest, "half-written").write_bytes(b"partial")
        raise RuntimeError("boom in the middle of unpacking")

    monkeypatch.setattr(unpack, "unpack_layer", exploding)
    with pytest.raises(RuntimeError, match="boom"):
        store.import_rootfs(io.BytesIO(BASE_TAR), "crashy")
    assert layer_dirs_on_disk(root) == set() and temp_entries(root) == []
    assert root.db.query("SELECT * FROM layers") == [] and root.db.query("SELECT * FROM blobs") == []
    monkeypatch.undo()
    image = store.import_rootfs(io.BytesIO(BASE_TAR), "crashy")
    assert Path(image.layers[0].path, "etc/os-release").exists()


def test_crash_between_rename_and_commit(
    store: ImageStore, root: StateRoot, tmp_path: Path, monkeypatch
) -> None:
    """The layer dir and blob are in place but no row names them: nothing trusts them, prune sweeps them."""

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # as if the process died right after the rename

    monkeypatch.setattr(ImageStore, "_record_layer", crash)
    with pytest.raises(KeyboardInterrupt):
        store.import_rootfs(io.BytesIO(APP_TAR), "half")
    monkeypatch.undo()
    chain_hex = digest_of(APP_TAR)[7:]
    assert chain_hex in layer_dirs_on_disk(root)
    assert store.layer(digest_of(APP_TAR)) is None
    assert store.list_images() == []

    reopened = StateRoot.open(root.path)  # a later command: repair, then use the store
    try:
        later = ImageStore(reopened)
        assert later.list_images() == []
        image = later.import_rootfs(io.BytesIO(APP_TAR), "half")  # the untrusted dir is replaced
        assert Path(image.layers[0].path, "app/main.py").read_bytes() == b"print('hi')\n"
        later.remove("half")
        Path(reopened.layers_dir, "f" * 64).mkdir()  # an orphan dir from another crash
        Path(reopened.blobs_dir, "e" * 64).write_bytes(b"orphan")
        report = later.prune()
        assert "sha256:" + "f" * 64 in report.layers_removed
        assert "sha256:" + "e" * 64 in report.blobs_removed
        assert layer_dirs_on_disk(reopened) == set() and blob_files_on_disk(reopened) == set()
    finally:
        reopened.close()


def _die_mid_unpack(state_path: str) -> None:
    """Child: start an import and die (no cleanup at all) while the layer is being unpacked."""
    from engine.images import unpack

    def dying(stream, dest, *args, **kwargs):
        Path(dest, "partial").write_bytes(b"x")
        os._exit(3)

    unpack.unpack_layer = dying
    state = StateRoot.open(state_path)
    ImageStore(state).import_rootfs(io.BytesIO(BASE_TAR), "killed")


def test_process_killed_mid_import_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "state"
    StateRoot.open(path).close()
    child = multiprocessing.get_context("fork").Process(target=_die_mid_unpack, args=(str(path),))
    child.start()
    child.join(30)
    assert child.exitcode == 3
    state = StateRoot.open(path)
    try:
        assert temp_entries(state) == []  # repair() removed the dead process's staging
        store = ImageStore(state)
        assert store.list_images() == [] and layer_dirs_on_disk(state) == set()
        store.prune()  # the blob written before the crash has no image: swept
        assert blob_files_on_disk(state) == set()
        image = store.import_rootfs(io.BytesIO(BASE_TAR), "killed")
        assert store.resolve("killed").id == image.id
    finally:
        state.close()


# ------------------------------------------------------------------------------------ two processes


def _import_in_child(state_path: str, tag: str, log: str, start_at: float) -> None:
    from engine.images import unpack

    real = unpack.unpack_layer

    def logged(stream, dest, *args, **kwargs):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # widen the window in which the other process would unpack too
        return real(stream, dest, *args, **kwargs)

    unpack.unpack_layer = logged
    state = StateRoot.open(state_path)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        ImageStore(state).import_rootfs(io.BytesIO(BIG_TAR), tag)
    finally:
        state.close()


BIG_TAR = make_tar({f"usr/share/f{i}": os.urandom(2000) for i in range(200)}, dirs=("usr", "usr/share"))


def test_concurrent_imports_from_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "state"
    StateRoot.open(path).close()
    log = tmp_path / "unpacks.log"
    ctx = multiprocessing.get_context("fork")
    start_at = time.time() + 0.5
    children = [
        ctx.Process(target=_import_in_child, args=(str(path), f"racer:{n}", str(log), start_at))
        for n in range(2)
    ]
    for child in children:
        child.start()
    try:
        for child in children:
            child.join(60)
        assert [c.exitcode for c in children] == [0, 0]
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
    assert len(log.read_text().splitlines()) == 1  # the second process waited and reused the layer
    state = StateRoot.open(path)
    try:
        store = ImageStore(state)
        one, two = store.resolve("racer:0"), store.resolve("racer:1")
        assert one.id != two.id or one.layers == two.layers
        assert one.layers[0].chain_id == two.layers[0].chain_id == digest_of(BIG_TAR)
        assert layer_dirs_on_disk(state) == {digest_of(BIG_TAR)[7:]}
        assert len(list(Path(one.layers[0].path, "usr/share").iterdir())) == 200
        assert temp_entries(state) == []
    finally:
        state.close()
