"""Durable runs: the run journal, resume by id, and inspection of past runs."""

from __future__ import annotations

__all__ = ("RunEvent", "add_listener")

from ._events import RunEvent, add_listener
