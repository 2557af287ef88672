"""Readable random flow run names such as ``amber-otter``."""

from __future__ import annotations

__all__ = ("random_run_name",)

import random

_ADJECTIVES = (
    "amber",
    "brisk",
    "calm",
    "dapper",
    "eager",
    "fuzzy",
    "gentle",
    "hardy",
    "icy",
    "jolly",
    "keen",
    "lively",
    "mellow",
    "nimble",
    "olive",
    "proud",
    "quiet",
    "rapid",
    "silver",
    "tidy",
    "umber",
    "vivid",
    "witty",
    "young",
    "zesty",
    "bold",
    "crisp",
    "dusky",
    "fleet",
    "golden",
)
_NOUNS = (
    "otter",
    "heron",
    "beaver",
    "salmon",
    "kingfisher",
    "delta",
    "eddy",
    "rapids",
    "estuary",
    "willow",
    "reed",
    "pike",
    "trout",
    "weir",
    "meander",
    "oxbow",
    "brook",
    "current",
    "ferry",
    "lock",
    "marsh",
    "newt",
    "osprey",
    "pebble",
    "riffle",
    "sandbar",
    "tributary",
    "wader",
)


def random_run_name() -> str:
    """Return a random ``adjective-noun`` name for a flow run."""
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}"
