"""The slot table's rules, on fabricated requests and clocks."""

from __future__ import annotations

import pytest

from fluvial.concurrency._table import LimitSpec, Request, SlotTable

A = LimitSpec("a", 2)
B = LimitSpec("b", 1)


def _req(rid: str, *specs: LimitSpec, occupy: int = 1, holder: str = "h") -> Request:
    return Request(rid, specs, occupy, "concurrency", holder)


def test_all_or_nothing_over_several_limits() -> None:
    table = SlotTable()
    assert table.offer(_req("1", B), 0.0)
    assert not table.offer(_req("2", A, B), 0.0)
    assert table.occupied("a", 0.0) == 0  # nothing of "a" taken while "b" is full
    assert table.release("1", 0.0) == ["2"]
    assert table.occupied("a", 0.0) == 1
    assert table.occupied("b", 0.0) == 1


def test_a_waiter_is_never_overtaken_on_its_limit() -> None:
    table = SlotTable()
    assert table.offer(_req("1", A), 0.0)
    assert not table.offer(_req("big", A, occupy=2), 0.0)
    # One slot is free, but the earlier waiter needs two: the newcomer queues behind it.
    assert not table.offer(_req("small", A), 0.0)
    assert table.release("1", 0.0) == ["big"]
    assert table.release("big", 0.0) == ["small"]


def test_unrelated_limits_do_not_wait_on_each_other() -> None:
    table = SlotTable()
    assert table.offer(_req("1", B), 0.0)
    assert not table.offer(_req("2", B), 0.0)
    assert table.offer(_req("3", A), 0.0)


def test_decay_is_continuous() -> None:
    table = SlotTable()
    spec = LimitSpec("r", 2, slot_decay_per_second=0.5)
    for rid in "12":
        assert table.offer(Request(rid, (spec,), 1, "rate_limit", "h"), 0.0)
    assert not table.offer(Request("3", (spec,), 1, "rate_limit", "h"), 0.0)
    # Many updates less than a second apart still add up (Prefect floors each one to zero).
    for step in range(1, 20):
        table.grant(step * 0.1)
    assert table.queue
    assert table.grant(2.0) == ["3"]
    assert table.wait_hint(Request("4", (spec,), 1, "rate_limit", "h"), 2.0) == pytest.approx(2.0)


def test_dead_holder_and_expired_leases_are_dropped() -> None:
    table = SlotTable()
    assert table.offer(_req("1", B, holder="dead"), 0.0)
    assert not table.offer(_req("2", B, holder="alive"), 0.0)
    assert table.drop_holder("dead", 1.0) == ["2"]
    table.leases["2"].expires = 5.0
    assert not table.offer(_req("3", B), 1.0)
    assert table.expire(4.9) == []
    assert table.expire(5.0) == ["3"]


def test_round_trips_through_json() -> None:
    table = SlotTable()
    table.offer(_req("1", A), 0.0)
    table.offer(_req("2", B), 0.0)
    table.offer(_req("3", B), 0.0)
    again = SlotTable.from_json(table.to_json())
    assert again.to_json() == table.to_json()
    assert again.release("2", 0.0) == ["3"]
