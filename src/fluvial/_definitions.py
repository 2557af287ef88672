"""What ``Task`` and ``Flow`` share as decorated definitions: options, copies and hooks."""

from __future__ import annotations

__all__ = ("Definition", "NotSet", "StateHook", "check_reserved", "hook_list")

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Self

from .exceptions import DefinitionError, ReservedArgumentError

StateHook = Callable[..., Any]

_RESERVED = ("return_state", "wait_for")


class _NotSet:
    """Marks an option that was not given, where None is a meaningful value."""

    _instance: _NotSet | None = None

    def __new__(cls) -> _NotSet:  # noqa: PYI034 - a singleton, not a subclass-friendly new
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NotSet"

    def __bool__(self) -> bool:
        return False


NotSet: Any = _NotSet()


def check_reserved(fn: Callable[..., Any], kind: str) -> None:
    """Refuse a function with a parameter named like fluvial's call options."""
    params = inspect.signature(fn).parameters
    for name in _RESERVED:
        if name in params:
            raise ReservedArgumentError(
                f"{kind} {fn.__qualname__!r} has a parameter named {name!r}, which fluvial "
                f"reserves for its call API (return_state=, wait_for=); rename the parameter"
            )


def hook_list(value: Iterable[StateHook] | None, name: str) -> list[StateHook]:
    """Return the hooks as a list, refusing anything that is not callable."""
    hooks = list(value or [])
    for hook in hooks:
        if not callable(hook):
            raise DefinitionError(f"{name} hooks must be callables, got {hook!r}")
    return hooks


class Definition:
    """Base of Task and Flow: the options they were made with, and hook registration."""

    fn: Callable[..., Any]
    _options: dict[str, Any]

    def with_options(self, **options: Any) -> Self:
        """Return a copy with some options changed (the decorator's option names).

        A new ``tags`` replaces the old tags rather than adding to them, as in Prefect.
        """
        unknown = set(options) - set(self._options)
        if unknown:
            raise DefinitionError(
                f"with_options() got unknown option(s) {sorted(unknown)}; "
                f"valid options: {sorted(self._options)}"
            )
        merged = {**self._options, **{k: v for k, v in options.items() if v is not NotSet}}
        return type(self)(self.fn, **merged)  # type: ignore[call-arg]

    def _register(self, kind: str, fn: StateHook) -> StateHook:
        hooks: list[StateHook] = getattr(self, f"{kind}_hooks")
        hooks.append(fn)
        return fn

    def on_completion(self, fn: StateHook) -> StateHook:
        """Register *fn* to run when a run completes (use as a decorator)."""
        return self._register("on_completion", fn)

    def on_failure(self, fn: StateHook) -> StateHook:
        """Register *fn* to run when a run fails (use as a decorator)."""
        return self._register("on_failure", fn)

    def on_running(self, fn: StateHook) -> StateHook:
        """Register *fn* to run when a run starts an attempt (use as a decorator)."""
        return self._register("on_running", fn)
