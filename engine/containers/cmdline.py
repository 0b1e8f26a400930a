"""The argv a container runs: image Entrypoint/Cmd combined with the service's entrypoint/command.

Pure logic, matching what the Docker daemon does when it creates a container (its config merge, then the
entrypoint reset, then "entrypoint + cmd"):

- `None` means "not set" and inherits from the image; an empty list is *set* and means "nothing".
- A service `entrypoint` that is set and non-empty replaces the image Entrypoint AND drops the image Cmd
  (the image's Cmd was written as arguments for the image's entrypoint, not for the new one).
- An empty service `entrypoint` (`[]`) clears the image Entrypoint but keeps the image Cmd, unless a
  command (even an empty one) is given.
- `[""]` (what `--entrypoint ""` sends) counts as set while merging (so the image Cmd is dropped) and is
  then reset to no entrypoint at all.
- `command` replaces the image Cmd; an empty `command` clears it.
- No entrypoint and no command left is an error ("no command specified").

The Compose loader has already shell-split string forms into lists; the shell form of a Dockerfile
(`CMD echo hi`) is stored in the image as `["/bin/sh", "-c", "echo hi"]`, which `shell_form` builds.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import InvalidCommand

DEFAULT_SHELL: tuple[str, ...] = ("/bin/sh", "-c")

Words = Sequence[str] | None


def shell_form(text: str, shell: Sequence[str] | None = None) -> tuple[str, ...]:
    """A shell-form instruction (Dockerfile `CMD echo hi`, healthcheck CMD-SHELL) as exec-form argv."""
    return (*(shell or DEFAULT_SHELL), text)


def merge(
    image_entrypoint: Words, image_cmd: Words, entrypoint: Words, command: Words
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(entrypoint, cmd) after Docker's merge of the service's values over the image's."""
    if entrypoint is None:
        final_entry = tuple(image_entrypoint or ())
        final_cmd = tuple(image_cmd or ()) if command is None else tuple(command)
    elif len(entrypoint) == 0:
        final_entry = ()
        final_cmd = tuple(image_cmd or ()) if command is None else tuple(command)
    else:
        final_entry = tuple(entrypoint)
        final_cmd = tuple(command or ())
    if final_entry == ("",):
        final_entry = ()
    return final_entry, final_cmd


def resolve_args(
    image_entrypoint: Words,
    image_cmd: Words,
    entrypoint: Words = None,
    command: Words = None,
    *,
    subject: str | None = None,
) -> tuple[str, ...]:
    """The full argv (entrypoint + cmd) to execve; raises InvalidCommand when nothing is left to run."""
    final_entry, final_cmd = merge(image_entrypoint, image_cmd, entrypoint, command)
    args = final_entry + final_cmd
    if not args:
        raise InvalidCommand("no command specified", subject=subject)
    if args[0] == "":
        raise InvalidCommand("the executable to run is an empty string", subject=subject)
    return args
