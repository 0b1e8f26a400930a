"""engine.frozen: the shared-method frozen dataclass behaves as `@dataclass(frozen=True, slots=True)`."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from dataclasses import field

import pytest

from engine.frozen import frozen


@frozen
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False, repr=False)


@frozen
class Point3(Point):
    z: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    x: int
    y: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False, repr=False)


@frozen
class Checked:
    n: int
    seen: list[int] = field(default_factory=list, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")
        self.seen.append(self.n)


@frozen
class Custom:
    a: int

    def __repr__(self) -> str:
        return "custom"


def test_arguments_defaults_and_factories_as_a_dataclass() -> None:
    for cls in (Point, Reference):
        assert (cls(1).x, cls(1).y, cls(1).tags) == (1, 0, ())
        assert cls(1, 2, ("a",)).tags == ("a",)
        assert cls(y=5, x=1).y == 5
        with pytest.raises(TypeError):
            cls()  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            cls(1, x=2)  # type: ignore[misc]
        with pytest.raises(TypeError):
            cls(1, nope=2)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            cls(1, 2, (), "", "extra")  # type: ignore[call-arg]
    assert Checked(1).seen is not Checked(1).seen  # one factory call per object


def test_repr_equality_and_hash_follow_the_field_options() -> None:
    assert repr(Point(1, 2, note="hidden")) == "Point(x=1, y=2, tags=())"
    assert repr(Reference(1, 2, note="hidden")) == "Reference(x=1, y=2, tags=())"
    assert Point(1, 2, note="a") == Point(1, 2, note="b")  # compare=False
    assert hash(Point(1, 2, note="a")) == hash(Point(1, 2, note="b"))
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != Point3(1)  # equal only within one class, like dataclass
    assert Point(1) != (1, 0, ())
    assert len({Point(1), Point(1), Point(2)}) == 2
    assert repr(Custom(1)) == "custom"  # a method of the class body wins


def test_assignment_and_deletion_are_refused() -> None:
    p = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.other = 1  # type: ignore[attr-defined]  # slots: no new attributes either
    assert not hasattr(p, "__dict__")


def test_dataclass_tools_still_work() -> None:
    p = Point3(1, 2, z=3)
    assert [f.name for f in dataclasses.fields(p)] == ["x", "y", "tags", "note", "z"]
    assert dataclasses.replace(p, y=9) == Point3(1, 9, z=3)
    assert dataclasses.asdict(p) == {"x": 1, "y": 2, "tags": (), "note": "", "z": 3}
    assert Point3.__match_args__ == ("x", "y", "tags", "note", "z")
    match p:
        case Point3(1, 2, z=z):
            assert z == 3
        case _:
            pytest.fail("no match")


def test_post_init_and_fields_outside_init() -> None:
    assert Checked(3).seen == [3]
    with pytest.raises(ValueError):
        Checked(-1)


def test_pickle_and_copy_give_equal_objects() -> None:
    p = Point3(1, 2, ("t",), "n", 4)
    for other in (pickle.loads(pickle.dumps(p)), copy.copy(p), copy.deepcopy(p)):
        assert other == p and other.note == "n" and type(other) is Point3
