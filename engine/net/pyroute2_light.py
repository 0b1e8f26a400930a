"""Import pyroute2's submodules without running its package `__init__` (importing this module does it).

Why: `import pyroute2.netlink...` first runs `pyroute2/__init__.py`, which imports every netlink family
the library has (conntrack, IPDB, NDB, nl80211, ipvs, wireguard...) and with them asyncio,
multiprocessing, ssl and unittest: ~0.15 s, paid on the critical path of a first `up` twice (the CLI
making the project's bridge, the supervisor's start-up sweep). `engine/net/rtnl` needs only the
rtnetlink message classes and NetlinkError: ~0.04 s, 27 modules.

How: the package is registered in `sys.modules` as a module made from its import spec but not executed,
so submodule imports find their files through its `__path__`. Nothing of ours uses the names the
`__init__` would have defined. If pyroute2 was already imported whole, that module is left as it is.
"""

from __future__ import annotations

import importlib.util
import sys


def _install() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.submodule_search_locations is None:
        return  # not installed: the import that follows reports it
    sys.modules["pyroute2"] = importlib.util.module_from_spec(spec)


_install()
