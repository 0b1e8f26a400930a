"""The one exception family of the engine half.

Every failure the runtime reports is an `EngineError` naming what it was working on (`subject`: an image
reference, a layer digest, a registry) and why. Only the CLI turns it into text and an exit code.
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises."""

    exit_code = 1

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.subject = subject

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}" if self.subject else self.message


class StateError(EngineError):
    """The state root or its database cannot be used (permissions, newer schema, corruption)."""


class LockTimeout(StateError):
    """Another pycompose process held a lock for too long."""


class ImageNotFound(EngineError):
    """No image with that reference or id in the store (or on the registry)."""


class InvalidReference(EngineError):
    """An image reference that does not parse (`Nginx`, `a:b:c`, a bad digest)."""


class ImageInUse(EngineError):
    """Removing the image would break something that uses it (another tag, a container)."""


class ArchiveError(EngineError):
    """A tarball (import, load) is corrupt, truncated or not the format it claims."""


class UnsafeLayerError(ArchiveError):
    """A layer tries to write outside its own directory (absolute path, `..`, link escape)."""


class DigestMismatch(EngineError):
    """Content does not hash to the digest it was announced with."""


class RegistryError(EngineError):
    """The registry answered with an error (or not the protocol we speak)."""


class RegistryUnreachable(RegistryError):
    """No connection to the registry (DNS, refused, TLS, timeout)."""


class AuthenticationError(RegistryError):
    """The registry refused our credentials (or asked for some we do not have)."""


class DiskFullError(EngineError):
    """No space left while writing to the state root; nothing half-written was kept."""


class Cancelled(EngineError):
    """The user interrupted the operation; nothing partial was kept."""

    exit_code = 130


class InvalidChange(EngineError):
    """An `image import --change` instruction that is unknown or malformed."""


class InvalidCommand(EngineError):
    """A container has nothing to run (no entrypoint and no command), or an empty executable name."""


class UnknownUser(EngineError):
    """A container `user` / `group_add` names a user or group its /etc/passwd or /etc/group lacks."""


class ContainerStartError(EngineError):
    """Setting up or starting a container's process failed (mounts, namespaces, exec); names the step."""


class CgroupError(EngineError):
    """A container's cgroup cannot be created, configured, frozen or removed (names the file or setting)."""


class UnsupportedSetting(CgroupError):
    """A resource setting this host's cgroup layout cannot enforce; refused rather than silently ignored."""


class VolumeError(EngineError):
    """A named volume cannot be created, used or removed as asked (bad name, options, subpath)."""


class VolumeNotFound(VolumeError):
    """No volume of that name (an `external` volume is never created for the user)."""


class VolumeInUse(VolumeError):
    """The volume is still mounted by a container; removing it would pull data from under it."""


class SecurityError(EngineError):
    """A capability, seccomp profile, ulimit or sysctl that is invalid or cannot be applied."""


class InvalidPolicy(EngineError):
    """A restart policy or healthcheck the supervisor cannot apply (`on-failure:x`, a negative retry)."""


class ContainerNotFound(EngineError):
    """No container with that id, unique id prefix or name."""


class ContainerConflict(EngineError):
    """The container is in the wrong state for the request, or its name is taken (docker's 409)."""


class SupervisorError(EngineError):
    """The supervisor could not be started or reached, or broke the control protocol."""


class NetworkError(EngineError):
    """A network could not be created, joined or removed (netlink, namespaces, a bad spec)."""


class NetworkNotFound(NetworkError):
    """No network has that name or id."""


class NetworkExists(NetworkError):
    """A network with that name exists already."""


class NetworkInUse(NetworkError):
    """Containers are still attached to the network."""


class AddressUnavailable(NetworkError):
    """The subnet overlaps another, is exhausted, or a static address is outside it or taken."""


class PortInUse(NetworkError):
    """A host port to publish is already taken (by another program or another container)."""


class FirewallError(NetworkError):
    """iptables refused our rules (the message carries its output)."""


class BuildError(EngineError):
    """A build step cannot be carried out (a COPY/ADD source missing or outside the context, a bad flag)."""


class BuildStepFailed(BuildError):
    """A RUN step exited non-zero: which step, the command's exit status and its last output lines."""

    def __init__(
        self,
        message: str,
        *,
        subject: str | None = None,
        step: str = "",
        status: int = 1,
        tail: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, subject=subject)
        self.step = step
        self.status = status
        self.tail = tail


class CopyError(EngineError):
    """`cp` cannot copy: a path missing in the container or on the host, a bad archive, a file onto a dir."""
