"""Bind call arguments to a function's parameters, and back, quickly.

Every task call binds its arguments into a ``parameters`` dict (what hooks, run names, cache
keys and ``runtime.task_run.parameters`` see) and later turns that dict back into a call.
``inspect.Signature.bind`` costs microseconds, so functions with only ordinary parameters get a
fast path; anything else (``*args``, ``**kwargs``, positional-only, keyword-only) uses
``inspect``.
"""

from __future__ import annotations

__all__ = ("CallSignature", "MethodBinding", "unwrap_method")

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from .exceptions import ParameterBindError

_EMPTY = inspect.Parameter.empty
_VAR_POSITIONAL = inspect.Parameter.VAR_POSITIONAL
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD
_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
_KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY


class CallSignature:
    """The parameters of one function, prepared for fast binding."""

    __slots__ = ("defaults", "label", "names", "nameset", "signature", "simple")

    def __init__(self, fn: Callable[..., Any], label: str) -> None:
        self.signature = inspect.signature(fn)
        self.label = label
        params = list(self.signature.parameters.values())
        self.names = tuple(p.name for p in params)
        self.nameset = frozenset(self.names)
        self.defaults = {p.name: p.default for p in params if p.default is not _EMPTY}
        self.simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return the parameters dict for a call with *args* and *kwargs*, defaults applied.

        Raises:
            ParameterBindError: the arguments do not fit the signature.
        """
        if not args and not kwargs and len(self.defaults) == len(self.names):
            return dict(self.defaults)  # nothing given and nothing required
        if self.simple and len(args) <= len(self.names):
            params = dict(zip(self.names, args, strict=False))
            for key, value in kwargs.items():
                if key in params or key not in self.nameset:
                    return self._slow_bind(args, kwargs)
                params[key] = value
            if len(params) < len(self.names):
                for name in self.names:
                    if name not in params:
                        if name not in self.defaults:
                            return self._slow_bind(args, kwargs)
                        params[name] = self.defaults[name]
            return params
        return self._slow_bind(args, kwargs)

    def _slow_bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterBindError(
                f"Error binding parameters for {self.label}: {exc}. "
                f"The signature is {self.label.split()[-1]}{self.signature}"
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def bind_partial(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return the parameters given by the call, without defaults (used by ``map``)."""
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError as exc:
            raise ParameterBindError(f"Error binding parameters for {self.label}: {exc}") from None
        return dict(bound.arguments)

    def to_call(self, parameters: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Return the ``(args, kwargs)`` that call the function with *parameters*."""
        if self.simple:
            return (), parameters
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self.signature.parameters.values():
            if param.name not in parameters:
                continue
            value = parameters[param.name]
            if param.kind is _VAR_POSITIONAL:
                args.extend(value)
            elif param.kind is _VAR_KEYWORD:
                kwargs.update(value)
            elif param.kind is _KEYWORD_ONLY:
                kwargs[param.name] = value
            elif param.kind is _POSITIONAL_ONLY or any(
                p.kind is _VAR_POSITIONAL for p in self.signature.parameters.values()
            ):
                args.append(value)
            else:
                kwargs[param.name] = value
        return tuple(args), kwargs

    def variadic_keyword(self) -> str | None:
        """Return the name of the ``**kwargs`` parameter, if the function has one."""
        for param in self.signature.parameters.values():
            if param.kind is _VAR_KEYWORD:
                return param.name
        return None


def unwrap_method(fn: Any) -> tuple[Callable[..., Any], str | None]:
    """Return the function inside a ``classmethod``/``staticmethod``, and which it was."""
    if isinstance(fn, classmethod):
        return fn.__func__, "class"
    if isinstance(fn, staticmethod):
        return fn.__func__, "static"
    return fn, None


class MethodBinding:
    """Binds a decorated function used as a method, the way functions bind in classes.

    The signature of the bound form is computed once and shared by every bound copy.
    """

    __slots__ = ("kind", "label", "signature")

    def __init__(self, kind: str | None, label: str) -> None:
        self.kind = kind
        self.label = label
        self.signature: CallSignature | None = None

    def target(self, instance: Any, owner: Any) -> Any:
        """Return what the function should be bound to, or None to stay unbound."""
        if self.kind == "static":
            return None
        if self.kind == "class":
            return owner if owner is not None else type(instance)
        return instance

    def bind(self, fn: Callable[..., Any], target: Any) -> tuple[Any, CallSignature]:
        """Return *fn* bound to *target*, and the bound signature."""
        import types

        bound = types.MethodType(fn, target)
        if self.signature is None:
            self.signature = CallSignature(bound, self.label)
        return bound, self.signature
