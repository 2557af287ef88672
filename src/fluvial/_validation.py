"""Validate and coerce flow parameters with pydantic, as Prefect's ``validate_parameters`` does.

pydantic is imported here, on the first call of a flow that has parameters, not when fluvial
is imported: it costs tens of milliseconds that a flow without parameters never pays.
"""

from __future__ import annotations

__all__ = ("ParameterValidator",)

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

from .exceptions import DefinitionError, ParameterTypeError


class ParameterValidator:
    """A pydantic model of one function's parameters."""

    def __init__(self, fn: Callable[..., Any], flow_name: str) -> None:
        import pydantic

        self.flow_name = flow_name
        signature = inspect.signature(fn)
        try:
            hints = get_type_hints(fn, include_extras=True)
        except Exception:  # one unresolvable name: resolve the others one by one
            hints = {name: _resolve(p.annotation, fn) for name, p in signature.parameters.items()}
        fields: dict[str, Any] = {}
        for param in signature.parameters.values():
            annotation = hints.get(param.name, Any)
            if annotation is inspect.Parameter.empty:
                annotation = Any
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                annotation = tuple[annotation, ...]  # type: ignore[valid-type]
            elif param.kind is inspect.Parameter.VAR_KEYWORD:
                annotation = dict[str, annotation]  # type: ignore[valid-type]
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (annotation, default)
        config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        try:
            self.model = pydantic.create_model(
                f"{flow_name}_parameters", __config__=config, **_safe_fields(fields)
            )
        except (pydantic.PydanticUserError, TypeError, NameError) as exc:
            raise DefinitionError(
                f"flow {flow_name!r} has parameter annotations pydantic cannot validate: {exc}. "
                "Pass validate_parameters=False to skip validation."
            ) from exc
        self._renamed = dict(_renames(fields).items())

    def validate(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Return coerced parameters.

        Raises:
            ParameterTypeError: a value cannot be coerced to its parameter's type.
        """
        import pydantic

        data = {self._renamed.get(k, k): v for k, v in parameters.items()}
        try:
            model = self.model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise ParameterTypeError(
                f"Flow run received invalid parameters for flow {self.flow_name!r}:\n"
                + "\n".join(_describe(error) for error in exc.errors())
            ) from None
        return {name: getattr(model, self._renamed.get(name, name)) for name in parameters}


def _resolve(annotation: Any, fn: Callable[..., Any]) -> Any:
    """Evaluate one string annotation in the function's namespace; Any when it can't be."""
    if not isinstance(annotation, str):
        return annotation
    namespace = dict(getattr(fn, "__globals__", {}))
    closure = getattr(fn, "__closure__", None) or ()
    for name, cell in zip(fn.__code__.co_freevars, closure, strict=False):
        try:
            namespace[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    try:
        return eval(annotation, namespace)
    except Exception:
        return Any


def _renames(fields: dict[str, Any]) -> dict[str, str]:
    # pydantic refuses field names with a leading underscore or that shadow BaseModel
    # attributes; such parameters are validated under another name.
    import pydantic

    reserved = set(dir(pydantic.BaseModel))
    return {
        name: f"param__{name.lstrip('_')}"
        for name in fields
        if name.startswith("_") or name in reserved
    }


def _safe_fields(fields: dict[str, Any]) -> dict[str, Any]:
    renames = _renames(fields)
    return {renames.get(name, name): spec for name, spec in fields.items()}


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "(parameters)"
    return f"  - {where}: {error.get('msg')} (got {error.get('input')!r})"
