"""Pure parts of engine.containers.cgroups: layout detection, limit conversions, stats parsing.

The Cgroup class is also exercised on a fake cgroupfs in tmp_path (plain directories and files), which
checks which files get written without root; the real kernel is in tests/integration/test_cgroups_root.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.containers.cgroups import (
    Cgroup,
    Layout,
    Write,
    order_memsw_v1,
    parse_blkio_v1,
    parse_flat_keyed,
    parse_io_stat_v2,
    parse_mountinfo,
    plan_v1,
    plan_v2,
    shares_to_weight,
)
from engine.containers.spec import Resources
from engine.errors import CgroupError, EngineError, UnsupportedSetting

MIB = 1 << 20

# Debian 12 with systemd.unified_cgroup_hierarchy=0 (this host): v1 controllers + empty cgroup2.
HYBRID = """\
22 27 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:11 - cgroup2 cgroup2 rw,nsdelegate
"""

# CentOS 7 / older Docker hosts: pure v1, cpu and cpuacct co-mounted, no cgroup2 at all.
PURE_V1 = """\
25 18 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:6 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/systemd rw shared:7 - cgroup cgroup rw,xattr,name=systemd
29 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw shared:10 - cgroup cgroup rw,cpu,cpuacct
30 25 0:26 / /sys/fs/cgroup/memory rw shared:11 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/pids rw shared:12 - cgroup cgroup rw,pids
32 25 0:28 / /sys/fs/cgroup/freezer rw shared:13 - cgroup cgroup rw,freezer
33 25 0:29 / /sys/fs/cgroup/cpuset rw shared:14 - cgroup cgroup rw,cpuset
34 25 0:30 / /sys/fs/cgroup/net_cls,net_prio rw shared:15 - cgroup cgroup rw,net_cls,net_prio
"""

# Debian 12 / Fedora defaults: one unified tree.
PURE_V2 = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 24 0:24 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""


# -- layout -----------------------------------------------------------------------------------------


def test_hybrid_layout_has_v1_controllers_and_the_unified_mount() -> None:
    layout = parse_mountinfo(HYBRID)
    assert layout.mode == "hybrid"
    assert layout.unified == "/sys/fs/cgroup/unified"
    assert layout.v1["memory"] == "/sys/fs/cgroup/memory"
    assert layout.v1["cpuacct"] == "/sys/fs/cgroup/cpuacct"
    assert "name=systemd" not in layout.v1 and "systemd" not in layout.v1


def test_pure_v1_layout_maps_co_mounted_controllers_to_one_mount() -> None:
    layout = parse_mountinfo(PURE_V1)
    assert layout.mode == "v1" and layout.unified is None
    assert layout.v1["cpu"] == layout.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert "blkio" not in layout.v1


def test_pure_v2_layout() -> None:
    assert parse_mountinfo(PURE_V2) == Layout("v2", {}, "/sys/fs/cgroup")


def test_no_cgroup_mount_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="no cgroup"):
        parse_mountinfo("22 27 0:21 / /proc rw - proc proc rw\n")


def test_escaped_mount_point_and_first_mount_wins() -> None:
    text = (
        "50 1 0:40 / /mnt/a\\040b rw - cgroup2 cgroup2 rw\n51 1 0:40 / /mnt/second rw - cgroup2 cgroup2 rw\n"
    )
    assert parse_mountinfo(text).unified == "/mnt/a b"


# -- conversions ------------------------------------------------------------------------------------


def files(writes: list[Write]) -> dict[str, str]:
    return {w.file: w.value for w in writes}


def test_v1_memory_limit_defaults_swap_to_twice_the_memory_like_docker() -> None:
    assert files(plan_v1(Resources(memory=32 * MIB))) == {
        "memory.limit_in_bytes": str(32 * MIB),
        "memory.memsw.limit_in_bytes": str(64 * MIB),
    }


def test_v1_order_limit_before_memsw_and_period_before_quota() -> None:
    writes = plan_v1(Resources(memory=MIB, memory_swap=-1, cpus=1.5))
    names = [w.file for w in writes]
    assert names.index("memory.limit_in_bytes") < names.index("memory.memsw.limit_in_bytes")
    assert names.index("cpu.cfs_period_us") < names.index("cpu.cfs_quota_us")
    assert files(writes)["cpu.cfs_quota_us"] == "150000"
    assert files(writes)["memory.memsw.limit_in_bytes"] == "-1"


def test_v1_memsw_goes_first_when_an_update_raises_it_past_the_limit_in_force() -> None:
    writes = plan_v1(Resources(memory=64 * MIB, memory_swap=128 * MIB, pids_limit=5))
    first = [w.file for w in order_memsw_v1(writes, current_limit=32 * MIB)]
    assert first[:2] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    assert order_memsw_v1(writes, current_limit=None) == writes  # fresh cgroup: limit first
    assert order_memsw_v1(writes, current_limit=256 * MIB) == writes  # shrinking: limit first


def test_v2_swap_max_is_swap_minus_memory() -> None:
    got = files(plan_v2(Resources(memory=100 * MIB, memory_swap=300 * MIB, memory_reservation=50 * MIB)))
    assert got == {
        "memory.max": str(100 * MIB),
        "memory.swap.max": str(200 * MIB),
        "memory.low": str(50 * MIB),
    }
    assert files(plan_v2(Resources(memory=MIB, memory_swap=MIB)))["memory.swap.max"] == "0"
    assert files(plan_v2(Resources(memory=MIB, memory_swap=-1)))["memory.swap.max"] == "max"


def test_cpu_quota_and_period_explicit() -> None:
    assert files(plan_v2(Resources(cpu_quota=25_000, cpu_period=50_000)))["cpu.max"] == "25000 50000"
    assert files(plan_v2(Resources(cpus=0.5)))["cpu.max"] == "50000 100000"
    assert files(plan_v2(Resources(cpu_period=50_000)))["cpu.max"] == "max 50000"
    v1 = files(plan_v1(Resources(cpu_quota=-1)))
    assert v1 == {"cpu.cfs_quota_us": "-1"}


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (1024, 39), (512, 20), (262_144, 10_000), (1, 1)])
def test_shares_to_weight_matches_runc(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


def test_cpu_shares_cpuset_and_pids() -> None:
    r = Resources(cpu_shares=512, cpuset_cpus="0-1", cpuset_mems="0", pids_limit=100)
    assert files(plan_v1(r)) == {
        "cpu.shares": "512",
        "cpuset.cpus": "0-1",
        "cpuset.mems": "0",
        "pids.max": "100",
    }
    assert files(plan_v2(r))["cpu.weight"] == "20"
    assert files(plan_v2(Resources(pids_limit=-1)))["pids.max"] == "max"


def test_nothing_set_writes_nothing() -> None:
    assert plan_v1(Resources()) == [] and plan_v2(Resources()) == []


@pytest.mark.parametrize(
    ("resources", "subject"),
    [
        (Resources(memory_swap=MIB), "memory_swap"),
        (Resources(memory=2 * MIB, memory_swap=MIB), "memory_swap"),
        (Resources(cpus=1.0, cpu_quota=1000), "cpus"),
        (Resources(cpus=-1.0), "cpus"),
    ],
)
def test_docker_refusals(resources: Resources, subject: str) -> None:
    for plan in (plan_v1, plan_v2):
        with pytest.raises(CgroupError) as info:
            plan(resources)
        assert info.value.subject == subject


# -- stats parsing ----------------------------------------------------------------------------------


def test_parse_flat_keyed() -> None:
    text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
    assert parse_flat_keyed(text) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 3}


def test_parse_blkio_v1_sums_devices() -> None:
    text = "8:0 Read 4096\n8:0 Write 100\n8:0 Sync 1\n8:16 Read 4\n8:16 Write 1\nTotal 4201\n"
    assert parse_blkio_v1(text) == (4100, 101)


def test_parse_io_stat_v2_sums_devices() -> None:
    text = "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=0\n"
    assert parse_io_stat_v2(text) == (11, 22)


# -- the class on a fake cgroupfs -------------------------------------------------------------------


def fake_v2(tmp_path: Path) -> Layout:
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    (root / "cgroup.subtree_control").write_text("")
    return Layout("v2", {}, str(root))


def test_v2_create_enables_controllers_in_ancestors_not_the_leaf(tmp_path: Path) -> None:
    layout = fake_v2(tmp_path)
    parent = Path(layout.unified) / "pyc"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (parent / "cgroup.subtree_control").write_text("")
    group = Cgroup.create("c1", parent="pyc", layout=layout)
    assert (Path(layout.unified) / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids +io"
    assert (parent / "cgroup.subtree_control").read_text() == "+cpu +cpuset +memory +pids +io"
    assert group.directories() == [parent / "c1"]
    assert not (parent / "c1" / "cgroup.subtree_control").exists()


def test_create_twice_refuses_and_keeps_the_first(tmp_path: Path) -> None:
    layout = fake_v2(tmp_path)
    Cgroup.create("c1", parent="pyc", layout=layout)
    with pytest.raises(CgroupError, match="already exists"):
        Cgroup.create("c1", parent="pyc", layout=layout)
    assert (Path(layout.unified) / "pyc" / "c1").is_dir()


@pytest.mark.parametrize("name", ["", "..", "a/b", "."])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CgroupError, match="invalid"):
        Cgroup.create(name, layout=fake_v2(tmp_path))


def test_apply_missing_knob_names_the_setting(tmp_path: Path) -> None:
    group = Cgroup.create("c1", parent="pyc", layout=fake_v2(tmp_path))
    (group.unified / "memory.max").write_text("max\n")
    with pytest.raises(UnsupportedSetting) as info:
        group.apply(Resources(memory=64 * MIB))
    assert info.value.subject == "memory_swap"
    assert (group.unified / "memory.max").read_text() == str(64 * MIB)


def test_v1_unmounted_controller_is_unsupported(tmp_path: Path) -> None:
    mem = tmp_path / "memory"
    mem.mkdir()
    group = Cgroup.create("c1", parent="pyc", layout=Layout("v1", {"memory": str(mem)}))
    with pytest.raises(UnsupportedSetting, match="cpu controller") as info:
        group.apply(Resources(cpus=1.0))
    assert info.value.subject == "cpus"
    with pytest.raises(UnsupportedSetting):
        group.freeze()


def test_v1_co_mounted_hierarchy_gets_one_directory(tmp_path: Path) -> None:
    shared, mem = tmp_path / "cpu,cpuacct", tmp_path / "memory"
    shared.mkdir()
    mem.mkdir()
    layout = Layout("v1", {"cpu": str(shared), "cpuacct": str(shared), "memory": str(mem)})
    group = Cgroup.create("c1", parent="pyc", layout=layout)
    assert sorted(group.directories()) == sorted([shared / "pyc" / "c1", mem / "pyc" / "c1"])
    assert Cgroup.open("c1", parent="pyc", layout=layout).directories() == group.directories()
    group.remove()
    assert not (shared / "pyc" / "c1").exists() and not (mem / "pyc" / "c1").exists()
    with pytest.raises(CgroupError, match="no such cgroup"):
        Cgroup.open("c1", parent="pyc", layout=layout)


def test_oom_and_stats_read_from_v2_files(tmp_path: Path) -> None:
    group = Cgroup.create("c1", parent="pyc", layout=fake_v2(tmp_path))
    d = group.unified
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 0\n")
    assert not group.oom_killed()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n")
    assert group.oom_killed()
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n")
    (d / "memory.current").write_text("4096\n")
    (d / "memory.max").write_text("max\n")
    (d / "memory.stat").write_text("anon 1\ninactive_file 1024\n")
    (d / "pids.current").write_text("3\n")
    (d / "pids.max").write_text("100\n")
    stats = group.stats()
    assert stats.cpu_usage_ns == 1_500_000
    assert (stats.memory_usage, stats.memory_limit, stats.memory_inactive_file) == (4096, None, 1024)
    assert (stats.pids_current, stats.pids_limit) == (3, 100)
    assert stats.blkio_read_bytes is None


def test_v1_oom_control_counter(tmp_path: Path) -> None:
    mem = tmp_path / "memory"
    mem.mkdir()
    group = Cgroup.create("c1", parent="pyc", layout=Layout("v1", {"memory": str(mem)}))
    (group.v1["memory"] / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (group.v1["memory"] / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert group.oom_killed()
    assert group.stats().memory_limit is None


def test_devices_v1_denies_all_then_allows_dockers_list() -> None:
    from engine.containers.cgroups import plan_devices_v1

    writes = plan_devices_v1(False)
    assert (writes[0].file, writes[0].value) == ("devices.deny", "a")
    allowed = [w.value for w in writes[1:]]
    assert all(w.file == "devices.allow" for w in writes[1:])
    assert {"c *:* m", "b *:* m", "c 1:3 rwm", "c 5:2 rwm", "c 136:* rwm", "c 10:200 rwm"} <= set(allowed)
    assert not any(rule.startswith("b") and "r" in rule for rule in allowed)  # no block device is readable


def test_devices_v1_privileged_allows_everything() -> None:
    from engine.containers.cgroups import plan_devices_v1

    assert [(w.file, w.value) for w in plan_devices_v1(True)] == [("devices.allow", "a")]
