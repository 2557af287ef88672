"""Every public storage name exists, is documented, and its public methods are too."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = [
    "fluvial.storage",
    "fluvial.storage.serializers",
    "fluvial.storage.records",
    "fluvial.storage.locks",
    "fluvial.storage.store",
    "fluvial.filesystems",
    "fluvial.testing",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_are_documented(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert module.__doc__, module_name
    for name in module.__all__:
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        assert value.__doc__, f"{module_name}.{name}"
        if inspect.isclass(value):
            for attr, member in vars(value).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    assert member.__doc__, f"{module_name}.{name}.{attr}"
