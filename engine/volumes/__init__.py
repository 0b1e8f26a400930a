"""Volumes: named volumes under the state root, their use by containers, and Docker's copy-up.

Modules (one job each):
- `store`   `VolumeStore`: create / get / list / inspect / remove / prune named volumes (`local` driver,
            driver_opts for bind and tmpfs), in-use tracking, `mount_source()` for the rootfs code,
            copy-up from the image (`populate_from_image`) and `subpath` resolution; `acquire_mounts` /
            `release_mounts` around each container start for filesystem volumes.
- `mounts`  `HostMounts`: a tmpfs/nfs/... volume mounted once on the host at `_data` and shared by the
            containers using it; "in use" derived from running containers (holder files checked against
            each container's PID 1 mount table), so a crash cannot leak a mount past the next sweep.

Bind mounts and plain `tmpfs` mounts of a service need no store: the rootfs code mounts them directly.
"""

from engine.volumes.store import (
    ANONYMOUS_LABEL,
    PruneReport,
    Volume,
    VolumeStore,
    labels_match,
    validate_name,
)

__all__ = ["ANONYMOUS_LABEL", "PruneReport", "Volume", "VolumeStore", "labels_match", "validate_name"]
