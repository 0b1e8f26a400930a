"""Networks: per-project bridges, IPAM, veth attachment, service DNS, NAT and published ports.

Modules, each with one job (the contract every module keeps; see also `types.py`):

- `types`    — the value types: `NetworkSpec` (what to create), `Network` and `Endpoint` (what exists).
- `ipam`     — pure address arithmetic: pick a subnet from the default pools that overlaps nothing in
               use, the gateway, the next free address in `ip_range`; no I/O, unit-tested without root.
- `store`    — the `networks`, `endpoints` and `published_ports` tables of the state database (migration
               v5): create/list/get/remove networks, allocate/release an endpoint's addresses inside one
               transaction (two processes never hand out the same address), record published ports.
- `links`    — the kernel side: bridges (name, MTU, gateway address, up), network namespace files
               (`<root>/run/netns/<container id>`, a bind mount of a namespace made with unshare), veth
               pairs moved into a namespace with address, MAC, MTU and routes, `route_localnet`,
               deletion; `setns` around a netlink socket made in the namespace.
- `rtnl`     — rtnetlink requests on a plain socket with pyroute2's message classes, imported lazily
               and without pyroute2's package `__init__` (`pyroute2_light`: ~0.04 s instead of ~0.15 s).
- `firewall` — iptables rules in our own chains (`PYCOMPOSE-*`), every rule tagged with a
               `pycompose:` comment, applied in batches with `iptables-restore --noflush`: forwarding for
               our bridges (ACCEPT inserted in FORWARD, so a Docker engine's DROP policy does not block us),
               isolation between networks, outbound masquerade unless internal, DNAT for published ports
               (PREROUTING and OUTPUT, 127.0.0.1 included), and removal of exactly what we added.
- `ports`    — host port checks and choice: is `host_ip:port/proto` free (bind test), pick a random free
               port from the ephemeral range or the first free one of a range.
- `dns`      — the embedded resolver run by the supervisor daemon: one UDP+TCP listener per network on
               its gateway address, port 53; answers A/AAAA (and PTR) for names within the networks the
               asking container shares (service aliases, all replicas round robin; container names;
               hostnames; link aliases), forwards everything else to the container's `dns:` servers or
               the host's resolvers.
- `manager`  — `NetworkManager`, the one object the rest of the engine calls: create/remove/prune/
               inspect networks; `prepare(spec)` before a container starts (namespace, veths, addresses,
               port rules; returns a `NetworkSetup` for spawn) and `release(container_id)` after it
               stopped; `sweep()` removes what a crash left behind.

Lifecycle: addresses are allocated at `prepare` (each start) and released at `release` (each stop),
as Docker does; the endpoint row keeps a static `ipv4_address` and the MAC. DNS answers only for
endpoints that are active (their container runs).
"""
