"""Containers: from a `ContainerSpec` to an isolated process tree, and back.

Modules (one job each):
- `spec`      the typed description of one container (what to run, with which limits and mounts).
- `cgroups`   detect the cgroup layout (v1, hybrid, v2), create a container's cgroup, apply limits,
              freeze/thaw, read stats and OOM events, remove it.
- `security`  capabilities, no_new_privs, the default seccomp filter, ulimits, sysctls, oom_score_adj.
- `rootfs`    the container's mount namespace: overlayfs root, /proc, /sys, /dev, masked paths, volumes,
              generated /etc files, pivot_root.
- `spawn`     the ordered steps that start (and `exec` into) a container.
- `logs`      json-file style logs: write with rotation, read and follow.
"""
