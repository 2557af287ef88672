"""fluvial: Prefect 3's flows and tasks, embedded, with no server and no database.

Importing fluvial starts nothing, reads no configuration and imports no optional backend.
"""

from __future__ import annotations

__all__ = (
    "Flow",
    "State",
    "Task",
    "__version__",
    "allow_failure",
    "flow",
    "get_run_logger",
    "quote",
    "tags",
    "task",
    "unmapped",
)

from .annotations import allow_failure, quote, unmapped
from .context import tags
from .flows import Flow, flow
from .logging import get_run_logger
from .states import State
from .tasks import Task, task

__version__ = "0.1.0"
