"""What runs on a Dask worker for the Dask runner: one task run's engine per Dask task.

The flow process sends :func:`run_on_worker` with the run's name, the pickled task and flow
context (with their digests, so each worker unpickles them once) and the run's own message.
Upstream runs of the same runner travel as Dask futures among the Dask task's arguments; Dask
resolves them to their replies (pickled final states) before the call, and the payload refers
to them by :class:`Slot`.
"""

from __future__ import annotations

__all__ = ("Slot", "run_on_worker", "substitute")

import pickle
from collections.abc import Callable
from typing import Any

from ..annotations import BaseAnnotation, quote
from ..engine.resolve import resolve_parameters
from ..exceptions import SerializationError, UpstreamTaskError
from ..futures import FutureList
from ..states import Failed, NotReady
from ._ray_engine import outcome_reply, run_engine
from ._ray_worker import upstream_state
from ._shipping import unpack

_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex})
_SEQUENCES = (list, tuple, set, frozenset)


class Slot:
    """Stands, in a payload, for the upstream outcome passed as extra argument number *index*."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def substitute(value: Any, leaf_type: type, leaf: Callable[[Any], Any]) -> Any:
    """Return *value* with each *leaf_type* inside replaced by ``leaf(item)``; rebuilt only
    where something changed. Quoted values are left alone, as the resolver leaves them."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, leaf_type):
        return leaf(value)
    if isinstance(value, quote):
        return value
    if isinstance(value, BaseAnnotation):
        inner = value.unwrap()
        new = substitute(inner, leaf_type, leaf)
        return value if new is inner else value.rewrap(new)
    if kind is dict:
        items = {key: substitute(item, leaf_type, leaf) for key, item in value.items()}
        return value if all(items[key] is value[key] for key in value) else items
    if kind is FutureList or kind in _SEQUENCES:
        rebuilt = [substitute(item, leaf_type, leaf) for item in value]
        if all(a is b for a, b in zip(rebuilt, value, strict=True)):
            return value
        return rebuilt if kind is FutureList else kind(rebuilt)
    return value


def run_on_worker(header: bytes, *upstream: bytes) -> bytes:
    """Run one task run on a Dask worker; *upstream* are the replies its slots refer to.

    *header* holds, plainly pickled, the run's name, the task and flow context (each pickled
    once per runner, see :mod:`fluvial.runners._shipping`) and the run's own message: one
    bytes argument, which Dask passes along cheaper than several. The reply is the one the
    Ray runner's workers send (see :func:`~fluvial.runners._ray_engine.run_engine`): the final
    state as plain values, which pickle and travel several times cheaper than the state.
    """
    run_name, task, context, message = pickle.loads(header)  # bytes and str only
    try:
        payload, wait_for = unpack((task[0], lambda: task[1]), context, message)
    except Exception as exc:
        error = SerializationError(
            f"task run {run_name!r} could not be unpickled on the Dask worker: "
            f"{type(exc).__name__}: {exc}. The task's module must be importable on the workers "
            "(install it there), or be registered with cloudpickle.register_pickle_by_value."
        )
        return outcome_reply(Failed(data=error, message=str(error)), run_name)
    if upstream:
        states = [upstream_state(reply) for reply in upstream]
        payload.parameters = substitute(payload.parameters, Slot, lambda s: states[s.index])
        wait_for = substitute(wait_for, Slot, lambda s: states[s.index])
    if wait_for:
        try:
            resolve_parameters({}, wait_for)
        except UpstreamTaskError as exc:
            return outcome_reply(NotReady(message=str(exc)), run_name)
    return run_engine(payload, context[0])
