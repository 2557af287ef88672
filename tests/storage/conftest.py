"""Storage fixtures: a fresh process-wide record cache for every storage test.

The moto S3 server (``s3_server``) is shared with the rest of the suite from tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fluvial.storage import clear_memory_cache


@pytest.fixture(autouse=True)
def _fresh_memory_cache() -> Iterator[None]:
    """Start every storage test with an empty process-wide record cache."""
    clear_memory_cache()
    yield
    clear_memory_cache()
