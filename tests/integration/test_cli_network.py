"""`pycompose network ...` end to end: the real CLI in a subprocess on a temp state root, real bridges.

The fixture removes every network the root still has and empties the root's firewall scope, even when
a test fails.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.net import firewall
from engine.net.manager import NetworkManager
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys; from compose.cli.main import main; sys.exit(main(sys.argv[1:]))"


class Cli:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", CLI, "--root", str(self.root), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pycompose {' '.join(args)} -> {result.returncode}: {result.stderr}")
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Cli]:
    root_dir = tmp_path / "root"
    StateRoot.open(root_dir).close()
    try:
        yield Cli(root_dir)
    finally:
        with StateRoot.open(root_dir) as root:
            manager = NetworkManager(root)
            try:
                for network in manager.list_networks():
                    manager.remove_network(network.id)
            finally:
                firewall.sync(manager.scope, [], [])


def bridges() -> set[str]:
    text = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def subnet() -> str:
    return f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"


def test_create_ls_inspect_rm(cli):
    name, cidr = "pyct-" + uuid.uuid4().hex[:8], subnet()
    gateway = cidr.replace(".0/24", ".254")
    out = cli(
        "network",
        "create",
        "--subnet",
        cidr,
        "--gateway",
        gateway,
        "--label",
        "pyct=1",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "--internal",
        name,
    ).stdout
    network_id = out.strip()
    assert len(network_id) == 64
    (doc,) = json.loads(cli("network", "inspect", name).stdout)
    assert doc["Id"] == network_id and doc["Internal"] is True and doc["Labels"] == {"pyct": "1"}
    assert doc["IPAM"]["Config"] == [{"Subnet": cidr, "Gateway": gateway}]
    bridge = doc["Options"]["com.docker.network.bridge.name"]
    assert bridge in bridges()
    assert Path(f"/sys/class/net/{bridge}/mtu").read_text().strip() == "1400"

    table = cli("network", "ls").stdout.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert table[1].split() == [network_id[:12], name, "bridge", "local"]
    assert cli("network", "ls", "-q").stdout == network_id[:12] + "\n"
    line = json.loads(cli("network", "ls", "--format", "json").stdout)
    assert line["Name"] == name and line["Internal"] == "true"
    assert cli("network", "ls", "-q", "--filter", "label=pyct=2").stdout == ""
    assert cli("network", "ls", "-q", "--filter", f"name={name[:7]}").stdout.strip() == network_id[:12]

    missing = cli("network", "inspect", name, "pyct-nothere", check=False)
    assert missing.returncode == 1 and "pyct-nothere" in missing.stderr
    assert [d["Name"] for d in json.loads(missing.stdout)] == [name]

    assert cli("network", "rm", name).stdout == name + "\n"
    assert bridge not in bridges()
    again = cli("network", "rm", name, check=False)
    assert again.returncode != 0 and name in again.stderr
    assert cli("network", "rm", "-f", name).returncode == 0


def test_prune_and_taken_subnet(cli):
    cidr = subnet()
    first, second = ("pyct-" + uuid.uuid4().hex[:8] for _ in range(2))
    cli("network", "create", "--subnet", cidr, first)
    clash = cli("network", "create", "--subnet", cidr, second, check=False)
    assert clash.returncode != 0 and cidr.split("/")[0] in clash.stderr
    dup = cli("network", "create", first, check=False)
    assert dup.returncode != 0 and first in dup.stderr
    cli("network", "create", second)  # a default-pool subnet
    out = cli("network", "prune", "-f").stdout
    assert out.splitlines()[0] == "Deleted Networks:" and set(out.splitlines()[1:]) == {first, second}
    assert cli("network", "ls", "-q").stdout == ""


def test_connect_says_not_yet(cli):
    result = cli("network", "connect", "net", "ctr", check=False)
    assert result.returncode != 0 and "not implemented" in result.stderr
