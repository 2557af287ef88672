"""Wrappers that change how a task argument is treated: mapped, resolved or left alone.

Each is a one-item tuple, so it pickles and compares like its content; ``unwrap()`` gives the
content back.
"""

from __future__ import annotations

__all__ = ("BaseAnnotation", "allow_failure", "opaque", "quote", "unmapped")

from typing import Any, Generic, TypeVar

T = TypeVar("T")


class BaseAnnotation(tuple[T], Generic[T]):
    """Base of the argument annotations: a tuple holding exactly one value."""

    __slots__ = ()

    def __new__(cls, value: T) -> BaseAnnotation[T]:
        return super().__new__(cls, (value,))

    def __getnewargs__(self) -> tuple[T]:
        return (self[0],)

    def unwrap(self) -> T:
        """Return the wrapped value."""
        value: T = self[0]
        return value

    def rewrap(self, value: T) -> BaseAnnotation[T]:
        """Return the same annotation around another value."""
        return type(self)(value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self[0]!r})"


class unmapped(BaseAnnotation[T]):
    """Pass this argument whole to every call of ``Task.map``, rather than mapping over it."""

    __slots__ = ()

    def __getitem__(self, _index: Any) -> T:  # type: ignore[override]
        # Indexing returns the value whatever the index: it behaves like an endless list.
        value: T = super().__getitem__(0)
        return value


class allow_failure(BaseAnnotation[T]):
    """Run the downstream task even if this upstream failed; it receives the exception."""

    __slots__ = ()


class quote(BaseAnnotation[T]):
    """Pass this argument as it is: no futures inside it are resolved or waited on."""

    __slots__ = ()


class opaque(BaseAnnotation[T]):
    """Resolve a top-level future or state, but don't look inside the resulting value."""

    __slots__ = ()
