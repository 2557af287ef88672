"""The package surface: cheap import, exports that exist and are documented, the exception tree."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap

import pytest

import fluvial.exceptions

PUBLIC_MODULES = [
    "fluvial",
    "fluvial.annotations",
    "fluvial.context",
    "fluvial.exceptions",
    "fluvial.flows",
    "fluvial.futures",
    "fluvial.logging",
    "fluvial.runners",
    "fluvial.runtime",
    "fluvial.states",
    "fluvial.tasks",
]


def test_import_is_cheap_and_starts_nothing() -> None:
    script = textwrap.dedent(
        """
        import sys, threading
        before = set(sys.modules)
        import fluvial
        loaded = set(sys.modules) - before
        heavy = {"dask", "distributed", "ray", "s3fs", "fsspec", "pydantic", "asyncio", "anyio"}
        print(sorted(heavy & {name.split(".")[0] for name in loaded}))
        print(threading.active_count())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]", f"import fluvial loaded heavy modules: {out[0]}"
    assert out[1] == "1", "import fluvial started a thread"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_names_exist_and_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported, f"{module_name} has no __all__"
    assert module.__doc__, f"{module_name} has no docstring"
    for name in exported:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, f"{module_name}.{name} has no docstring"


def test_exception_tree() -> None:
    exc = fluvial.exceptions
    for name in exc.__all__:
        cls = getattr(exc, name)
        if name in ("TerminationSignal",):
            assert issubclass(cls, BaseException)
            assert not issubclass(cls, Exception)
        else:
            assert issubclass(cls, exc.FluvialError), name
    assert issubclass(exc.ParameterTypeError, TypeError)
    assert issubclass(exc.TaskRunTimeoutError, TimeoutError)
    assert issubclass(exc.MissingExtraError, ImportError)
    assert exc.PrefectException is exc.FluvialError
    assert "pip install 'fluvial[dask]'" in str(exc.MissingExtraError("DaskTaskRunner", "dask"))
    # The tree drawn in the module docstring names every class.
    for name in exc.__all__:
        if name != "PrefectException":
            assert name in (exc.__doc__ or "") or name.replace("Run", "") in (exc.__doc__ or "")
