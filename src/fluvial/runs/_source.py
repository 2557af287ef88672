"""Where a flow's code lives, recorded so that another process can import it again.

A flow defined in an importable module is recorded as ``"package.module:function"``. A flow
defined in a script run as ``__main__`` (``python flows.py``) is recorded by the script's
absolute path, ``"/abs/path/flows.py:function"``: the name ``__main__`` means nothing to
another process. The source file is recorded too, as a fallback when the module name is not
importable where the run is resumed.
"""

from __future__ import annotations

__all__ = ("import_path_of", "load_flow")

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

from ..exceptions import FlowImportError

# Names of the modules :func:`load_flow` made from script files: private to this process, so a
# flow defined in one (a subflow of a resumed run) is recorded by its file's path.
_from_files: set[str] = set()


def import_path_of(fn: Any) -> tuple[str, str | None]:
    """Return ``(import path, absolute source file or None)`` for a flow's function."""
    module_name: str = fn.__module__
    module = sys.modules.get(module_name)
    source = getattr(module, "__file__", None)
    source = os.path.abspath(source) if source else None
    if module_name in _from_files and source is not None:
        return f"{source}:{fn.__qualname__}", source
    if module_name == "__main__":
        spec = getattr(module, "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            module_name = spec.name  # run with `python -m package.module`
        elif source is not None:
            return f"{source}:{fn.__qualname__}", source
    return f"{module_name}:{fn.__qualname__}", source


def load_flow(import_path: str, source_file: str | None, flow_name: str) -> Any:
    """Import the flow recorded as *import_path* and return the Flow object.

    Raises:
        FlowImportError: the module or file cannot be imported, or holds no such flow.
    """
    where, _, qualname = import_path.rpartition(":")
    if not where or not qualname:
        raise FlowImportError(f"recorded import path {import_path!r} is not 'module:function'")
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _load_file(where, import_path)
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:
            if source_file and os.path.exists(source_file):
                module = _load_file(source_file, import_path)
            else:
                raise FlowImportError(
                    f"cannot import the flow recorded as {import_path!r}: {type(exc).__name__}: "
                    f"{exc}. Resume from an environment where {where!r} is importable (install "
                    "the project, or set PYTHONPATH)"
                ) from exc
    return _find_flow(module, qualname, flow_name, import_path)


def _loaded(path: str) -> ModuleType | None:
    """Return the module already loaded from *path* (``__main__`` included), if any."""
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if source and os.path.abspath(source) == path:
            return module
    return None


def _load_file(path: str, import_path: str) -> ModuleType:
    already = _loaded(os.path.abspath(path))
    if already is not None:
        # Resuming from the script that defined the flow: running it again would re-run it.
        return already
    if not os.path.isfile(path):
        raise FlowImportError(
            f"cannot import the flow recorded as {import_path!r}: {path} does not exist here. "
            "Resume on a machine where the script is at the same path"
        )
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"fluvial_resumed_{stem.replace('-', '_').replace('.', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowImportError(f"cannot import the flow recorded as {import_path!r} from {path}")
    module = importlib.util.module_from_spec(spec)
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)  # as when the script ran: its siblings are importable
    _execute(spec, module, import_path)
    import cloudpickle

    # Workers of the process, Dask and Ray runners cannot import this module by its name:
    # its functions travel by value.
    cloudpickle.register_pickle_by_value(module)
    return module


def _execute(spec: Any, module: ModuleType, import_path: str) -> None:
    sys.modules[module.__name__] = module
    _from_files.add(module.__name__)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module.__name__]
        _from_files.discard(module.__name__)
        raise FlowImportError(
            f"cannot import the flow recorded as {import_path!r}: running {spec.origin} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _find_flow(module: ModuleType, qualname: str, flow_name: str, import_path: str) -> Any:
    from ..flows import Flow

    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if isinstance(found, Flow) and found.name == flow_name:
        return found
    # A flow made with .with_options(name=...) shares the function but not the name.
    for value in vars(module).values():
        if isinstance(value, Flow) and value.name == flow_name and _same_fn(value, qualname):
            return value
    if isinstance(found, Flow):
        return found
    raise FlowImportError(
        f"the flow recorded as {import_path!r} (named {flow_name!r}) is not in "
        f"{module.__name__!r} any more: was it renamed or moved?"
    )


def _same_fn(flow: Any, qualname: str) -> bool:
    return getattr(flow.fn, "__qualname__", None) == qualname
