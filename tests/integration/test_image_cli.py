"""`pycompose image ...`, `pycompose images|pull|push` in a subprocess, against a real docker-registry.

Each run gets its own state root (`--root` or PYCOMPOSE_ROOT under tmp_path).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import PASSWORD, USERNAME, RegistryServer, closed_port

from compose.cli.commands.image import format_table, human_duration, human_size
from compose.cli.commands.project_images import pull_decision

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from compose.cli.main import main; sys.exit(main(sys.argv[1:]))"


def rootfs(marker: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in ("bin", "etc"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        data = f"ID={marker}\n".encode() + os.urandom(64 * 1024)
        info = tarfile.TarInfo("etc/os-release")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Cli:
    """Runs pycompose in a subprocess with one state root; `env` extras (DOCKER_CONFIG...) apply to all."""

    def __init__(self, root: Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.root, self.cwd, self.env = root, cwd, env or {}

    def __call__(self, *args: str, stdin: bytes | None = None, check: bool = True, use_flag: bool = True):
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("PYCOMPOSE_ROOT", None)
        argv = ["--root", str(self.root), *args] if use_flag else list(args)
        if not use_flag:
            env["PYCOMPOSE_ROOT"] = str(self.root)
        result = subprocess.run(
            [sys.executable, "-c", CLI, *argv],
            input=stdin,
            capture_output=True,
            cwd=self.cwd,
            env=env,
            timeout=120,
        )
        result.out = result.stdout.decode()  # type: ignore[attr-defined]
        result.err = result.stderr.decode()  # type: ignore[attr-defined]
        if check and result.returncode != 0:
            raise AssertionError(
                f"pycompose {' '.join(args)} -> {result.returncode}\n{result.err}{result.out}"
            )
        return result


@pytest.fixture
def cli_factory(tmp_path: Path):
    def make(name: str, **env: str) -> Cli:
        return Cli(tmp_path / f"root-{name}", tmp_path, env)

    return make


@pytest.fixture
def tarball(tmp_path: Path):
    def make(marker: str) -> Path:
        path = tmp_path / f"{marker}.tar"
        path.write_bytes(rootfs(marker))
        return path

    return make


# -- pure helpers --------------------------------------------------------------------------------------------


def test_docker_units_and_table_layout() -> None:
    assert [human_size(n) for n in (0, 512, 1234, 7_800_000, 187_000_000, 1_500_000_000)] == [
        "0B", "512B", "1.23kB", "7.8MB", "187MB", "1.5GB",
    ]  # fmt: skip
    seconds = (0.5, 30, 90, 3000, 3600, 7200, 3 * 86400, 20 * 86400, 90 * 86400)
    assert [human_duration(s) for s in seconds] == [
        "Less than a second", "30 seconds", "About a minute", "50 minutes", "About an hour", "2 hours",
        "3 days", "2 weeks", "3 months",
    ]  # fmt: skip
    table = format_table([["REPOSITORY", "TAG", "IMAGE ID"], ["nginx", "latest", "a6bd71f48f68"]])
    assert table == "REPOSITORY   TAG       IMAGE ID\nnginx        latest    a6bd71f48f68\n"


@pytest.mark.parametrize(
    ("policy", "present", "age", "pull"),
    [
        (None, True, None, True),
        ("always", True, timedelta(seconds=1), True),
        ("never", False, None, False),
        ("build", False, None, False),
        ("missing", True, None, False),
        ("missing", False, None, True),
        ("if_not_present", True, None, False),
        ("daily", True, timedelta(hours=23), False),
        ("daily", True, timedelta(hours=25), True),
        ("daily", False, None, True),
        ("weekly", True, timedelta(days=6), False),
        ("weekly", True, timedelta(days=8), True),
        ("every_12h", True, timedelta(hours=11), False),
        ("every_12h", True, timedelta(hours=13), True),
        ("every_1h30m", True, timedelta(minutes=100), True),
        ("every_2d", True, timedelta(days=1), False),
    ],
)
def test_pull_policy_decision(policy, present, age, pull) -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    last = now - age if age is not None else None
    decided, reason = pull_decision(policy, present=present, last_pulled=last, now=now)
    assert decided is pull
    assert (reason == "") is pull


def test_pull_policy_rejects_unknown_value() -> None:
    from compose.errors import ComposeError

    with pytest.raises(ComposeError, match="sometimes"):
        pull_decision("sometimes", present=True, last_pulled=None, now=datetime.now(UTC))


# -- offline image commands ----------------------------------------------------------------------------------


def test_import_ls_inspect_tag_rm(cli_factory, tarball) -> None:
    cli = cli_factory("a")
    imported = cli(
        "image", "import", "--change", 'CMD ["/bin/sh"]', "-c", "ENV A=1", str(tarball("one")), "app:1"
    )
    image_id = imported.out.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71

    table = cli("image", "ls").out.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[0].index("TAG") == table[1].index("1")  # columns line up under their headers
    assert table[1].split()[:3] == ["app", "1", image_id[7:19]]
    assert cli("image", "ls", "-q").out == f"{image_id[7:19]}\n"
    row = json.loads(cli("image", "ls", "--format", "json").out)
    assert (row["Repository"], row["Tag"], row["ID"]) == ("app", "1", image_id[7:19])

    cli("image", "tag", "app:1", "localhost:5000/team/app:2")
    [document] = json.loads(cli("image", "inspect", "app:1").out)
    assert document["Id"] == image_id
    assert sorted(document["RepoTags"]) == ["app:1", "localhost:5000/team/app:2"]
    assert document["Config"]["Cmd"] == ["/bin/sh"] and "A=1" in document["Config"]["Env"]

    refused = cli("image", "rm", image_id[7:19], check=False)
    assert refused.returncode == 1 and image_id[7:19] in refused.err  # two tags: needs -f
    assert cli("image", "rm", "app:1").out == "Untagged: app:1\n"
    removed = cli("image", "rm", "localhost:5000/team/app:2").out.splitlines()
    assert removed == ["Untagged: localhost:5000/team/app:2", f"Deleted: {image_id}"]
    assert cli("image", "ls", "-q").out == ""

    missing = cli("image", "inspect", "app:1", check=False)
    assert missing.returncode == 1 and "app:1" in missing.err and len(missing.err.splitlines()) == 1


def test_import_from_stdin_with_env_root_and_prune(cli_factory, tarball) -> None:
    cli = cli_factory("env")
    image_id = cli("image", "import", "-", stdin=tarball("stdin").read_bytes(), use_flag=False).out.strip()
    assert (cli.root / "blobs").is_dir()  # PYCOMPOSE_ROOT was used
    row = json.loads(cli("image", "ls", "--format", "json", use_flag=False).out)
    assert (row["Repository"], row["Tag"], row["ID"]) == ("<none>", "<none>", image_id[7:19])  # dangling
    pruned = cli("image", "prune", "-f").out
    assert f"deleted: {image_id}" in pruned and "Total reclaimed space:" in pruned
    assert cli("image", "ls", "-q").out == ""


@pytest.mark.parametrize("archive_format", ["docker", "oci"])
def test_save_and_load_between_roots(cli_factory, tarball, tmp_path: Path, archive_format: str) -> None:
    source, target = cli_factory("source"), cli_factory("target")
    image_id = source("image", "import", str(tarball("saved")), "saved/app:1").out.strip()
    archive = tmp_path / f"saved-{archive_format}.tar"
    source("image", "save", "-o", str(archive), "--format", archive_format, "saved/app:1")
    assert archive.stat().st_size > 64 * 1024
    loaded = target("image", "load", "-i", str(archive))
    assert loaded.out == "Loaded image: saved/app:1\n"
    assert json.loads(target("image", "inspect", "saved/app:1").out)[0]["Id"] == image_id

    failed = source("image", "save", "-o", str(tmp_path / "never.tar"), "no/such:image", check=False)
    assert failed.returncode == 1 and "no/such:image" in failed.err
    assert not (tmp_path / "never.tar").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pycompose-save")] == []


def test_load_of_a_truncated_archive_changes_nothing(cli_factory, tarball, tmp_path: Path) -> None:
    source, target = cli_factory("source"), cli_factory("target")
    source("image", "import", str(tarball("cut")), "cut/app:1")
    archive = tmp_path / "full.tar"
    source("image", "save", "-o", str(archive), "cut/app:1")
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    result = target("image", "load", "-i", str(truncated), check=False)
    assert result.returncode == 1 and len(result.err.strip().splitlines()) == 1
    assert target("image", "ls", "-q").out == ""


# -- registry ------------------------------------------------------------------------------------------------


def test_push_and_pull_through_the_cli(registry: RegistryServer, cli_factory, tarball) -> None:
    source, target = cli_factory("source"), cli_factory("target")
    ref = registry.ref("cli/app", "1")
    image_id = source("image", "import", str(tarball("cli-push")), ref).out.strip()
    pushed = source("image", "push", ref).out
    assert "1: digest: sha256:" in pushed
    assert registry.tags("cli/app") == ["1"]

    pulled = target("image", "pull", ref)
    assert "Digest: sha256:" in pulled.out and pulled.out.rstrip().endswith(ref)
    assert json.loads(target("image", "inspect", ref).out)[0]["Id"] == image_id
    quiet = target("image", "pull", "-q", ref, use_flag=False)
    assert quiet.out == f"{ref}\n"


def test_cli_registry_errors_are_one_line(
    auth_registry: RegistryServer, cli_factory, tarball, tmp_path
) -> None:
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    cli = cli_factory("errors", DOCKER_CONFIG=str(config_dir))

    unreachable = f"127.0.0.1:{closed_port()}/team/app:1"
    result = cli("image", "pull", unreachable, check=False)
    assert result.returncode == 1 and unreachable.split("/")[0] in result.err
    assert len(result.err.strip().splitlines()) == 1

    import base64

    def login(password: str) -> None:
        auth = base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
        (config_dir / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))

    login("wrong-password")
    denied = cli("image", "pull", auth_registry.ref("team/app", "1"), check=False)
    assert denied.returncode == 1 and auth_registry.host in denied.err and "wrong-password" not in denied.err

    login(PASSWORD)
    missing = cli("image", "pull", auth_registry.ref("team/app", "nope"), check=False)
    assert missing.returncode == 1 and "team/app" in missing.err
    assert len(missing.err.strip().splitlines()) == 1
    assert cli("image", "ls", "-q").out == ""


# -- project-level images / pull / push ------------------------------------------------------------------


def write_project(directory: Path, host: str) -> Path:
    (directory / "compose.yaml").write_text(
        "name: shop\n"
        "services:\n"
        f"  web:\n    image: {host}/shop/web:1\n    depends_on: [db]\n"
        f"  db:\n    image: {host}/shop/db:1\n    pull_policy: missing\n"
        f"  worker:\n    image: {host}/shop/worker:1\n    pull_policy: daily\n"
        f"  app:\n    build: .\n    image: {host}/shop/app:1\n"
        "  local:\n    image: local-only:1\n    pull_policy: never\n"
    )
    return directory


def test_project_pull_images_push(registry: RegistryServer, cli_factory, tarball, tmp_path: Path) -> None:
    publisher = cli_factory("publisher")
    for name in ("web", "db", "worker"):
        ref = registry.ref(f"shop/{name}", "1")
        publisher("image", "import", str(tarball(name)), ref)
        publisher("image", "push", "-q", ref)
    project = write_project(tmp_path, registry.host)
    cli = Cli(tmp_path / "root-project", project)

    pulled = cli("pull", "web", "--include-deps")
    assert " db Pulled" in pulled.err and " web Pulled" in pulled.err and "worker" not in pulled.err
    again = cli("pull")
    assert " db Skipped - Image is already present locally" in again.err
    assert " worker Pulled" in again.err and " local Skipped" in again.err
    assert " app Skipped" not in again.err  # app has an image: it is pulled (and may fail: it can be built)
    assert "must be built from source" in again.err
    fresh = cli("pull", "worker")
    assert " worker Skipped - Image was pulled less than a day ago" in fresh.err
    assert " worker Pulled" in cli("pull", "--policy", "always", "worker").err

    listed = cli("images").out.splitlines()
    assert listed[0].split()[:3] == ["SERVICE", "REPOSITORY", "TAG"]
    assert sorted(line.split()[0] for line in listed[1:]) == ["db", "web", "worker"]
    documents = json.loads(cli("images", "--format", "json", "web").out)
    assert [(d["Service"], d["Tag"]) for d in documents] == [("web", "1")]
    assert len(cli("images", "-q").out.split()) == 3

    # push: only services compose builds (build + image); a failure stops it unless ignored
    failed = cli("push", check=False)
    assert failed.returncode == 1 and "shop/app" in failed.err
    cli("image", "import", str(tarball("app")), registry.ref("shop/app", "1"))
    pushed = cli("push")
    assert " app Pushed" in pushed.err and " web Skipped" in pushed.err
    assert registry.tags("shop/app") == ["1"]


def test_project_pull_failures(registry: RegistryServer, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  ghost:\n    image: {registry.host}/nobody/ghost:1\n"
    )
    cli = Cli(tmp_path / "root", tmp_path)
    failed = cli("pull", check=False)
    assert failed.returncode == 1 and "nobody/ghost" in failed.err
    ignored = cli("pull", "--ignore-pull-failures")
    assert "nobody/ghost" in ignored.err
    assert cli("images", "-q").out == ""
