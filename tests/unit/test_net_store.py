"""engine.net.store over a real state database in a temp dir: networks, endpoints, names, ports, v5."""

from __future__ import annotations

import multiprocessing
import sqlite3
import statistics
import time

import pytest

from engine.containers import records
from engine.errors import (
    AddressUnavailable,
    NetworkError,
    NetworkExists,
    NetworkInUse,
    NetworkNotFound,
    PortInUse,
)
from engine.net import ipam
from engine.net.store import NetworkStore
from engine.net.types import Endpoint, IpamPool, Network, NetworkSpec, PublishedPort
from engine.state.db import MIGRATIONS, SCHEMA_VERSION, Database

IMAGE = "sha256:" + "ab" * 32


def _image(db: Database) -> None:
    db.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, size, os, architecture, added)"
        " VALUES (?, 'sha256:00', 'x', 0, 'linux', 'amd64', 't')",
        (IMAGE,),
    )


class Recording(Database):
    """A Database that remembers every query, for EXPLAIN QUERY PLAN."""

    def __init__(self, *args, **kw):
        self.seen: list[tuple[str, tuple]] = []
        super().__init__(*args, **kw)

    def query(self, sql, params=()):
        self.seen.append((sql, tuple(params)))
        return super().query(sql, params)

    def query_one(self, sql, params=()):
        self.seen.append((sql, tuple(params)))
        return super().query_one(sql, params)


@pytest.fixture
def db(tmp_path):
    database = Recording(tmp_path / "pycompose.db")
    _image(database)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def store(db):
    return NetworkStore(db)


def container(db, name: str, n: int | None = None) -> str:
    cid = f"{abs(hash(name)) % 10**12:012x}".ljust(64, "0") if n is None else f"{n:08x}".ljust(64, "c")
    records.insert(db, id=cid, name=name, image_id=IMAGE, spec_json="{}", labels={}, created="t")
    return cid


def network(store, name="proj_default", subnet="10.77.0.0/24", **kw) -> Network:
    pools = (IpamPool(subnet=subnet),) if subnet else ()
    spec = NetworkSpec(name=name, ipam=pools, **kw)
    subnets = ipam.plan_subnets(
        pools, store.subnets_in_use(), routes=(), enable_ipv6=spec.enable_ipv6, seed=name
    )
    return store.create(spec, subnets, bridge="pyct-" + name[:10], mtu=1500)


def join(store, cid, net, names=(), static=(None, None), mac=None) -> Endpoint:
    store.add_endpoints(cid, [Endpoint(cid, net.id, tuple(names), mac=mac)], [static])
    return store.activate(cid, net, host_veth="pv" + cid[:10])


# -- networks


def test_create_get_list_roundtrip(store):
    spec = NetworkSpec(
        name="p_front",
        options=(("com.docker.network.driver.mtu", "1400"),),
        ipam=(IpamPool(subnet="10.9.0.0/16", ip_range="10.9.1.0/24", aux_addresses=(("r", "10.9.0.5"),)),),
        internal=True,
        attachable=True,
        labels=(("com.docker.compose.project", "p"),),
    )
    subnets = ipam.plan_subnets(spec.ipam, [], routes=())
    made = store.create(spec, subnets, bridge="pyct-front", mtu=1400)
    assert len(made.id) == 64 and made.created.endswith("Z")
    for ref in ("p_front", made.id, made.id[:12], made.id[:1]):
        assert store.get(ref) == made
    assert store.list() == [made]
    assert store.subnets_in_use() == ["10.9.0.0/16"]


def test_name_and_bridge_are_unique(store):
    net = network(store)
    with pytest.raises(NetworkExists, match="network with name proj_default already exists"):
        store.create(NetworkSpec(name="proj_default"), net.subnets, bridge="pyct-other", mtu=1500)
    with pytest.raises(NetworkExists, match="bridge pyct-proj_defau"):
        store.create(NetworkSpec(name="x"), net.subnets, bridge=net.bridge, mtu=1500)


def test_get_not_found_and_ambiguous_prefix(store, db):
    with pytest.raises(NetworkNotFound, match="network nope not found"):
        store.get("nope")
    a, b = network(store, "a", "10.1.0.0/24"), network(store, "b", "10.2.0.0/24")
    db.execute("UPDATE networks SET id = 'ab' || substr(id, 3) WHERE id IN (?, ?)", (a.id, b.id))
    with pytest.raises(NetworkError, match="ambiguous"):
        store.get("ab")
    with pytest.raises(NetworkNotFound):
        store.get("abc" + "z")


def test_remove_refused_while_endpoints_exist(store, db):
    net = network(store)
    web = container(db, "proj-web-1")
    store.add_endpoints(web, [Endpoint(web, net.id, ("web",))], [(None, None)])
    with pytest.raises(NetworkInUse, match=r"network proj_default has active endpoints \(proj-web-1\)"):
        store.remove(net.id)
    store.remove_endpoints(web)
    store.remove(net.id)
    assert store.list() == []
    with pytest.raises(NetworkNotFound):
        store.remove(net.id)


def test_ipv6_network_subnets_survive(store):
    net = network(store, "six", None, enable_ipv6=True)
    got = store.get("six")
    assert got.subnets == net.subnets and ":" in got.subnets[1].subnet and got.spec.enable_ipv6


# -- endpoints and addresses


def test_activate_allocates_lowest_free_and_mac(store, db):
    net = network(store)
    a, b, c = (container(db, f"c{n}") for n in range(3))
    ea, eb = join(store, a, net, ["a"]), join(store, b, net, ["b"])
    assert (ea.ipv4, eb.ipv4) == ("10.77.0.2", "10.77.0.3")
    assert ea.mac == "02:42:0a:4d:00:02" and ea.active and ea.host_veth == "pv" + a[:10]
    assert store.deactivate(a) == [ea]
    assert store.endpoints_of(a)[0] == Endpoint(a, net.id, ("a",))
    assert join(store, c, net).ipv4 == "10.77.0.2"  # the hole is reused first
    assert store.activate(a, net, "pvx").ipv4 == "10.77.0.4"
    assert [e.ipv4 for e in store.endpoints_in(net.id)] == ["10.77.0.4", "10.77.0.3", "10.77.0.2"]


def test_static_address_and_mac_are_kept_across_restarts(store, db):
    net = network(store)
    web = container(db, "web")
    ep = join(store, web, net, static=("10.77.0.50", None), mac="02:00:00:00:00:aa")
    assert (ep.ipv4, ep.mac) == ("10.77.0.50", "02:00:00:00:00:aa")
    store.deactivate(web)
    assert store.endpoints_of(web)[0].ipv4 is None
    assert store.endpoints_of(web)[0].mac == "02:00:00:00:00:aa"
    assert store.activate(web, net, "pv1").ipv4 == "10.77.0.50"


def test_static_address_conflicts(store, db):
    net = network(store)
    a, b, c = (container(db, f"s{n}") for n in range(3))
    join(store, a, net)  # 10.77.0.2
    store.add_endpoints(b, [Endpoint(b, net.id, ())], [("10.77.0.2", None)])
    with pytest.raises(AddressUnavailable, match="Address already in use"):
        store.activate(b, net, "pv")
    assert store.endpoints_of(b)[0].active is False  # nothing half-done
    store.add_endpoints(c, [Endpoint(c, net.id, ())], [("10.99.0.2", None)])
    with pytest.raises(AddressUnavailable, match="no configured subnet"):
        store.activate(c, net, "pv")


def test_exhausted_network(store, db):
    net = network(store, subnet="10.77.0.0/30")  # one host address beside the gateway
    a, b = container(db, "x1"), container(db, "x2")
    assert join(store, a, net).ipv4 == "10.77.0.2"
    with pytest.raises(AddressUnavailable, match="no available IPv4"):
        join(store, b, net)


def test_ipv6_allocation(store, db):
    net = network(store, "v6net", "10.5.0.0/24", enable_ipv6=True)
    ep = join(store, container(db, "six"), net)
    assert ep.ipv4 == "10.5.0.2" and ep.ipv6 == str(ipam.ipaddress.ip_network(net.subnets[1].subnet)[2])


def test_the_database_refuses_a_duplicate_address_even_if_code_were_wrong(store, db):
    net = network(store)
    a, b = container(db, "d1"), container(db, "d2")
    ep = join(store, a, net)
    store.add_endpoints(b, [Endpoint(b, net.id, ())], [(None, None)])
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE endpoints SET ipv4 = ? WHERE container_id = ?", (ep.ipv4, b))


def test_endpoints_keep_join_order(store, db):
    n1, n2 = network(store, "n1", "10.1.0.0/24"), network(store, "n2", "10.2.0.0/24")
    cid = container(db, "multi")
    store.add_endpoints(cid, [Endpoint(cid, n2.id, ("m",)), Endpoint(cid, n1.id, ("m",))], [(None, None)] * 2)
    assert [e.network_id for e in store.endpoints_of(cid)] == [n2.id, n1.id]
    with pytest.raises(ValueError):
        store.add_endpoints(cid, [Endpoint(cid, n1.id, ())], [])


def test_container_removal_cascades(store, db):
    net = network(store)
    cid = container(db, "gone")
    join(store, cid, net, ["gone"])
    store.set_ports(cid, [PublishedPort(cid, 80, "tcp", "127.0.0.1", 8080, "10.77.0.2")], net.bridge)
    db.execute("DELETE FROM containers WHERE id = ?", (cid,))
    assert store.endpoints_in(net.id) == [] and store.all_ports() == []
    assert db.scalar("SELECT count(*) FROM endpoint_names") == 0
    store.remove(net.id)


def _allocate_many(path: str, network_id: str, ids: list[str], out) -> None:
    """Child process: its own Database, one activate per container."""
    db = Database(path)
    store = NetworkStore(db)
    net = store.get(network_id)
    got = []
    try:
        for cid in ids:
            got.append(store.activate(cid, net, "pv").ipv4)
        out.put(got)
    finally:
        db.close()


def test_two_processes_allocate_100_each_without_duplicates(store, db):
    net = network(store, subnet="10.77.0.0/23")
    ids = [container(db, f"mp{n}", n) for n in range(200)]
    for cid in ids:
        store.add_endpoints(cid, [Endpoint(cid, net.id, ())], [(None, None)])
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_allocate_many, args=(str(db.path), net.id, ids[i::2], out)) for i in (0, 1)]
    try:
        for p in procs:
            p.start()
        results = [out.get(timeout=60), out.get(timeout=60)]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs)
    addresses = results[0] + results[1]
    assert len(addresses) == 200 and len(set(addresses)) == 200
    low = int(ipam.ipaddress.ip_address("10.77.0.2"))
    assert {int(ipam.ipaddress.ip_address(a)) - low for a in addresses} == set(range(200))  # lowest first


# -- names


@pytest.fixture
def project(store, db):
    """Two networks: front (web, db) and back (db, cache); php has 3 replicas on front; one stopped."""
    front = network(store, "p_front", "10.10.0.0/24")
    back = network(store, "p_back", "10.20.0.0/24", enable_ipv6=True)
    web = container(db, "/p-web-1")
    dbc = container(db, "p-db-1")
    cache = container(db, "p-cache-1")
    store.add_endpoints(web, [Endpoint(web, front.id, ("web", "Frontend"))], [(None, None)])
    store.add_endpoints(
        dbc, [Endpoint(dbc, front.id, ("db",)), Endpoint(dbc, back.id, ("db", "mysql"))], [(None, None)] * 2
    )
    store.add_endpoints(cache, [Endpoint(cache, back.id, ("cache",))], [(None, None)])
    php = [container(db, f"p-php-{n}") for n in (1, 2, 3, 4)]
    for cid in php:
        store.add_endpoints(cid, [Endpoint(cid, front.id, ("php",))], [(None, None)])
    ips = {}
    for cid, nets in [
        (web, [front]),
        (dbc, [front, back]),
        (cache, [back]),
        *[(c, [front]) for c in php[:3]],
    ]:
        for net in nets:
            ep = store.activate(cid, net, "pv")
            ips[(cid, net.name)] = (ep.ipv4, ep.ipv6)
    return {"web": web, "db": dbc, "cache": cache, "php": php, "ips": ips, "front": front, "back": back}


def test_lookup_in_shared_networks_only(store, project):
    ips = project["ips"]
    web_ip = ips[(project["web"], "p_front")][0]
    assert store.lookup(web_ip, "db") == ([ips[(project["db"], "p_front")][0]], [])
    assert store.lookup(web_ip, "DB.") == ([ips[(project["db"], "p_front")][0]], [])
    assert store.lookup(web_ip, "mysql") is None  # alias only in back, which web has not joined
    assert store.lookup(web_ip, "cache") is None
    assert store.lookup(web_ip, "frontend") == ([web_ip], [])
    assert store.lookup(web_ip, "example.com") is None


def test_lookup_replicas_all_active_ones(store, project):
    ips = project["ips"]
    web_ip = ips[(project["web"], "p_front")][0]
    v4, v6 = store.lookup(web_ip, "php")
    assert v4 == [ips[(c, "p_front")][0] for c in project["php"][:3]] and v6 == []  # the 4th never started
    store.deactivate(project["php"][1])
    assert store.lookup(web_ip, "php")[0] == [
        ips[(c, "p_front")][0] for c in (project["php"][0], project["php"][2])
    ]


def test_lookup_container_names_with_slash_stripped(store, project):
    ips = project["ips"]
    db_ip4, db_ip6 = ips[(project["db"], "p_back")]
    assert store.lookup(db_ip4, "p-web-1") == ([ips[(project["web"], "p_front")][0]], [])
    cache4, cache6 = ips[(project["cache"], "p_back")]
    assert store.lookup(db_ip4, "P-Cache-1") == ([cache4], [cache6])
    assert store.lookup(db_ip6, "cache") == ([cache4], [cache6])  # a client asking over IPv6
    assert store.lookup(cache4, "db") == ([db_ip4], [db_ip6])  # only back is shared with cache
    assert store.lookup(cache4, "web") is None
    db_front = ips[(project["db"], "p_front")][0]
    assert store.lookup(db_ip4, "db") == ([db_front, db_ip4], [db_ip6])  # itself, in both its networks


def test_lookup_from_unknown_or_stopped_clients_is_none(store, project):
    assert store.lookup("10.10.0.1", "db") is None  # the gateway: the host itself
    assert store.lookup("127.0.0.1", "web") is None
    assert store.lookup("not-an-ip", "web") is None
    web_ip = project["ips"][(project["web"], "p_front")][0]
    store.deactivate(project["web"])
    assert store.lookup(web_ip, "db") is None


def test_reverse(store, project):
    ips = project["ips"]
    web_ip = ips[(project["web"], "p_front")][0]
    db_ip4, db_ip6 = ips[(project["db"], "p_back")]
    assert store.reverse(web_ip, ips[(project["db"], "p_front")][0]) == "p-db-1"
    assert store.reverse(ips[(project["db"], "p_front")][0], web_ip) == "p-web-1"  # "/" stripped
    assert store.reverse(web_ip, db_ip4) is None  # back is not web's network
    assert store.reverse(ips[(project["cache"], "p_back")][0], db_ip6) == "p-db-1"
    assert store.reverse("192.0.2.1", web_ip) is None
    assert store.reverse(web_ip, "10.10.0.200") is None


def _plans(db: Recording) -> list[str]:
    conn = db.connection()
    details = []
    for sql, params in db.seen:
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params):
            details.append(row[3])
    return details


def test_lookup_and_reverse_use_indexes(store, db, project):
    ips = project["ips"]
    web_ip = ips[(project["web"], "p_front")][0]
    db.seen.clear()
    store.lookup(web_ip, "php")
    store.reverse(web_ip, ips[(project["db"], "p_front")][0])
    store.lookup("fd00::99", "php")
    plans = _plans(db)
    assert plans and not [p for p in plans if p.startswith("SCAN")], plans


def test_lookup_median_under_half_a_millisecond(store, db):
    nets = [network(store, f"n{i}", f"10.{100 + i}.0.0/24") for i in range(20)]
    clients = []
    n = 0
    for net in nets:
        for j in range(50):
            cid = container(db, f"c-{net.name}-{j}", n)
            n += 1
            store.add_endpoints(cid, [Endpoint(cid, net.id, (f"svc{j % 10}", f"c{j}"))], [(None, None)])
            clients.append(store.activate(cid, net, "pv").ipv4)
    times = []
    for i in range(400):
        start = time.perf_counter()
        got = store.lookup(clients[i % len(clients)], f"svc{i % 10}")
        times.append(time.perf_counter() - start)
        assert got is not None and len(got[0]) == 5
    assert statistics.median(times) < 0.0005, statistics.median(times)


# -- published ports


def test_ports_set_list_clear(store, db):
    net = network(store)
    a, b = container(db, "pa"), container(db, "pb")
    pa = [
        PublishedPort(a, 80, "tcp", "0.0.0.0", 8080, "10.77.0.2"),
        PublishedPort(a, 53, "udp", "127.0.0.1", 5353, "10.77.0.2"),
    ]
    store.set_ports(a, pa, net.bridge)
    assert store.ports_of(a) == [pa[1], pa[0]]
    with pytest.raises(PortInUse, match=r"Bind for 0\.0\.0\.0:8080 failed: port is already allocated"):
        store.set_ports(b, [PublishedPort(b, 80, "tcp", "0.0.0.0", 8080, "10.77.0.3")], net.bridge)
    assert store.ports_of(b) == []
    pb = [PublishedPort(b, 80, "tcp", "127.0.0.1", 8080, "10.77.0.3")]
    store.set_ports(b, pb, "pyct-other")
    assert store.all_ports() == [("pyct-other", pb[0]), (net.bridge, pa[1]), (net.bridge, pa[0])]
    store.set_ports(a, pa[:1], net.bridge)  # replaces
    assert store.ports_of(a) == pa[:1]
    store.clear_ports(a)
    assert store.ports_of(a) == [] and store.ports_of(b) == pb


# -- migration


def test_migration_from_v4_keeps_rows_and_adds_the_tables(tmp_path):
    path = tmp_path / "old.db"
    old = Database(path, migrations=MIGRATIONS[:4])
    _image(old)
    records.insert(
        old, id="f" * 64, name="web", image_id=IMAGE, spec_json="{}", labels={"k": "v"}, created="t"
    )
    old.execute("INSERT INTO volumes VALUES ('data', 'local', '{}', '{}', 't')")
    assert old.schema_version() == 4
    old.close()
    db = Database(path)
    try:
        assert db.schema_version() == SCHEMA_VERSION >= 5
        assert records.get(db, "web")["labels"] == {"k": "v"}
        assert db.scalar("SELECT name FROM volumes") == "data"
        store = NetworkStore(db)
        net = network(store)
        ep = join(store, "f" * 64, net, ["web"])
        assert ep.ipv4 == "10.77.0.2"
        assert store.lookup(ep.ipv4, "WEB") == (["10.77.0.2"], [])
        indexes = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {
            "endpoints_network_ipv4",
            "endpoints_network_ipv6",
            "endpoints_ipv4",
            "endpoints_ipv6",
        } <= indexes
    finally:
        db.close()
