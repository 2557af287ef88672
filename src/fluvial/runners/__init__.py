"""Task runners: where submitted task runs execute.

``ThreadPoolTaskRunner`` (the default) is always available. The process, Dask and Ray runners
arrive with their own modules and extras.
"""

from __future__ import annotations

__all__ = ("ConcurrentTaskRunner", "TaskRunner", "ThreadPoolTaskRunner")

from .base import TaskRunner
from .thread import ConcurrentTaskRunner, ThreadPoolTaskRunner
