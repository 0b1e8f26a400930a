"""`image bootstrap`: a Debian base image made from Debian's own packages, with no registry.

On a machine that cannot reach Docker Hub, `debian:bookworm-slim` is built locally with `mmdebstrap` from
the mirror the host's apt already uses, then imported through the store's one importer
(`ImageStore.import_rootfs`) as a single layer with Docker's debian defaults (PATH, `CMD ["bash"]`).

Three properties matter:
- slim like Docker's `-slim` images: dpkg `path-exclude` rules (kept in the image, so later `apt-get
  install`s stay slim too) drop docs, man pages and locales; apt lists and caches are cleaned;
- reproducible enough: `SOURCE_DATE_EPOCH` comes from the suite's Release date, so a rebuild against the
  same mirror state gives the same package set and timestamps;
- cached: the tar is kept under `/var/cache/pycompose/bootstrap/<key>.tar` (key = suite, variant, slim,
  includes, mirrors, architecture, recipe version); an image already tagged with the same key (label
  `org.pycompose.bootstrap.key`) is returned as is, so a second run costs a database lookup.
Every failure is a `BuildError` and leaves neither a half tar nor a temp dir nor a half image behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import field
from email.utils import parsedate_to_datetime
from pathlib import Path

from engine.errors import BuildError, ImageNotFound
from engine.frozen import frozen
from engine.images.reference import parse_reference

MMDEBSTRAP = "/usr/bin/mmdebstrap"
MERGED_USR_HOOK = "/usr/share/mmdebstrap/hooks/maybe-merged-usr"
DEFAULT_CACHE = Path("/var/cache/pycompose/bootstrap")
KEY_LABEL = "org.pycompose.bootstrap.key"
RECIPE = "3"  # bump when the recipe below changes what a key's tar holds
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # as Docker's debian images
VARIANTS = ("extract", "custom", "essential", "apt", "minbase", "buildd", "required", "important", "standard")
RELEASE_TIMEOUT = 20.0
_VERSION_SUITES = {"10": "buster", "11": "bullseye", "12": "bookworm", "13": "trixie", "14": "forky"}
_NO_UPDATES = {"sid", "unstable", "experimental", "rc-buggy"}
_SUITE_RE = re.compile(r"[a-z][a-z0-9.-]*")
_PKG_RE = re.compile(r"[a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?")
_FALLBACK_MIRROR = "http://deb.debian.org/debian"
_TAIL_LINES = 20

# Docker's -slim: everything but copyright files under doc, no man/info pages, no locales but C's alias.
SLIM_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/groff/*",
    "/usr/share/info/*",
    "/usr/share/linda/*",
    "/usr/share/lintian/overrides/*",
    "/usr/share/locale/*",
    "/usr/share/man/*",
)
SLIM_INCLUDES = ("/usr/share/doc/*/copyright", "/usr/share/locale/locale.alias")

# Container-friendly apt/dpkg settings every Docker debian image carries (written by us, our wording).
_CONTAINER_FILES: dict[str, tuple[str, int]] = {
    "etc/dpkg/dpkg.cfg.d/pycompose-unsafe-io": (
        "# a build layer is thrown away on a crash anyway: skip dpkg's fsyncs\nforce-unsafe-io\n",
        0o644,
    ),
    "etc/apt/apt.conf.d/pycompose-clean": (
        "# keep layers small: drop downloaded .debs and apt's binary caches after every run\n"
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb'
        ' /var/cache/apt/*.bin || true"; };\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb'
        ' /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n',
        0o644,
    ),
    "etc/apt/apt.conf.d/pycompose-no-languages": ('Acquire::Languages "none";\n', 0o644),
    "etc/apt/apt.conf.d/pycompose-gzip-indexes": ('Acquire::GzipIndexes "true";\n', 0o644),
    "etc/apt/apt.conf.d/pycompose-autoremove-suggests": (
        'Apt::AutoRemove::SuggestsImportant "false";\n',
        0o644,
    ),
}


@frozen
class BootstrapPlan:
    """Everything that decides the root filesystem's content (the cache key is a hash of it) and the tag."""

    suite: str
    slim: bool
    variant: str
    include: tuple[str, ...]
    mirror: str
    security_mirror: str | None
    arch: str
    tag: str
    source: str = field(default="", compare=False)  # the reference as the user wrote it

    @property
    def key(self) -> str:
        """Stable hash of what goes into the tar (not the tag: two tags of one key share a tar)."""
        doc = {
            "recipe": RECIPE,
            "suite": self.suite,
            "slim": self.slim,
            "variant": self.variant,
            "include": sorted(set(self.include)),
            "mirror": self.mirror,
            "security_mirror": self.security_mirror,
            "arch": self.arch,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]

    def sources(self) -> list[str]:
        """One-line apt sources: the suite, its -updates and -security (not for unstable/experimental)."""
        lines = [f"deb {self.mirror} {self.suite} main"]
        if self.suite not in _NO_UPDATES:
            lines.append(f"deb {self.mirror} {self.suite}-updates main")
            if self.security_mirror:
                lines.append(f"deb {self.security_mirror} {self.suite}-security main")
        return lines

    def command_text(self) -> str:
        """The history comment: the command that made the image."""
        words = ["pycompose image bootstrap", self.source or self.tag, f"--mirror {self.mirror}"]
        words.append(f"--variant {self.variant}")
        if self.include:
            words.append("--include " + ",".join(self.include))
        return " ".join(words)


@frozen
class BootstrapResult:
    """The image, its key, and which shortcut (if any) made it fast."""

    image: object  # engine.images.types.Image
    key: str
    tar_path: Path
    reused_image: bool
    reused_tar: bool


# Services never start while packages install in a container (during the bootstrap and in later builds).
# Written in a setup hook with mmdebstrap's own policy-rc.d step skipped: that step deletes the file at
# the end, which would also take ours.
POLICY_RC_D = "#!/bin/sh\n# pycompose image bootstrap: no service starts inside a container build\nexit 101\n"


# -- planning (pure) -------------------------------------------------------------------------------------


def parse_target(ref: str) -> tuple[str, bool]:
    """`debian:bookworm-slim` -> ("bookworm", True); `debian:12` -> ("bookworm", False)."""
    parsed = parse_reference(ref)
    if parsed.domain != "docker.io" or parsed.path != "library/debian" or parsed.digest:
        raise BuildError("only debian:<suite>[-slim] can be bootstrapped", subject=ref)
    tag = parsed.tag or "latest"
    slim = tag.endswith("-slim")
    suite = tag.removesuffix("-slim")
    suite = {"latest": "stable"}.get(suite, _VERSION_SUITES.get(suite, suite))
    if not _SUITE_RE.fullmatch(suite):
        raise BuildError(f"not a Debian suite name: {suite!r}", subject=ref)
    return suite, slim


def plan(
    ref: str,
    *,
    mirror: str | None = None,
    variant: str | None = None,
    include: Sequence[str] = (),
    tag: str | None = None,
    apt_dir: Path = Path("/etc/apt"),
    arch: str | None = None,
) -> BootstrapPlan:
    """Decide suite, variant, packages, mirrors and tag; no network, no files written."""
    suite, slim = parse_target(ref)
    variant = variant or "minbase"
    if variant not in VARIANTS:
        raise BuildError(f"unknown variant (want one of {', '.join(VARIANTS)})", subject=variant)
    packages = _packages(include)
    host_main, host_security = host_mirrors(apt_dir)
    main = (mirror or host_main or _FALLBACK_MIRROR).rstrip("/")
    security = host_security if mirror is None else _security_for(main)
    target = parse_reference(tag or ref)
    if target.digest:
        raise BuildError("cannot tag a bootstrap image with a digest", subject=tag or ref)
    return BootstrapPlan(
        suite=suite,
        slim=slim,
        variant=variant,
        include=packages,
        mirror=main,
        security_mirror=security,
        arch=arch or dpkg_arch(),
        tag=target.canonical,
        source=ref,
    )


def _packages(include: Sequence[str]) -> tuple[str, ...]:
    """Split `a,b c` forms, check names, sort and dedupe (order must not change the key)."""
    names = {word for item in include for word in re.split(r"[,\s]+", item) if word}
    for name in names:
        if not _PKG_RE.fullmatch(name):
            raise BuildError("not a Debian package name", subject=name)
    return tuple(sorted(names))


def _security_for(mirror: str) -> str | None:
    """deb.debian.org/debian -> deb.debian.org/debian-security (the archive's usual layout)."""
    return mirror + "-security" if mirror.endswith("/debian") else None


def host_mirrors(apt_dir: Path = Path("/etc/apt")) -> tuple[str | None, str | None]:
    """(main mirror, security mirror) the host's apt uses, from deb822 .sources and sources.list files."""
    entries: list[tuple[str, list[str]]] = []
    for path in _source_files(apt_dir):
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        entries += _deb822_entries(text) if path.suffix == ".sources" else _one_line_entries(text)
    main = next((uri for uri, suites in entries if any(not s.endswith("-security") for s in suites)), None)
    security = next((uri for uri, suites in entries if any(s.endswith("-security") for s in suites)), None)
    return _strip(main), _strip(security)


def _strip(uri: str | None) -> str | None:
    return uri.rstrip("/") if uri else None


def _source_files(apt_dir: Path) -> list[Path]:
    files = [apt_dir / "sources.list"]
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    return [f for f in files if f.is_file()]


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    """Enabled `Types: deb` stanzas as (first URI, suites)."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        uris = fields.get("uris", "").split()
        if uris and _is_http(uris[0]):
            entries.append((uris[0], fields.get("suites", "").split()))
    return entries


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    """`deb [opts] URI suite comp...` lines as (URI, [suite])."""
    entries = []
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb" and _is_http(line[1]):
            entries.append((line[1], [line[2]]))
    return entries


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def dpkg_arch() -> str:
    """The host's Debian architecture name (mmdebstrap builds for it without emulation)."""
    try:
        done = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot ask dpkg for the architecture: {exc}", subject="dpkg") from exc
    return done.stdout.strip()


def mmdebstrap_command(plan: BootstrapPlan, output: Path, work: Path) -> list[str]:
    """The mmdebstrap invocation; `work` holds our config files (written by `write_config`)."""
    command = [
        MMDEBSTRAP,
        "--mode=unshare",  # as root: own mount namespace, so no mount can outlive a crash
        f"--variant={plan.variant}",
        f"--architectures={plan.arch}",
        "--format=tar",
        # merged /usr through usr-is-merged where the suite has it, not the usrmerge package (+ perl)
        f"--hook-dir={MERGED_USR_HOOK}",
    ]
    if plan.include:
        command.append("--include=" + ",".join(plan.include))
    if plan.slim:
        command.append(f"--dpkgopt={work / 'slim.cfg'}")
    tree = work / "tree"
    command += [
        "--skip=chroot/policy-rc.d",  # ours stays in the image; mmdebstrap would delete its own at the end
        f'--setup-hook=mkdir -p "$1/usr/sbin" && install -m 0755 {work / "policy-rc.d"} "$1/usr/sbin/"',
        f'--customize-hook=cp -R --preserve=mode {tree}/. "$1"/',
        # the engine writes these per container; empty files keep the tar the same on every host
        '--customize-hook=cd "$1/etc" && : > resolv.conf && : > hostname && chmod 0644 resolv.conf hostname',
        # apt's binary caches (74 MB): our apt config names no cache file, so `apt-get clean` misses them
        '--customize-hook=rm -f "$1"/var/cache/apt/*.bin',
        plan.suite,
        str(output),
        *plan.sources(),
    ]
    return command


def slim_config() -> str:
    """dpkg's path filters for -slim (kept in the image: later installs are filtered too)."""
    lines = ["# pycompose image bootstrap: slim like Docker's debian:*-slim"]
    lines += [f"path-exclude={path}" for path in SLIM_EXCLUDES]
    lines += [f"path-include={path}" for path in SLIM_INCLUDES]
    return "\n".join(lines) + "\n"


def write_config(work: Path) -> None:
    """The slim filter file and the tree copied into the root filesystem."""
    (work / "slim.cfg").write_text(slim_config())
    (work / "policy-rc.d").write_text(POLICY_RC_D)
    for relative, (content, mode) in _CONTAINER_FILES.items():
        path = work / "tree" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)


def image_changes(plan: BootstrapPlan) -> list[str]:
    """The `--change` lines that give the import Docker's debian config plus our key label."""
    return [f"ENV PATH={PATH_ENV}", 'CMD ["bash"]', f"LABEL {KEY_LABEL}={plan.key}"]


# -- the mirror -------------------------------------------------------------------------------------------


def release_epoch(mirror: str, suite: str, timeout: float = RELEASE_TIMEOUT) -> int:
    """The suite's Release `Date:` as seconds; doubles as the check that mirror and suite exist."""
    url = f"{mirror}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            for raw in response:
                if raw.startswith(b"Date:"):
                    return int(parsedate_to_datetime(raw[5:].decode().strip()).timestamp())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise BuildError(f"unknown suite: the mirror has no {url}", subject=suite) from None
        raise BuildError(f"mirror answered HTTP {exc.code} for {url}", subject=mirror) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BuildError(f"mirror unreachable ({reason})", subject=mirror) from None
    raise BuildError(f"{url} has no Date field", subject=mirror)


# -- building the tar -------------------------------------------------------------------------------------


def cached_tar(plan: BootstrapPlan, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Where the tar for this plan lives (present or not)."""
    return cache_dir / f"{plan.key}.tar"


def build_tar(
    plan: BootstrapPlan,
    cache_dir: Path = DEFAULT_CACHE,
    *,
    log: Callable[[str], None] | None = None,
    epoch: int | None = None,
) -> Path:
    """Run mmdebstrap into a temp file next to the cache entry and rename it into place.

    Everything temporary (the partial tar, mmdebstrap's TMPDIR with its chroot, our config) lives in one
    temp dir under the cache dir that is removed whatever happens.
    """
    if not os.access(MMDEBSTRAP, os.X_OK):
        raise BuildError("mmdebstrap is not installed (apt-get install -y mmdebstrap)", subject=MMDEBSTRAP)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if epoch is None:
        epoch = release_epoch(plan.mirror, plan.suite)
    target = cached_tar(plan, cache_dir)
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{plan.key[:12]}-", dir=cache_dir))
    try:
        write_config(work)
        (work / "tmp").mkdir()
        partial = work / "rootfs.tar"
        _run(mmdebstrap_command(plan, partial, work), _build_env(epoch, work / "tmp"), log, plan.suite)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _build_env(epoch: int, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SOURCE_DATE_EPOCH=str(epoch), TMPDIR=str(tmp), LC_ALL="C.UTF-8")
    return env


def _run(command: list[str], env: dict[str, str], log: Callable[[str], None] | None, subject: str) -> None:
    """Stream mmdebstrap's messages to `log`; on failure, its last lines are the error message."""
    tail: list[str] = []
    with subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                tail = [*tail[-(_TAIL_LINES - 1) :], line.rstrip()]
                if log is not None:
                    log(line.rstrip())
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        detail = "\n".join(tail)
        raise BuildError(f"mmdebstrap failed (exit {code}):\n{detail}", subject=subject)


@contextlib.contextmanager
def _key_lock(cache_dir: Path, key: str) -> Iterator[None]:
    """One builder per key at a time: a second caller waits, then finds the tar ready."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(cache_dir / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# -- the image --------------------------------------------------------------------------------------------


def existing_image(store, plan: BootstrapPlan):  # type: ignore[no-untyped-def]
    """The image tagged `plan.tag` if it was bootstrapped with the same key, else None."""
    try:
        image = store.resolve(plan.tag)
    except ImageNotFound:
        return None
    labels = (image.config.get("config") or {}).get("Labels") or {}
    return image if labels.get(KEY_LABEL) == plan.key else None


def bootstrap(
    store,  # engine.images.store.ImageStore
    plan: BootstrapPlan,
    *,
    cache_dir: Path = DEFAULT_CACHE,
    no_cache: bool = False,
    log: Callable[[str], None] | None = None,
) -> BootstrapResult:
    """Make (or find) the image: same-key image, else cached tar, else a fresh mmdebstrap build."""
    tar_path = cached_tar(plan, cache_dir)
    if not no_cache and (image := existing_image(store, plan)) is not None:
        return BootstrapResult(image, plan.key, tar_path, reused_image=True, reused_tar=tar_path.is_file())
    with _key_lock(cache_dir, plan.key):
        if not no_cache and (image := existing_image(store, plan)) is not None:  # made while we waited
            return BootstrapResult(image, plan.key, tar_path, reused_image=True, reused_tar=True)
        reused = not no_cache and tar_path.is_file()
        if not reused:
            build_tar(plan, cache_dir, log=log)
        image = import_tar(store, plan, tar_path)
    return BootstrapResult(image, plan.key, tar_path, reused_image=False, reused_tar=reused)


def import_tar(store, plan: BootstrapPlan, tar_path: Path):  # type: ignore[no-untyped-def]
    """One layer through the store's own importer, with Docker's debian config and the key label."""
    from engine.images import manifest as mf

    with open(tar_path, "rb") as stream:
        return store.import_rootfs(
            stream,
            plan.tag,
            changes=image_changes(plan),
            message=plan.command_text(),
            platform=mf.host_platform(),
            source=str(tar_path),
        )


def packages_in_tar(tar_path: Path) -> list[str]:
    """`name=version` of every installed package, from the tar's dpkg status (to compare rebuilds)."""
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.name.removeprefix("./") == "var/lib/dpkg/status":
                stream = tar.extractfile(member)
                return _installed(stream.read().decode()) if stream else []
    raise BuildError("no dpkg status in the root filesystem", subject=str(tar_path))


def _installed(status: str) -> list[str]:
    found = []
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", stanza, flags=re.M))
        if "install ok installed" in fields.get("Status", ""):
            found.append(f"{fields.get('Package')}={fields.get('Version')}")
    return sorted(found)
