"""Find the flow that ``fluvial run`` names: ``path/to/file.py:flow`` or ``package.module:flow``.

A file is run as a module of its own (its ``if __name__ == "__main__":`` block does not run)
with its directory first on ``sys.path``, as ``python file.py`` would have it, so its sibling
imports work; its functions are pickled by value, so process, Dask and Ray workers need not
import it. A module is imported with the current directory on ``sys.path``, as ``python -m``
does. Every failure is a :class:`CommandError` naming the file or module and what to do.
"""

from __future__ import annotations

__all__ = ("load_flow", "parse_parameters", "text_parameters")

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Collection
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

from ..flows import Flow
from ._output import CommandError, one_line

_EXAMPLE = "fluvial run path/to/file.py:my_flow, or fluvial run package.module:my_flow"


def load_flow(target: str) -> Flow[..., Any]:
    """Return the flow *target* names (``FILE.py:NAME`` or ``MODULE:NAME``)."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise CommandError(f"{target!r} does not say which flow to run", hint=_EXAMPLE)
    if where.endswith(".py") or "/" in where or os.sep in where:
        module = _load_file(where)
    else:
        module = _import_module(where)
    return _find_flow(module, name, where)


def _failure(exc: BaseException, what: str) -> CommandError:
    # Point at the line of the user's code that raised, the one thing they need to look at.
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    if isinstance(exc, ImportError) and "relative import" in str(exc):
        hint = "the file belongs to a package: run it as package.module:my_flow from its root"
    elif what.endswith(".py"):
        hint = f"fix the error, then check it with: python {what}"
    else:
        hint = f"fix the error, then check it with: python -c 'import {what}'"
    return CommandError(
        f"importing {what} failed: {type(exc).__name__}: {one_line(exc)}{where}", hint=hint
    )


def _module_name(path: Path) -> str:
    # The file's own name, as `python -c "import stem"` beside it would give, unless that name
    # is taken: by a module already imported (a file named json.py) or by another importable
    # module, which a resume (that imports the recorded "stem:flow") would pick up instead.
    stem = path.stem
    if stem.isidentifier() and stem not in sys.modules and not _importable(stem):
        return stem
    digest = hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()
    return f"_fluvial_file_{stem if stem.isidentifier() else 'module'}_{digest}"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _load_file(where: str) -> ModuleType:
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise CommandError(
            f"no file {where} (looked for {path})",
            hint="give the path to a .py file, relative to the current directory",
        )
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CommandError(f"{where} cannot be imported as Python", hint=_EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise _failure(exc, where) from exc
    import cloudpickle

    cloudpickle.register_pickle_by_value(module)
    return module


def _import_module(name: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise CommandError(
                f"no module named {name!r} (from {cwd})",
                hint="run from the directory that contains it, set PYTHONPATH, "
                "or give a file: path/to/file.py:my_flow",
            ) from exc
        raise _failure(exc, name) from exc
    except Exception as exc:
        raise _failure(exc, name) from exc


def _flows_in(module: ModuleType) -> dict[str, Flow[..., Any]]:
    return {key: value for key, value in vars(module).items() if isinstance(value, Flow)}


def _find_flow(module: ModuleType, name: str, where: str) -> Flow[..., Any]:
    value: Any = module
    for part in name.split("."):
        value = getattr(value, part, None)
    if isinstance(value, Flow):
        return value
    flows = _flows_in(module)
    by_flow_name = [flow for flow in flows.values() if flow.name == name]
    if value is None and len(by_flow_name) == 1:
        return by_flow_name[0]  # the flow's name ("weather-report") instead of the function's
    known = ", ".join(sorted(flows)) or "none"
    if value is None:
        raise CommandError(f"{where} has no flow named {name!r}", hint=f"flows there: {known}")
    kind = "a function" if inspect.isfunction(value) else f"a {type(value).__name__}"
    raise CommandError(
        f"{name!r} in {where} is {kind}, not a flow",
        hint=f"decorate it with @flow; flows there: {known}",
    )


def _value(text: str) -> Any:
    import orjson

    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # not JSON: the string as typed


def text_parameters(flow: Flow[..., Any]) -> set[str]:
    """Return the names of the flow's parameters annotated ``str`` (or ``str | None``)."""
    try:
        signature = inspect.signature(flow.fn, eval_str=True)
    except Exception:  # an annotation that does not evaluate: read every value as JSON
        return set()
    text_types: tuple[Any, ...] = (str, str | None, Optional[str])  # noqa: UP045
    return {name for name, p in signature.parameters.items() if p.annotation in text_types}


def parse_parameters(
    params_json: str | None, pairs: list[str], text_names: Collection[str] = ()
) -> dict[str, Any]:
    """Return the flow parameters from ``--params JSON`` and ``--param k=v`` (which win).

    A ``--param`` value is read as JSON when it parses, except for the parameters in
    *text_names* (annotated ``str``), whose values are taken as typed: ``--param label=7``.
    """
    import orjson

    parameters: dict[str, Any] = {}
    if params_json is not None:
        try:
            parameters = orjson.loads(params_json)
        except orjson.JSONDecodeError as exc:
            raise CommandError(
                f"--params is not valid JSON: {exc}", hint="e.g. --params '{\"n\": 3}'"
            ) from exc
        if not isinstance(parameters, dict):
            raise CommandError(
                f"--params must be a JSON object, not {type(parameters).__name__}",
                hint="e.g. --params '{\"n\": 3}'",
            )
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--param expects NAME=VALUE, got {pair!r}", hint="e.g. --param n=3")
        key = key.strip()
        parameters[key] = text if key in text_names else _value(text)
    return parameters
