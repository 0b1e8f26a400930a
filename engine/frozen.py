"""`@frozen`: an immutable, slotted dataclass whose methods are shared functions, not generated code.

Why: on Python 3.11 `@dataclass(frozen=True, slots=True)` compiles six methods per class from source
text (`__init__`, `__repr__`, `__eq__`, `__hash__`, `__setattr__`, `__delattr__`); the ~100 such classes
the CLI imports spent 60-70 ms in `compile` at every start, a third of a no-op `pycompose up -d`. Here
the class is still made by `dataclasses.dataclass` (so `fields`, `replace`, `asdict`, `__match_args__`
and type checkers work as before, see `dataclass_transform`), but with those six methods switched off
and replaced by generic ones below that read the class's field table. Each instance costs a few
microseconds more to build; no caller creates enough of them to notice.

Behaviour kept from the dataclass: positional and keyword arguments with defaults and default
factories, `__post_init__`, `compare=False` / `repr=False` / `hash=` per field, equality only between
objects of the same class, hashing by the compared fields, `FrozenInstanceError` on assignment or
deletion, pickling and `copy`.
"""

from __future__ import annotations

import dataclasses
import reprlib
from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform

__all__ = ["frozen"]

T = TypeVar("T")

_MISSING = dataclasses.MISSING
_set = object.__setattr__


class _Table:
    """What the generic methods need of one class, computed once when the class is made."""

    __slots__ = ("compared", "hashed", "init", "late", "post_init", "shown")

    def __init__(self, cls: type) -> None:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        self.init = tuple((f.name, f.default, f.default_factory) for f in fields if f.init)
        self.late = tuple((f.name, f.default, f.default_factory) for f in fields if not f.init)
        self.compared = tuple(f.name for f in fields if f.compare)
        self.hashed = tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))
        self.shown = tuple(f.name for f in fields if f.repr)
        self.post_init = hasattr(cls, "__post_init__")


def _value(name: str, default: Any, factory: Any, cls: type) -> Any:
    if default is not _MISSING:
        return default
    if factory is not _MISSING:
        return factory()
    raise TypeError(f"{cls.__qualname__}.__init__() missing required argument: {name!r}")


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    table: _Table = cls.__frozen_table__
    if len(args) > len(table.init):
        raise TypeError(f"{cls.__qualname__}.__init__() takes {len(table.init)} positional arguments")
    for (name, _, _), value in zip(table.init, args, strict=False):
        if name in kwargs:
            raise TypeError(f"{cls.__qualname__}.__init__() got multiple values for argument {name!r}")
        _set(self, name, value)
    for name, default, factory in table.init[len(args) :]:
        _set(self, name, kwargs.pop(name) if name in kwargs else _value(name, default, factory, cls))
    if kwargs:
        raise TypeError(
            f"{cls.__qualname__}.__init__() got an unexpected keyword argument {next(iter(kwargs))!r}"
        )
    for name, default, factory in table.late:
        if default is not _MISSING or factory is not _MISSING:
            _set(self, name, _value(name, default, factory, cls))
    if table.post_init:
        self.__post_init__()


def _key(self: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in names)


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    names = type(self).__frozen_table__.compared
    return _key(self, names) == _key(other, names)


def _hash(self: Any) -> int:
    return hash(_key(self, type(self).__frozen_table__.hashed))


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).__frozen_table__.shown)
    return f"{type(self).__qualname__}({shown})"


def _refuse_set(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _refuse_delete(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, f.name) for f in dataclasses.fields(self)]


def _setstate(self: Any, state: list[Any]) -> None:
    for f, value in zip(dataclasses.fields(self), state, strict=True):
        _set(self, f.name, value)


_METHODS: dict[str, Callable[..., Any]] = {
    "__init__": _init,
    "__eq__": _eq,
    "__hash__": _hash,
    "__repr__": _repr,
    "__setattr__": _refuse_set,
    "__delattr__": _refuse_delete,
    "__getstate__": _getstate,
    "__setstate__": _setstate,
}


@dataclass_transform(frozen_default=True)
def frozen(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True, slots=True)` without per-class generated code (see the module doc).

    A method the class body defines itself (a custom `__repr__`, say) is kept, as with dataclass.
    """
    own = set(cls.__dict__)
    if cls.__dict__.get("__hash__", 0) is None and "__eq__" in own:
        own.discard("__hash__")  # Python's implicit None for a class with its own __eq__: hash as dataclass
    made = dataclasses.dataclass(cls, init=False, repr=False, eq=False, slots=True)
    made.__frozen_table__ = _Table(made)  # type: ignore[attr-defined]
    for name, method in _METHODS.items():
        if name not in own:
            setattr(made, name, method)
    return made
