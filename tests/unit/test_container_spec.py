"""ContainerSpec's JSON round trip (the containers.spec column)."""

from __future__ import annotations

import json

import pytest

from engine.containers.spec import ContainerSpec, Mount, Process, Resources, Security


def _full() -> ContainerSpec:
    return ContainerSpec(
        id="c" * 64,
        name="web",
        image_id="sha256:" + "a" * 64,
        layer_dirs=("/l/2", "/l/1"),
        process=Process(args=("sh", "-c", "echo hi"), env=(("A", "1"),), user="1000:1000", tty=True),
        hostname="h",
        mounts=(
            Mount(type="volume", target="/data", source="vol", options=("rprivate",)),
            Mount(type="tmpfs", target="/tmp", options=("size=64m",), read_only=True),
        ),
        resources=Resources(memory=64 << 20, cpus=0.5, pids_limit=100),
        security=Security(cap_add=("NET_ADMIN",), ulimits=(("nofile", 1024, 2048),), sysctls=(("a.b", "1"),)),
        labels=(("com.example", "x"),),
        image="busybox:latest",
        log_driver="json-file",
        log_options=(("max-size", "10m"), ("max-file", "3")),
        restart="on-failure:3",
        restart_policy=("on-failure", 5.0, 3, 60.0),
        healthcheck=(("CMD", "true"), 30.0, 5.0, 0.0, 5.0, 3),
        volumes_from=(("db", "ro"), ("cache", "rw")),
    )


def test_defaults():
    spec = ContainerSpec(id="x", name="x", image_id="i", layer_dirs=(), process=Process(args=("true",)))
    assert (spec.log_driver, spec.log_options, spec.restart) == ("json-file", (), "no")
    assert spec.restart_policy is None and spec.healthcheck is None
    assert ContainerSpec.from_json(spec.to_json()) == spec


def test_round_trip_keeps_every_field_and_stays_hashable():
    spec = _full()
    text = spec.to_json()
    again = ContainerSpec.from_json(text)
    assert again == spec
    assert hash(again) == hash(spec)
    assert again.to_json() == text  # stable: same spec, same column value


def test_json_is_plain():
    data = json.loads(_full().to_json())
    assert data["restart_policy"] == ["on-failure", 5.0, 3, 60.0]
    assert data["healthcheck"][0] == ["CMD", "true"]
    assert data["mounts"][0]["source"] == "vol"


def test_unknown_key_is_refused():
    data = json.loads(_full().to_json())
    data["future_field"] = 1
    with pytest.raises(TypeError):
        ContainerSpec.from_json(json.dumps(data))


def test_frozen():
    with pytest.raises(AttributeError):
        _full().restart = "always"  # type: ignore[misc]


# -- the pure helpers around the spec: inspect document, signals, stats and CLI columns ------------------


def test_inspect_document_shape():
    from engine.containers.manager import inspect_document

    spec = _full()
    record = {
        "id": spec.id, "name": "web", "image_id": spec.image_id, "created": "2026-01-01T00:00:00Z",
        "state": "paused", "pid": 42, "started_at": "2026-01-01T00:00:01Z", "finished_at": None,
        "exit_code": None, "oom_killed": False, "restart_count": 2, "health": '{"Status": "healthy"}',
        "log_path": "/x.log", "labels": {"com.example": "x"},
    }  # fmt: skip
    doc = inspect_document(record, spec)
    assert doc["Name"] == "/web" and doc["Path"] == "sh" and doc["Args"] == ["-c", "echo hi"]
    state = doc["State"]
    assert (state["Status"], state["Running"], state["Paused"], state["Pid"]) == ("paused", True, True, 42)
    assert state["FinishedAt"] == "0001-01-01T00:00:00Z" and state["Health"] == {"Status": "healthy"}
    assert doc["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert doc["Config"]["Healthcheck"]["Interval"] == 30_000_000_000
    assert doc["Config"]["Image"] == "busybox:latest" and doc["RestartCount"] == 2


def test_parse_signal():
    from engine.containers.manager import parse_signal
    from engine.errors import InvalidCommand

    assert parse_signal("KILL") == parse_signal("SIGKILL") == parse_signal("9") == parse_signal(9) == 9
    assert parse_signal("sighup") == 1
    for bad in ("NOPE", "0", "999", -1):
        with pytest.raises(InvalidCommand):
            parse_signal(bad)


def test_stats_row_cpu_and_memory():
    from engine.containers.cgroups import CgroupStats
    from engine.containers.manager import stats_row

    first = CgroupStats(cpu_usage_ns=1_000_000_000)
    second = CgroupStats(
        cpu_usage_ns=1_250_000_000, memory_usage=30 << 20, memory_inactive_file=10 << 20,
        memory_limit=100 << 20, pids_current=3,
    )  # fmt: skip
    row = stats_row({"id": "a" * 64, "name": "web"}, first, second, 0.5)
    assert row["CPUPerc"] == 50.0 and row["MemUsage"] == 20 << 20 and row["MemPerc"] == 20.0
    assert row["PIDs"] == 3


def test_cli_status_and_volume_flags():
    from compose.cli.commands.container import _mount, status_text

    now = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    running = {"state": "running", "started_at": "2025-12-31T23:55:00Z", "finished_at": None, "health": None}
    assert status_text(running, now) == "Up 5 minutes"
    assert status_text({**running, "state": "paused"}, now) == "Up 5 minutes (Paused)"
    assert (
        status_text({**running, "health": '{"Status": "starting"}'}, now) == "Up 5 minutes (health: starting)"
    )
    exited = {"state": "exited", "started_at": None, "finished_at": "2025-12-31T22:00:00Z", "exit_code": 3}
    assert status_text(exited, now) == "Exited (3) 2 hours ago"
    assert status_text({"state": "created"}, now) == "Created"
    assert _mount("/data") == Mount(type="volume", target="/data")
    assert _mount("db:/var/lib/db:ro") == Mount(
        type="volume", source="db", target="/var/lib/db", read_only=True
    )
    assert _mount("/srv:/srv").type == "bind"


# -- image defaults at create (manager.with_image_defaults) ------------------------------------------------


def _bare(**kw) -> ContainerSpec:  # type: ignore[no-untyped-def]
    process = kw.pop("process", Process(args=("true",), env=(("B", "spec"), ("C", "3"))))
    return ContainerSpec(id="x", name="x", image_id="i", layer_dirs=(), process=process, **kw)


IMAGE = {
    "config": {
        "Env": ["PATH=/usr/bin:/bin", "B=image"],
        "User": "nobody",
        "WorkingDir": "/srv",
        "StopSignal": "SIGQUIT",
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 2_000_000_000, "Retries": 4},
    }
}


def test_volumes_from_round_trip():
    assert json.loads(_full().to_json())["volumes_from"] == [["db", "ro"], ["cache", "rw"]]
    assert ContainerSpec.from_json(_full().to_json()).volumes_from == (("db", "ro"), ("cache", "rw"))


def test_image_defaults_fill_the_gaps_and_the_spec_wins():
    from engine.containers.manager import with_image_defaults

    spec = with_image_defaults(_bare(), IMAGE)
    assert spec.process.env == (("PATH", "/usr/bin:/bin"), ("B", "spec"), ("C", "3"))
    assert (spec.process.user, spec.process.working_dir, spec.stop_signal) == ("nobody", "/srv", "SIGQUIT")
    assert spec.healthcheck == (("CMD-SHELL", "true"), 2.0, None, None, None, 4)
    mine = _bare(
        process=Process(args=("true",), user="0", working_dir="/w"),
        stop_signal="SIGINT",
        healthcheck=(("CMD", "x"), None, 1.5, None, None, None),
    )
    kept = with_image_defaults(mine, IMAGE)
    assert (kept.process.user, kept.process.working_dir, kept.stop_signal) == ("0", "/w", "SIGINT")
    assert kept.healthcheck == (("CMD", "x"), 2.0, 1.5, None, None, 4)  # Docker's field-by-field merge


def test_image_defaults_with_an_empty_config_change_nothing():
    from engine.containers.manager import with_image_defaults

    spec = _bare()
    assert with_image_defaults(spec, {}) == spec
    assert with_image_defaults(spec, {"config": {"User": "", "WorkingDir": ""}}) == spec


def test_image_healthcheck_none_and_durations():
    from engine.containers.manager import image_healthcheck, merge_healthcheck

    assert image_healthcheck(None) is None
    assert image_healthcheck({"Test": []}) is None
    assert image_healthcheck({"Test": ["NONE"]}) == (("NONE",), None, None, None, None, None)
    full = {
        "Test": ["CMD", "check"],
        "Interval": 30_000_000_000,
        "Timeout": 500_000_000,
        "StartPeriod": 1_000_000_000,
        "StartInterval": 250_000_000,
        "Retries": 2,
    }
    assert image_healthcheck(full) == (("CMD", "check"), 30.0, 0.5, 1.0, 0.25, 2)
    # a spec that disables (NONE) wins over the image's; an empty test inherits the image's
    none = (("NONE",), None, None, None, None, None)
    assert merge_healthcheck(none, image_healthcheck(full))[0] == ("NONE",)
    assert merge_healthcheck(((), None, None, None, None, None), image_healthcheck(full))[0] == (
        "CMD",
        "check",
    )


NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier
    lo: 840 10 0 0 0 0 0 0 840 10 0 0 0 0 0 0
  eth0:1234567890 12 1 2 0 0 0 0 648 8 3 4 0 0 0 0
  eth1:     100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0
"""


def test_parse_net_dev_skips_lo_and_reads_docker_counters():
    from engine.containers.manager import parse_net_dev

    parsed = parse_net_dev(NET_DEV)
    assert set(parsed) == {"eth0", "eth1"}
    assert parsed["eth0"] == {
        "rx_bytes": 1234567890, "rx_packets": 12, "rx_errors": 1, "rx_dropped": 2,
        "tx_bytes": 648, "tx_packets": 8, "tx_errors": 3, "tx_dropped": 4,
    }  # fmt: skip
    assert parse_net_dev(NET_DEV.split("  eth0")[0]) == {}  # only lo


def test_stats_row_sums_networks():
    from engine.containers.cgroups import CgroupStats
    from engine.containers.manager import parse_net_dev, stats_row

    networks = parse_net_dev(NET_DEV)
    row = stats_row({"id": "a", "name": "w"}, CgroupStats(), CgroupStats(), 1.0, networks=networks)
    assert (row["NetRx"], row["NetTx"]) == (1234567990, 848)
    assert row["Networks"] is networks
    bare = stats_row({"id": "a", "name": "w"}, CgroupStats(), CgroupStats(), 1.0)
    assert (bare["NetRx"], bare["NetTx"], bare["Networks"]) == (0, 0, {})
