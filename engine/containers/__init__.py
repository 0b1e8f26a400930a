"""Containers: from a `ContainerSpec` to an isolated process tree, and back.

Modules (one job each):
- `spec`      the typed description of one container (what to run, with which limits and mounts).
- `cgroups`   detect the cgroup layout (v1, hybrid, v2), create a container's cgroup, apply limits,
              freeze/thaw, read stats and OOM events, remove it.
- `security`  the order privileges are applied in: ulimits, sysctls, oom_score_adj, no_new_privs, then
              `capabilities` (Docker's default set, cap_add/cap_drop, bounding/ambient sets) and `seccomp`
              (Docker's default profile as data, compiled to BPF by us; custom JSON profiles).
- `rootfs`    the container's mount namespace: overlayfs root, /proc, /sys, /dev, masked paths, volumes,
              generated /etc files, pivot_root.
- `cmdline`   Docker's entrypoint/command merge; `userdb` resolves `user` in the container's passwd/group.
- `syscalls`  the ctypes wrappers the stdlib lacks (mount, umount2, pivot_root, setns, sethostname...).
- `spawn`     the ordered steps that start (and `exec` into) a container; call from a single-threaded process.
- `logs`      json-file style logs: write with rotation, read and follow.
"""
