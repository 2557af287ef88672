"""Attributes of the current run, readable from anywhere: ``fluvial.runtime.flow_run.name``.

Outside a run the attributes are empty (None, {} or []) rather than errors, as in Prefect, and
an environment variable ``FLUVIAL__RUNTIME__FLOW_RUN__<ATTR>`` (or ``TASK_RUN``) overrides an
attribute, which is handy in tests.
"""

from __future__ import annotations

__all__ = ("deployment", "flow_run", "task_run")

from . import deployment, flow_run, task_run
