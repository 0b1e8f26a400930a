"""compose/plan/specs: a loaded service becomes the engine spec docker compose would create."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compose import __version__
from compose.errors import InvalidProjectError
from compose.labels import ProjectIdentity
from compose.loader.pipeline import ProjectOptions, load_project
from compose.plan.specs import (
    ImageFacts,
    Placement,
    VolumeRequest,
    container_name,
    container_spec,
    network_names,
    network_specs,
    networks_by_priority,
    volume_requests,
)
from engine.api import IpamPool, Mount, NetworkAttachment, NetworkSpec, PortBinding, Resources, Security
from engine.errors import InvalidCommand

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
IMAGE = ImageFacts("sha256:" + "ab" * 32, "busybox:latest", None, ("sh",))


def load(tmp_path: Path, text: str, **files: str):
    """A project from YAML, through the whole loader (so values are canonical)."""
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    loaded = load_project(ProjectOptions(cwd=str(tmp_path), environ={"HOME": "/root"}))
    return loaded.model


def ident(tmp_path: Path, name: str = "demo") -> ProjectIdentity:
    return ProjectIdentity(name, str(tmp_path), (str(tmp_path / "compose.yaml"),))


def spec_of(tmp_path: Path, text: str, service: str = "app", placement: Placement | None = None, **files):
    project = load(tmp_path, text, **files)
    placement = placement or Placement(1, IMAGE, "hash1")
    return container_spec(project, project.services[service], placement, ident(tmp_path, project.name))


def test_names_container_name_and_oneoff(tmp_path):
    project = load(
        tmp_path,
        """
        name: demo
        services:
          app: {image: busybox}
          db: {image: busybox, container_name: the-db}
        """,
    )
    app, db = project.services["app"], project.services["db"]
    assert container_name(project, app, 3) == "demo-app-3"
    assert container_name(project, db, 1) == "the-db"
    assert container_name(project, app, 1, oneoff_slug="0123456789abcdef") == "demo-app-run-0123456789ab"
    oneoff = Placement(1, IMAGE, "h", oneoff=True, slug="0123456789abcdef")
    spec = container_spec(project, app, oneoff, ident(tmp_path))
    labels = dict(spec.labels)
    assert spec.name == "demo-app-run-0123456789ab"
    assert labels["com.docker.compose.oneoff"] == "True"
    assert labels["com.docker.compose.slug"] == "0123456789abcdef"
    assert spec.networks[0].aliases == ()  # `run` without --use-aliases


def test_process_identity_and_environment(tmp_path):
    spec = spec_of(
        tmp_path,
        """
        name: demo
        services:
          app:
            image: busybox
            hostname: web
            domainname: example.org
            user: "1000:1000"
            working_dir: /srv
            group_add: [audio, "42"]
            environment: {A: "1", UNSET: null, EMPTY: ""}
            tty: true
            stdin_open: true
            init: true
            command: echo "hello world"
        """,
    )
    process = spec.process
    assert process.args == ("echo", "hello world")
    assert process.env == (("A", "1"), ("EMPTY", ""))
    assert (process.user, process.working_dir, process.group_add) == ("1000:1000", "/srv", ("audio", "42"))
    assert (process.tty, process.stdin_open, process.init) == (True, True, True)
    assert (spec.hostname, spec.domainname) == ("web", "example.org")
    assert spec.image == "busybox:latest" and spec.image_id == IMAGE.id and spec.id == ""


@pytest.mark.parametrize(
    ("extra", "image_ep", "image_cmd", "args"),
    [
        ("", ("/entry",), ("run",), ("/entry", "run")),
        ("command: [a, b]", ("/entry",), ("run",), ("/entry", "a", "b")),
        ("entrypoint: [/other]", ("/entry",), ("run",), ("/other",)),
        ("entrypoint: []", ("/entry",), ("run",), ("run",)),
        ("entrypoint: [/x]\n    command: [y]", None, ("run",), ("/x", "y")),
    ],
)
def test_entrypoint_and_command_merge_with_the_image(tmp_path, extra, image_ep, image_cmd, args):
    text = f"services:\n  app:\n    image: busybox\n    {extra}\n"
    image = ImageFacts("sha256:" + "cd" * 32, "busybox", image_ep, image_cmd)
    assert spec_of(tmp_path, text, placement=Placement(1, image, "h")).process.args == args


def test_nothing_to_run_is_refused(tmp_path):
    with pytest.raises(InvalidCommand):
        spec_of(
            tmp_path,
            "services:\n  app: {image: busybox}\n",
            placement=Placement(1, ImageFacts("x", "y"), "h"),
        )


def test_labels_user_then_compose(tmp_path):
    spec = spec_of(
        tmp_path,
        """
        name: demo
        services:
          app:
            image: busybox
            labels: {com.example.team: web, com.docker.compose.project: fake}
            depends_on:
              db: {condition: service_healthy, restart: true}
          db: {image: busybox}
        """,
        placement=Placement(2, IMAGE, "cafe"),
    )
    assert dict(spec.labels) == {
        "com.example.team": "web",
        "com.docker.compose.project": "demo",
        "com.docker.compose.project.working_dir": str(tmp_path),
        "com.docker.compose.project.config_files": str(tmp_path / "compose.yaml"),
        "com.docker.compose.version": __version__,
        "com.docker.compose.service": "app",
        "com.docker.compose.container-number": "2",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.config-hash": "cafe",
        "com.docker.compose.depends_on": "db:service_healthy:true",
        "com.docker.compose.image": IMAGE.id,
    }


def test_restart_healthcheck_logging_stop(tmp_path):
    spec = spec_of(
        tmp_path,
        """
        services:
          app:
            image: busybox
            restart: on-failure:3
            healthcheck: {test: curl -f localhost, interval: 10s, retries: 4}
            logging: {driver: local, options: {max-size: 10m}}
            stop_signal: SIGQUIT
            stop_grace_period: 1m30s
          other:
            image: busybox
            restart: always
            deploy: {restart_policy: {condition: on-failure, delay: 5s, max_attempts: 2, window: 1m}}
            healthcheck: {disable: true}
        """,
    )
    assert spec.restart == "on-failure:3" and spec.restart_policy is None
    assert spec.healthcheck == (("CMD-SHELL", "curl -f localhost"), 10.0, None, None, None, 4)
    assert (spec.log_driver, spec.log_options) == ("local", (("max-size", "10m"),))
    assert (spec.stop_signal, spec.stop_grace_period) == ("SIGQUIT", 90.0)
    other = spec_of(tmp_path, (tmp_path / "compose.yaml").read_text(), service="other")
    assert other.restart == "always"
    assert other.restart_policy == ("on-failure", 5.0, 2, 60.0)
    assert other.healthcheck == (("NONE",), None, None, None, None, None)
    assert (other.log_driver, other.stop_signal, other.stop_grace_period) == ("json-file", "SIGTERM", 10.0)


def test_resources_service_level_and_deploy(tmp_path):
    text = """
        services:
          app:
            image: busybox
            mem_limit: 256m
            memswap_limit: 512m
            mem_reservation: 64m
            cpus: 1.5
            cpu_shares: 512
            cpu_quota: 50000
            cpu_period: 100000
            cpuset: "0"
            pids_limit: 100
            shm_size: 128m
          deployed:
            image: busybox
            deploy:
              resources:
                limits: {memory: 128m, cpus: "0.5", pids: 20}
                reservations: {memory: 32m, cpus: "0.25"}
        """
    spec = spec_of(tmp_path, text)
    mib = 1024 * 1024
    assert spec.resources == Resources(
        memory=256 * mib,
        memory_swap=512 * mib,
        memory_reservation=64 * mib,
        cpus=1.5,
        cpu_shares=512,
        cpu_quota=50000,
        cpu_period=100000,
        cpuset_cpus="0",
        pids_limit=100,
    )
    assert spec.shm_size == 128 * mib
    deployed = spec_of(tmp_path, text, service="deployed")
    assert deployed.resources == Resources(
        memory=128 * mib, memory_reservation=32 * mib, cpus=0.5, pids_limit=20
    )
    assert deployed.shm_size == 64 * mib


def test_security(tmp_path):
    spec = spec_of(
        tmp_path,
        """
        services:
          app:
            image: busybox
            privileged: true
            cap_add: [NET_ADMIN]
            cap_drop: [ALL]
            security_opt: ["no-new-privileges:true", "seccomp=profile.json", "label=disable", "apparmor=x"]
            read_only: true
            ulimits: {nproc: 65535, nofile: {soft: 1024, hard: 2048}}
            sysctls: {net.core.somaxconn: 1024}
            oom_score_adj: -100
        """,
    )
    assert spec.security == Security(
        privileged=True,
        cap_add=("NET_ADMIN",),
        cap_drop=("ALL",),
        no_new_privileges=True,
        seccomp_profile=str(tmp_path / "profile.json"),
        read_only_rootfs=True,
        ulimits=(("nofile", 1024, 2048), ("nproc", 65535, 65535)),
        sysctls=(("net.core.somaxconn", "1024"),),
        oom_score_adj=-100,
    )


def test_security_opt_variants(tmp_path):
    base = "services:\n  app:\n    image: busybox\n    security_opt: [{}]\n"
    assert spec_of(tmp_path, base.format('"seccomp:unconfined"')).security.seccomp_profile == "unconfined"
    assert spec_of(tmp_path, base.format("no-new-privileges")).security.no_new_privileges is True
    assert spec_of(tmp_path, base.format("no-new-privileges=false")).security.no_new_privileges is False
    with pytest.raises(InvalidProjectError, match="security_opt"):
        spec_of(tmp_path, base.format("bogus"))


def test_mounts_every_kind(tmp_path):
    spec = spec_of(
        tmp_path,
        """
        name: demo
        services:
          app:
            image: busybox
            volumes:
              - data:/data
              - ./src:/src:ro
              - /anon
              - type: volume
                source: data
                target: /sub
                volume: {nocopy: true, subpath: app}
              - type: bind
                source: /etc/hostname
                target: /host-name
                bind: {propagation: rslave, create_host_path: false}
              - type: tmpfs
                target: /scratch
                tmpfs: {size: 10m, mode: 0o1777}
              - {type: volume, source: ext, target: /ext}
            tmpfs: ["/run:size=1m,noexec", /tmp]
        volumes:
          data: {}
          ext: {external: true}
        """,
    )
    assert spec.mounts == (
        Mount(type="volume", target="/data", source="demo_data"),
        Mount(type="bind", target="/src", source=str(tmp_path / "src"), read_only=True),
        Mount(type="volume", target="/anon"),
        Mount(type="volume", target="/sub", source="demo_data", subpath="app", nocopy=True),
        Mount(
            type="bind",
            target="/host-name",
            source="/etc/hostname",
            options=("rslave",),
            create_host_path=False,
        ),
        Mount(type="tmpfs", target="/scratch", options=("size=10485760", "mode=1777")),
        Mount(type="volume", target="/ext", source="ext"),
        Mount(type="tmpfs", target="/run", options=("size=1m", "noexec")),
        Mount(type="tmpfs", target="/tmp"),
    )


def test_secrets_and_configs_from_files(tmp_path):
    spec = spec_of(
        tmp_path,
        """
        services:
          app:
            image: busybox
            secrets: [token, {source: cert, target: tls.pem}]
            configs: [conf, {source: env_conf, target: /etc/x}]
            volumes: ["./override:/run/secrets/token"]
        secrets:
          token: {file: ./token.txt}
          cert: {file: ./cert.pem}
        configs:
          conf: {file: ./app.conf}
          env_conf: {content: "x=1"}
        """,
        **{"token.txt": "t", "cert.pem": "c", "app.conf": "a"},
    )
    assert spec.mounts == (
        Mount(type="bind", target="/run/secrets/token", source=str(tmp_path / "override")),
        Mount(
            type="bind",
            target="/run/secrets/tls.pem",
            source=str(tmp_path / "cert.pem"),
            read_only=True,
            create_host_path=False,
        ),
        Mount(type="bind", target="/conf", source=str(tmp_path / "app.conf"), read_only=True),
    )


def test_networks_priority_aliases_addresses(tmp_path):
    project = load(
        tmp_path,
        """
        name: demo
        services:
          app:
            image: busybox
            mac_address: 02:42:ac:11:00:02
            networks:
              zeta: {}
              alpha: {aliases: [web, www], ipv4_address: 172.30.0.10, link_local_ips: [169.254.1.1]}
              front: {priority: 100, ipv6_address: "fd00::10"}
        networks:
          zeta: {}
          alpha:
            ipam: {config: [{subnet: 172.30.0.0/24}]}
          front: {name: shared-front}
        """,
    )
    app = project.services["app"]
    assert networks_by_priority(app) == ["front", "alpha", "zeta"]
    spec = container_spec(project, app, Placement(1, IMAGE, "h"), ident(tmp_path))
    assert spec.network_mode == "bridge"
    assert spec.networks == (
        NetworkAttachment(
            "shared-front", ("app",), ipv6_address="fd00::10", mac_address="02:42:ac:11:00:02", priority=100
        ),
        NetworkAttachment(
            "demo_alpha", ("app", "web", "www"), ipv4_address="172.30.0.10", link_local_ips=("169.254.1.1",)
        ),
        NetworkAttachment("demo_zeta", ("app",)),
    )


def test_network_modes(tmp_path):
    text = """
        name: demo
        services:
          db: {image: busybox}
          host: {image: busybox, network_mode: host}
          none: {image: busybox, network_mode: none}
          side: {image: busybox, network_mode: "service:db"}
          other: {image: busybox, network_mode: "container:some-box"}
        """
    project = load(tmp_path, text)
    placement = Placement(1, IMAGE, "h", containers={"db": (("demo-db-1", "f00d" * 16),)})

    def mode(name: str):
        spec = container_spec(project, project.services[name], placement, ident(tmp_path))
        return spec.network_mode, spec.networks

    assert mode("host") == ("host", ())
    assert mode("none") == ("none", ())
    assert mode("side") == ("container:" + "f00d" * 16, ())
    assert mode("other") == ("container:some-box", ())
    assert mode("db")[1] == (NetworkAttachment("demo_default", ("db",)),)
    with pytest.raises(InvalidProjectError, match="no container"):
        container_spec(project, project.services["side"], Placement(1, IMAGE, "h"), ident(tmp_path))


def test_mac_address_conflict(tmp_path):
    text = """
        services:
          app:
            image: busybox
            mac_address: 02:00:00:00:00:01
            networks: {n: {mac_address: 02:00:00:00:00:02}}
        networks: {n: {}}
        """
    with pytest.raises(InvalidProjectError, match="mac_address"):
        spec_of(tmp_path, text)


def test_ports_expose_extra_hosts_dns(tmp_path):
    spec = spec_of(
        tmp_path,
        """
        services:
          app:
            image: busybox
            ports: ["8080:80", "127.0.0.1:53:53/udp", "9000-9001:9000-9001", "7000-7010:7", "443"]
            expose: ["3000-3001", "5000/udp"]
            extra_hosts: ["db.local:10.0.0.2", "v6=::1"]
            dns: [1.1.1.1]
            dns_search: [example.org]
            dns_opt: [ndots:2]
        """,
    )
    assert spec.ports == (
        PortBinding(80, "tcp", "", 8080),
        PortBinding(53, "udp", "127.0.0.1", 53),
        PortBinding(9000, "tcp", "", 9000),
        PortBinding(9001, "tcp", "", 9001),
        PortBinding(7, "tcp", "", 7000, 7010),
        PortBinding(443, "tcp", "", 0),
    )
    assert spec.expose == (
        "3000/tcp",
        "3001/tcp",
        "5000/udp",
        "80/tcp",
        "53/udp",
        "9000/tcp",
        "9001/tcp",
        "7/tcp",
        "443/tcp",
    )
    assert spec.extra_hosts == (("db.local", "10.0.0.2"), ("v6", "::1"))
    assert (spec.dns, spec.dns_search, spec.dns_options) == (("1.1.1.1",), ("example.org",), ("ndots:2",))


def test_links_external_links_and_volumes_from(tmp_path):
    text = """
        name: demo
        services:
          db: {image: busybox}
          files: {image: busybox}
          app:
            image: busybox
            links: ["db:database"]
            external_links: ["legacy-box:legacy"]
            volumes_from: ["files:ro", "container:keeper", db]
        """
    existing = {
        "db": (("demo-db-1", "1" * 64), ("demo-db-2", "2" * 64)),
        "files": (("demo-files-1", "3" * 64),),
    }
    spec = spec_of(tmp_path, text, placement=Placement(1, IMAGE, "h", containers=existing))
    assert spec.links == (
        ("demo-db-1", "database"),
        ("demo-db-1", "db-1"),
        ("demo-db-1", "demo-db-1"),
        ("legacy-box", "legacy"),
    )
    assert spec.volumes_from == (("3" * 64, "ro"), ("keeper", "rw"), ("1" * 64, "rw"))
    # a target with no container yet: compose's name of its first replica
    spec = spec_of(tmp_path, text)
    assert spec.links == (("legacy-box", "legacy"),)
    assert spec.volumes_from == (("demo-files-1", "ro"), ("keeper", "rw"), ("demo-db-1", "rw"))


def test_network_names_specs_and_volume_requests(tmp_path):
    project = load(
        tmp_path,
        """
        name: demo
        services:
          app: {image: busybox, networks: [back, ext], volumes: ["data:/d", "outside:/o"]}
        networks:
          back:
            driver_opts: {com.docker.network.driver.mtu: 1400}
            internal: true
            attachable: true
            enable_ipv6: true
            labels: {tier: back}
            ipam:
              config:
                - subnet: 10.9.0.0/24
                  ip_range: 10.9.0.128/25
                  gateway: 10.9.0.1
                  aux_addresses: {r: 10.9.0.2}
          ext: {external: true}
        volumes:
          data: {driver_opts: {type: tmpfs, device: tmpfs}, labels: {keep: "yes"}}
          outside: {external: true, name: real-outside}
        """,
    )
    identity = ident(tmp_path)
    assert network_names(project) == {"back": "demo_back", "ext": "ext"}
    assert network_specs(project, identity) == {
        "back": NetworkSpec(
            name="demo_back",
            options=(("com.docker.network.driver.mtu", "1400"),),
            ipam=(IpamPool("10.9.0.0/24", "10.9.0.128/25", "10.9.0.1", (("r", "10.9.0.2"),)),),
            internal=True,
            attachable=True,
            enable_ipv6=True,
            labels=(
                ("tier", "back"),
                ("com.docker.compose.project", "demo"),
                ("com.docker.compose.network", "back"),
                ("com.docker.compose.version", __version__),
            ),
        )
    }
    assert volume_requests(project, identity) == {
        "data": VolumeRequest(
            "data",
            "demo_data",
            driver_opts=(("type", "tmpfs"), ("device", "tmpfs")),
            labels=(
                ("keep", "yes"),
                ("com.docker.compose.project", "demo"),
                ("com.docker.compose.volume", "data"),
                ("com.docker.compose.version", __version__),
            ),
        ),
        "outside": VolumeRequest("outside", "real-outside", external=True),
    }
    spec = container_spec(project, project.services["app"], Placement(1, IMAGE, "h"), identity)
    assert [m.source for m in spec.mounts] == ["demo_data", "real-outside"]
    assert [n.network for n in spec.networks] == ["demo_back", "ext"]


def _sample(name: str):
    loaded = load_project(ProjectOptions(cwd=str(SAMPLES / name), environ={"HOME": "/root"}))
    identity = ProjectIdentity(loaded.name, str(SAMPLES / name), tuple(str(f) for f in loaded.files))
    return loaded.model, identity


def test_lnmp_sample_specs():
    project, identity = _sample("lnmp")
    image = ImageFacts("sha256:" + "ef" * 32, "unused", None, ("run",))
    specs = {
        name: container_spec(project, svc, Placement(1, image, "h-" + name), identity)
        for name, svc in project.services.items()
    }
    web, php, db = specs["web"], specs["php"], specs["mysql"]
    assert [s.name for s in (web, php, db)] == ["lnmp-web-1", "lnmp-php-1", "lnmp-mysql-1"]
    assert web.ports == (PortBinding(80, "tcp", "", 80),)
    assert web.mounts == (
        Mount("bind", "/etc/nginx/conf.d", str(SAMPLES / "lnmp" / "nginx"), read_only=True),
        Mount("bind", "/var/www/html", str(SAMPLES / "lnmp" / "html"), read_only=True),
    )
    assert [(n.network, n.aliases) for n in php.networks] == [("lnmp_lnmp-network", ("php",))]
    assert dict(php.process.env)["DB_HOST"] == "mysql"
    assert db.mounts == (Mount("volume", "/var/lib/mysql", "lnmp_dbdata"),)
    assert db.healthcheck == (("CMD", "healthcheck.sh"), 10.0, 5.0, 30.0, 0.1, 3)
    assert {s.restart for s in specs.values()} == {"always"}
    assert dict(php.labels)["com.docker.compose.depends_on"] == "mysql:service_healthy:false"
    assert dict(db.labels)["com.docker.compose.project.config_files"] == str(
        SAMPLES / "lnmp" / "compose.yaml"
    )
    assert set(network_specs(project, identity)) == {"lnmp-network"}
    assert volume_requests(project, identity)["dbdata"].name == "lnmp_dbdata"


def test_wordpress_sample_specs():
    project, identity = _sample("wordpress")
    image = ImageFacts("sha256:" + "ef" * 32, "unused", ("docker-entrypoint.sh",), ("apache2-foreground",))
    wordpress = container_spec(project, project.services["wordpress"], Placement(1, image, "h"), identity)
    db = container_spec(project, project.services["db"], Placement(1, image, "h"), identity)
    assert wordpress.process.args == ("docker-entrypoint.sh", "apache2-foreground")
    assert wordpress.ports == (PortBinding(80, "tcp", "", 8080),)
    assert wordpress.mounts == (Mount("volume", "/var/lib/wordpress/wp-content", "wordpress_wordpress"),)
    assert wordpress.networks == (NetworkAttachment("wordpress_default", ("wordpress",)),)
    assert db.networks == (NetworkAttachment("wordpress_default", ("db",)),)
    assert (wordpress.restart, db.restart) == ("always", "always")
    assert dict(wordpress.process.env)["WORDPRESS_DB_HOST"] == "db:3306"
    assert db.healthcheck[0][0] == "CMD-SHELL" and db.healthcheck[4] == 0.1  # start_interval
    assert set(network_specs(project, identity)) == {"default"}
    assert sorted(v.name for v in volume_requests(project, identity).values()) == [
        "wordpress_db",
        "wordpress_wordpress",
    ]
