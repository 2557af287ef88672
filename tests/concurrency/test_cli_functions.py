"""The logic behind `fluvial limit ...`: limits kept in the active profile, holders from the file table."""

from __future__ import annotations

import pytest

from fluvial.concurrency import read_limit
from fluvial.concurrency._select import file_backend, use_backend
from fluvial.concurrency.cli import (
    limit_create,
    limit_delete,
    limit_inspect,
    limit_ls,
    limit_reset,
    limit_update,
)
from fluvial.concurrency.sync import concurrency
from fluvial.exceptions import ConcurrencyLimitNotFound, ConfigurationError
from fluvial.settings import get_current_settings


def test_create_update_delete_go_to_the_profile() -> None:
    limit_create("database", 5, slot_decay_per_second=1.0)
    assert get_current_settings().concurrency_limits == "database=5@1"
    assert read_limit("database").limit == 5  # this process reads the profile too
    limit_update("database", limit=10, active=False)
    assert get_current_settings().concurrency_limits == "~database=10@1"
    assert [(item.name, item.limit, item.active) for item in limit_ls()] == [
        ("database", 10, False)
    ]
    limit_delete("database")
    assert limit_ls() == []


def test_errors_name_the_limit() -> None:
    limit_create("x", 1)
    with pytest.raises(ConfigurationError, match="already exists"):
        limit_create("x", 2)
    with pytest.raises(ConcurrencyLimitNotFound, match="'nope'"):
        limit_update("nope", limit=1)
    with pytest.raises(ConfigurationError, match="not allowed"):
        limit_create("bad name", 1)


def test_inspect_and_reset_see_the_machine_table() -> None:
    limit_create("x", 2)
    with use_backend(file_backend()):
        held = concurrency("x")
        held.__enter__()  # left held, as by a stuck process
        assert limit_inspect("x").active_slots == 1
        assert len(limit_inspect("x").holders) == 1
        limit_reset("x")
        assert limit_inspect("x").active_slots == 0
