"""Compose service -> engine ContainerSpec (and network/volume specs). CONTRACT (owner: engineer C1). Pure.

Every field of a service that a container needs is translated exactly as docker compose does
(compose's `pkg/compose/create.go` getCreateConfigs/getHostConfig, and compose-go's types): names
(`<project>-<service>-<n>`, `container_name`), hostname/domainname, user, working_dir, environment
(already resolved by the loader), entrypoint/command (None = image's; [] = empty; the engine merges with
the image config), tty/stdin_open/init, labels (compose/labels.py), restart and deploy.restart_policy,
healthcheck (disable/NONE), logging, stop_signal/stop_grace_period, resources (mem_limit, memswap_limit,
mem_reservation, cpus, cpu_shares, cpu_quota/period, cpuset, pids_limit, deploy.resources limits and
reservations, shm_size), security (privileged, cap_add/drop, security_opt: no-new-privileges, seccomp,
label/apparmor accepted; read_only, ulimits, sysctls, oom_score_adj), mounts (volumes long syntax:
volume/bind/tmpfs with their options, anonymous volumes, named volumes mapped to their engine names,
`tmpfs:` entries, volumes_from -> container ids), networking (network_mode: bridge with the service's
networks in priority order and aliases = [service name, *aliases], ipv4/ipv6/mac/link_local; host; none;
service:NAME / container:NAME -> "container:<id>"), ports (long syntax -> PortBinding, ranges expanded),
expose, extra_hosts, dns/dns_search/dns_opt, links (-> (container name of the target's first replica,
alias)), group_add.

Details that follow docker compose rather than intuition:
- entrypoint + command are resolved here against the image's Entrypoint/Cmd (`ImageFacts`), with the
  engine's own merge (`engine.api.resolve_args`): the engine records argv, not the two halves.
- `deploy.restart_policy` wins over `restart`; `deploy.resources.limits` (memory, cpus, pids > 0) win over
  mem_limit/cpus/pids_limit, `reservations.memory` over mem_reservation (cpu reservations are swarm-only).
- Networks: primary first (priority descending, then key); the service-level `mac_address` goes to the
  primary network unless that one sets its own (a different one is an error, as in compose).
  One-off containers get no service aliases unless `use_aliases` (`run --use-aliases`).
- links: for each container of the target service, the alias, `<service>-<n>` and `<project>-<service>-<n>`
  (n = the number of the container being created, as compose writes it); an alias is bound to the first
  container that claims it.
- secrets and configs with a `file:` are read-only bind mounts (`/run/secrets/<name>`, `/<name>`); a bind
  mount in `volumes` at the same target wins, as in compose.
- `network_mode: bridge` (Docker's default bridge) is passed as is with no networks: the engine has no
  default bridge network, so such a container gets a private network namespace only.
- environment entries with no value (`KEY: null`, unset on the host) are left out.

Accepted but not applied (the engine has no such control, or it is meaningless on one host):
- blkio_config, device_cgroup_rules, devices, gpus, deploy.resources.reservations.devices: no device
  cgroup/CDI support beyond `privileged`.
- mem_swappiness, oom_kill_disable, cpu_count, cpu_percent, cpu_rt_period, cpu_rt_runtime, cgroup_parent,
  cgroup (namespace mode), storage_opt: no engine field.
- ipc, pid, uts, userns_mode: containers always get private namespaces.
- runtime, isolation, platform (used when pulling, not here), volume_driver, annotations, credential_spec.
- security_opt label=..., apparmor=..., systempaths=unconfined: no SELinux/AppArmor; bind `selinux` (z/Z),
  bind `recursive`, volume `labels`, tmpfs options other than size and mode.
- networks.*.gw_priority, driver_opts, interface_name; deploy.labels, placement, update/rollback config.
- secrets/configs from `environment:` or `content:` (the executor must copy them in after create, as
  compose does), and their uid/gid/mode (compose ignores them too for file-based ones).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from compose.errors import InvalidProjectError
from compose.labels import DependencyLabel, ProjectIdentity, container_labels, network_labels, volume_labels
from compose.model import FileRef, Project, Service, ServiceNetwork, VolumeMount
from engine.api import (
    ContainerSpec,
    IpamPool,
    Mount,
    NetworkAttachment,
    NetworkSpec,
    PortBinding,
    Process,
    Resources,
    Security,
    frozen,
    resolve_args,
)

DEFAULT_SHM = 64 * 1024 * 1024
SECRETS_DIR = "/run/secrets/"


@frozen
class ImageFacts:
    """The image a container runs, as the engine knows it."""

    id: str
    reference: str  # what the service asked for (or `<project>-<service>` for a build)
    # the image config's Entrypoint / Cmd (None = not set): argv is resolved against them
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None


@frozen
class Placement:
    """What only the executor knows when it creates container `number` of a service."""

    number: int
    image: ImageFacts
    config_hash: str
    oneoff: bool = False
    # service name -> container name / id of its replicas that exist (links, volumes_from, service: modes)
    containers: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    slug: str | None = None  # one-off: the random suffix of its name and the `slug` label
    use_aliases: bool = False  # one-off: `run --use-aliases` (services always get their aliases)


@frozen
class VolumeRequest:
    """A top-level volume as the engine must create it (or find it, when external)."""

    key: str
    name: str
    driver: str = "local"
    driver_opts: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    external: bool = False


# --------------------------------------------------------------------------------------------------
# Names and top-level resources
# --------------------------------------------------------------------------------------------------


def container_name(project: Project, service: Service, number: int, *, oneoff_slug: str | None = None) -> str:
    """`container_name`, else `<project>-<service>-<number>` (one-off: `<project>-<service>-run-<slug>`)."""
    if oneoff_slug is not None:
        return f"{project.name}-{service.name}-run-{oneoff_slug[:12]}"
    if service.container_name:
        return service.container_name
    return f"{project.name}-{service.name}-{number}"


def network_names(project: Project) -> dict[str, str]:
    """Network key -> engine name: `name:` if set, else `<project>_<key>` (external: `name` or the key)."""
    names = {}
    for key, network in project.networks.items():
        if network is not None and network.name:
            names[key] = network.name
        elif network is not None and network.external:
            names[key] = key
        else:
            names[key] = f"{project.name}_{key}"
    return names


def network_specs(project: Project, identity: ProjectIdentity) -> dict[str, NetworkSpec]:
    """The networks `up` creates (external ones left out), with Compose's labels."""
    names = network_names(project)
    specs = {}
    for key, network in project.networks.items():
        if network is not None and network.external:
            continue
        user_labels = dict(network.labels) if network is not None else {}
        labels = network_labels(identity, key, user_labels)
        if network is None:
            specs[key] = NetworkSpec(name=names[key], labels=tuple(labels.items()))
            continue
        specs[key] = NetworkSpec(
            name=names[key],
            driver=network.driver or "bridge",
            options=tuple((k, str(v)) for k, v in network.driver_opts.items()),
            ipam=_ipam_pools(network.ipam),
            internal=network.internal,
            attachable=network.attachable,
            enable_ipv6=bool(network.enable_ipv6),
            labels=tuple(labels.items()),
        )
    return specs


def _ipam_pools(ipam: Mapping[str, Any] | None) -> tuple[IpamPool, ...]:
    """`ipam.config` entries (the IPAM driver and its options are not pluggable here)."""
    pools = []
    for entry in (ipam or {}).get("config") or ():
        aux = entry.get("aux_addresses") or {}
        pools.append(
            IpamPool(
                subnet=entry.get("subnet"),
                ip_range=entry.get("ip_range"),
                gateway=entry.get("gateway"),
                aux_addresses=tuple((str(k), str(v)) for k, v in aux.items()),
            )
        )
    return tuple(pools)


def volume_requests(project: Project, identity: ProjectIdentity) -> dict[str, VolumeRequest]:
    """Top-level volumes: name resolved (`<project>_<key>` unless named), Compose's labels added."""
    requests = {}
    for key, volume in project.volumes.items():
        if volume is None:
            labels = volume_labels(identity, key)
            requests[key] = VolumeRequest(key, f"{project.name}_{key}", labels=tuple(labels.items()))
            continue
        name = volume.name or (key if volume.external else f"{project.name}_{key}")
        labels = {} if volume.external else volume_labels(identity, key, dict(volume.labels))
        requests[key] = VolumeRequest(
            key=key,
            name=name,
            driver=volume.driver or "local",
            driver_opts=tuple((k, str(v)) for k, v in volume.driver_opts.items()),
            labels=tuple(labels.items()),
            external=volume.external,
        )
    return requests


# --------------------------------------------------------------------------------------------------
# The container spec
# --------------------------------------------------------------------------------------------------


def container_spec(
    project: Project, service: Service, placement: Placement, identity: ProjectIdentity
) -> ContainerSpec:
    """The engine spec of container `placement.number` of `service` (id left empty: the engine assigns)."""
    slug = placement.slug if placement.oneoff else None
    name = container_name(project, service, placement.number, oneoff_slug=slug)
    network_mode, networks = _networking(project, service, placement)
    return ContainerSpec(
        id="",
        name=name,
        image_id=placement.image.id,
        layer_dirs=(),
        process=_process(service, placement.image, name),
        hostname=service.hostname,
        domainname=service.domainname,
        mounts=_mounts(project, service, identity),
        resources=_resources(service),
        security=_security(service, identity),
        network_mode=network_mode,
        networks=networks,
        ports=tuple(_port_binding(p) for p in service.ports),
        expose=_expose(service),
        links=_links(project, service, placement) if network_mode == "bridge" else (),
        shm_size=service.shm_size if service.shm_size is not None else DEFAULT_SHM,
        stop_signal=service.stop_signal or "SIGTERM",
        stop_grace_period=service.stop_grace_period if service.stop_grace_period is not None else 10.0,
        extra_hosts=tuple(_extra_host(h) for h in service.extra_hosts),
        dns=service.dns,
        dns_search=service.dns_search,
        dns_options=service.dns_opt,
        labels=_labels(service, placement, identity),
        image=placement.image.reference,
        log_driver=(service.logging.driver if service.logging else None) or "json-file",
        log_options=tuple((service.logging.options or {}).items()) if service.logging else (),
        restart=service.restart or "no",
        restart_policy=_restart_policy(service),
        healthcheck=_healthcheck(service),
        volumes_from=tuple(_volume_from(project, e, placement) for e in service.volumes_from),
    )


def _process(service: Service, image: ImageFacts, subject: str) -> Process:
    """argv from the image's Entrypoint/Cmd and the service's; the environment without unset keys."""
    args = resolve_args(image.entrypoint, image.cmd, service.entrypoint, service.command, subject=subject)
    env = tuple((k, str(v)) for k, v in service.environment.items() if v is not None)
    return Process(
        args=args,
        env=env,
        user=service.user or None,
        group_add=tuple(str(g) for g in service.group_add),
        working_dir=service.working_dir or None,
        tty=service.tty,
        stdin_open=service.stdin_open,
        init=bool(service.init),
    )


def _labels(service: Service, placement: Placement, identity: ProjectIdentity) -> tuple[tuple[str, str], ...]:
    depends = [DependencyLabel(name, d.condition, d.restart) for name, d in service.depends_on.items()]
    labels = container_labels(
        identity,
        service.name,
        placement.number,
        config_hash=placement.config_hash,
        depends_on=depends,
        oneoff=placement.oneoff,
        image_digest=placement.image.id,
        slug=placement.slug if placement.oneoff else None,
        user_labels={k: str(v) for k, v in service.labels.items()},
    )
    return tuple(labels.items())


def _restart_policy(service: Service) -> tuple[str, float | None, int | None, float | None] | None:
    """`deploy.restart_policy` as the engine's tuple; it wins over `restart` (the supervisor knows)."""
    policy = service.deploy.restart_policy if service.deploy else None
    if policy is None:
        return None
    return (policy.condition or "any", policy.delay, policy.max_attempts, policy.window)


def _healthcheck(service: Service):  # type: ignore[no-untyped-def]
    """(test, interval, timeout, start_period, start_interval, retries); disable = ["NONE"]."""
    check = service.healthcheck
    if check is None:
        return None
    if check.disable or (check.test and check.test[0] == "NONE"):
        return (("NONE",), None, None, None, None, None)
    return (
        tuple(check.test or ()),
        check.interval,
        check.timeout,
        check.start_period,
        check.start_interval,
        check.retries,
    )


# -- resources and security ---------------------------------------------------------------------------


def _resources(service: Service) -> Resources:
    """Service-level limits, then deploy.resources over them (compose's setLimits/setReservations)."""
    memory, cpus, pids = service.mem_limit, service.cpus, service.pids_limit
    reservation = service.mem_reservation
    resources = service.deploy.resources if service.deploy else None
    limits = resources.limits if resources else None
    if limits is not None:
        memory = limits.memory or memory
        cpus = limits.cpus or cpus
        pids = limits.pids if limits.pids and limits.pids > 0 else pids
    reservations = resources.reservations if resources else None
    if reservations is not None and reservations.memory:
        reservation = reservations.memory
    return Resources(
        memory=memory or None,
        memory_swap=service.memswap_limit or None,
        memory_reservation=reservation or None,
        cpus=cpus or None,
        cpu_shares=service.cpu_shares or None,
        cpu_quota=_int_extra(service, "cpu_quota"),
        cpu_period=_int_extra(service, "cpu_period"),
        cpuset_cpus=service.cpuset or None,
        pids_limit=pids or None,
    )


def _int_extra(service: Service, key: str) -> int | None:
    value = service.extras.get(key)
    return int(value) if value not in (None, "", 0) else None


def _security(service: Service, identity: ProjectIdentity) -> Security:
    no_new_privileges, seccomp = _security_opts(service.security_opt, identity.working_dir)
    return Security(
        privileged=service.privileged,
        cap_add=service.cap_add,
        cap_drop=service.cap_drop,
        no_new_privileges=no_new_privileges,
        seccomp_profile=seccomp,
        read_only_rootfs=service.read_only,
        ulimits=tuple(_ulimit(name, value) for name, value in sorted(service.ulimits.items())),
        sysctls=tuple((k, str(v)) for k, v in service.sysctls.items()),
        oom_score_adj=service.oom_score_adj,
    )


def _security_opts(options: tuple[str, ...], working_dir: str) -> tuple[bool, str | None]:
    """(no_new_privileges, seccomp profile) from docker's `key=value` / `key:value` security options."""
    no_new_privileges, seccomp = False, None
    for option in options:
        if option == "systempaths=unconfined":
            continue
        key, sep, value = option.partition("=")
        if not sep and key != "no-new-privileges":
            key, sep, value = option.partition(":")
            if not sep:
                raise InvalidProjectError(f"invalid security_opt {option!r}", path=("security_opt",))
        if key == "no-new-privileges":
            no_new_privileges = value in ("", "true", "1")
        elif key == "seccomp":
            seccomp = value if value in ("unconfined", "builtin") else os.path.join(working_dir, value)
            seccomp = None if seccomp == "builtin" else seccomp
    return no_new_privileges, seccomp


def _ulimit(name: str, value: Any) -> tuple[str, int, int]:
    """`nofile: 1024` (soft = hard) or `{soft, hard}`."""
    if isinstance(value, Mapping):
        soft, hard = int(value.get("soft", 0)), int(value.get("hard", 0))
        single = int(value.get("single", 0) or 0)
        return (name, soft or single, hard or single)
    return (name, int(value), int(value))


# -- mounts -------------------------------------------------------------------------------------------


def _mounts(project: Project, service: Service, identity: ProjectIdentity) -> tuple[Mount, ...]:
    """`volumes` entries, then `tmpfs:`, then file secrets and configs where no volume took the target."""
    mounts: dict[str, Mount] = {}
    for entry in service.volumes:
        mount = _volume_mount(project, entry)
        if mount is not None:
            mounts[mount.target] = mount
    for text in service.tmpfs:
        target, _, options = text.partition(":")
        mounts[target] = Mount(type="tmpfs", target=target, options=tuple(o for o in options.split(",") if o))
    for ref in service.secrets:
        _file_mount(mounts, project.secrets, ref, SECRETS_DIR, "secret", secret=True)
    for ref in service.configs:
        _file_mount(mounts, project.configs, ref, "/", "config", secret=False)
    return tuple(mounts.values())


def _volume_mount(project: Project, entry: VolumeMount) -> Mount | None:
    """One long-syntax `volumes` entry (npipe and image mounts have no equivalent here)."""
    kind, target = entry.type or "volume", entry.target or ""
    if kind == "bind":
        bind = entry.bind or {}
        propagation = bind.get("propagation")
        return Mount(
            type="bind",
            target=target,
            source=entry.source,
            read_only=entry.read_only,
            options=(propagation,) if propagation else (),
            create_host_path=bool(bind.get("create_host_path", True)),
        )
    if kind == "volume":
        options = entry.volume or {}
        source = entry.source or None
        if source is not None and source in project.volumes:
            source = volume_name(project, source)
        return Mount(
            type="volume",
            target=target,
            source=source,
            read_only=entry.read_only,
            subpath=options.get("subpath") or None,
            nocopy=bool(options.get("nocopy", False)),
        )
    if kind == "tmpfs":
        options = _tmpfs_options(entry.tmpfs)
        return Mount(type="tmpfs", target=target, read_only=entry.read_only, options=options)
    return None


def volume_name(project: Project, key: str) -> str:
    """The engine name of top-level volume `key`."""
    volume = project.volumes.get(key)
    if volume is not None and volume.name:
        return volume.name
    if volume is not None and volume.external:
        return key
    return f"{project.name}_{key}"


def _tmpfs_options(tmpfs: Mapping[str, Any] | None) -> tuple[str, ...]:
    """size (bytes) and mode (the number's bits, written in octal as mount(8) expects)."""
    options = []
    if tmpfs and tmpfs.get("size") not in (None, "", 0, "0"):
        options.append(f"size={tmpfs['size']}")
    if tmpfs and tmpfs.get("mode") is not None:
        mode = tmpfs["mode"]
        options.append(f"mode={mode:o}" if isinstance(mode, int) else f"mode={mode}")
    return tuple(options)


def _file_mount(
    mounts: dict[str, Mount], objects: Mapping[str, Any], ref: FileRef, base: str, what: str, *, secret: bool
) -> None:
    """A file-based secret/config as a read-only bind; environment/content ones are the executor's."""
    source = ref.source or ""
    target = ref.target or source
    target = target if target.startswith("/") else base + target
    defined = objects.get(source)
    if defined is None:
        raise InvalidProjectError(f"{what} {source!r} is not defined", path=(what + "s",))
    where = (what + "s",)
    if defined.external:
        raise InvalidProjectError(f"unsupported external {what} {defined.name or source}", path=where)
    if defined.driver or defined.template_driver:
        raise InvalidProjectError(f"{what}s.*.driver and template_driver are not supported", path=where)
    if defined.file is None or target in mounts:
        return
    mounts[target] = Mount(
        type="bind", target=target, source=defined.file, read_only=True, create_host_path=not secret
    )


def _volume_from(project: Project, entry: str, placement: Placement) -> tuple[str, str]:
    """`svc[:mode]` -> that service's first container; `container:name[:mode]` as given."""
    if entry.startswith("container:"):
        name, _, mode = entry[len("container:") :].partition(":")
        return (name, mode or "rw")
    service_name, _, mode = entry.partition(":")
    return (_first_container(project, service_name, placement, want_id=True), mode or "rw")


def _first_container(project: Project, service_name: str, placement: Placement, *, want_id: bool) -> str:
    """The first existing replica of a service (id or name), else the name its container 1 will have."""
    existing = placement.containers.get(service_name) or ()
    if existing:
        name, cid = existing[0]
        return cid if want_id else name
    target = project.services.get(service_name)
    if target is None:
        raise InvalidProjectError(f"service {service_name!r} is not defined")
    return container_name(project, target, 1)


# -- networking ---------------------------------------------------------------------------------------


def networks_by_priority(service: Service) -> list[str]:
    """compose-go's NetworksByPriority: priority descending, then the key."""

    def key(name: str) -> tuple[int, str]:
        return (-((service.networks[name] or ServiceNetwork()).priority or 0), name)

    return sorted(service.networks, key=key)


def _networking(
    project: Project, service: Service, placement: Placement
) -> tuple[str, tuple[NetworkAttachment, ...]]:
    mode = service.network_mode
    if mode:
        if mode.startswith("service:"):
            target = mode[len("service:") :]
            if not placement.containers.get(target):
                raise InvalidProjectError(
                    f"service {target!r} has no container for {service.name!r} to share a network with",
                    path=("services", service.name, "network_mode"),
                )
            return "container:" + placement.containers[target][0][1], ()
        return mode, ()
    if not service.networks:
        return "none", ()
    names = network_names(project)
    keys = networks_by_priority(service)
    with_aliases = not placement.oneoff or placement.use_aliases
    attachments = []
    for index, key in enumerate(keys):
        config = service.networks[key] or ServiceNetwork()
        mac = config.mac_address
        if index == 0 and service.mac_address:
            if mac and mac != service.mac_address:
                raise InvalidProjectError(
                    f"the service-level mac_address should have the same value as network {key}",
                    path=("services", service.name, "mac_address"),
                )
            mac = service.mac_address
        attachments.append(
            NetworkAttachment(
                network=names.get(key, f"{project.name}_{key}"),
                aliases=(service.name, *config.aliases) if with_aliases else (),
                ipv4_address=config.ipv4_address or None,
                ipv6_address=config.ipv6_address or None,
                mac_address=mac or None,
                link_local_ips=config.link_local_ips,
                priority=config.priority or 0,
            )
        )
    return "bridge", tuple(attachments)


def _links(project: Project, service: Service, placement: Placement) -> tuple[tuple[str, str], ...]:
    """compose's getLinks; each alias bound once (to the first container that claims it)."""
    pairs: list[tuple[str, str]] = []
    number = str(placement.number)
    for raw in service.links:
        target, _, alias = raw.partition(":")
        for name, _cid in placement.containers.get(target) or ():
            pairs += [(name, alias or target), (name, f"{target}-{number}")]
            pairs.append((name, f"{project.name}-{target}-{number}"))
    if placement.oneoff:
        for name, _cid in placement.containers.get(service.name) or ():
            pairs += [(name, service.name), (name, name.removeprefix(project.name + "-")), (name, name)]
    for raw in service.external_links:
        target, _, alias = raw.partition(":")
        pairs.append((target, alias or target))
    seen: dict[str, str] = {}
    for name, alias in pairs:
        seen.setdefault(alias, name)
    return tuple((name, alias) for alias, name in seen.items())


def _port_binding(port: Any) -> PortBinding:
    """A canonical port entry; `published` may be a host range for one container port."""
    published = str(port.published or "")
    start, _, end = published.partition("-")
    return PortBinding(
        container_port=int(port.target),
        protocol=port.protocol or "tcp",
        host_ip=port.host_ip or "",
        host_port=int(start) if start else 0,
        host_port_end=int(end) if end else 0,
    )


def _expose(service: Service) -> tuple[str, ...]:
    """`expose` (ranges expanded) and every published container port, as "<port>/<proto>", once each."""
    found: dict[str, None] = {}
    for text in service.expose:
        ports, _, protocol = str(text).partition("/")
        low, _, high = ports.partition("-")
        for port in range(int(low), int(high or low) + 1):
            found[f"{port}/{protocol or 'tcp'}"] = None
    for port in service.ports:
        found[f"{port.target}/{port.protocol or 'tcp'}"] = None
    return tuple(found)


def _extra_host(text: str) -> tuple[str, str]:
    """`host=ip` (canonical); `host:ip` from older files (an IPv6 address keeps its colons)."""
    host, sep, address = text.partition("=")
    if not sep:
        host, _, address = text.partition(":")
    return (host, address.strip("[]"))
