"""What runs on a Ray worker for the Ray runner: one task run's engine per Ray task.

The flow process calls :func:`remote_function` ``.remote(...)`` with the pickled task (inline,
or boxed as an ``ObjectRef`` when large), the pickled flow context, the run's own message and
the ``ObjectRef``s of its upstream runs. Ray resolves those to the upstreams' pickled outcomes
before the call; the payload refers to them by :class:`Upstream` index. The outcome goes back
as the process runner's workers send theirs: the final state taken apart into plain values,
pickled with the standard pickler where it can (cloudpickle where it must).
"""

from __future__ import annotations

__all__ = ("Upstream", "import_ray", "remote_function", "swap", "upstream_state")

import importlib
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..annotations import BaseAnnotation, quote
from ..engine.resolve import resolve_parameters
from ..exceptions import MissingExtraError, SerializationError, UpstreamTaskError
from ..futures import Future, FutureList
from ..states import Failed, NotReady, State, StateDetails
from ._process_worker import state_from_fields
from ._ray_engine import outcome_reply, run_engine
from ._shipping import unpack

if TYPE_CHECKING:
    from ._remote import TaskPayload

_ATOMIC = frozenset({int, float, str, bytes, bool, type(None), complex})
_SEQUENCES = (list, tuple, set, frozenset)
_RAY_FUNCTION: Any = None


def import_ray() -> Any:
    """Import Ray, or say which extra to install."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise MissingExtraError("RayTaskRunner", "ray") from exc


@dataclass(frozen=True, slots=True)
class Upstream:
    """Stands in the payload for the outcome of the Ray task argument at *index*."""

    index: int


def swap(value: Any, leaf: Callable[[Any], object]) -> Any:
    """Rebuild *value* with futures and placeholders replaced by ``leaf(...)``, the way the
    engine's resolver walks arguments (quoted values are left alone)."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if isinstance(value, Future | Upstream):
        return leaf(value)
    if isinstance(value, quote):
        return value
    if isinstance(value, BaseAnnotation):
        inner = value.unwrap()
        swapped = swap(inner, leaf)
        return value if swapped is inner else value.rewrap(swapped)
    if kind is dict:
        return {key: swap(item, leaf) for key, item in value.items()}
    if kind is FutureList:
        return [swap(item, leaf) for item in value]
    if kind in _SEQUENCES:
        return kind(swap(item, leaf) for item in value)
    return value


def remote_function(options: Mapping[str, object], name: str) -> Any:
    """Return the Ray remote function with these options (Ray's retries off by default).

    Raises:
        ValueError: Ray refused the options.
    """
    global _RAY_FUNCTION
    if _RAY_FUNCTION is None:
        _RAY_FUNCTION = import_ray().remote(run_on_worker)
    return _RAY_FUNCTION.options(**{"max_retries": 0, **options, "name": name})


def run_on_worker(header: bytes, *rest: Any) -> bytes:
    """The Ray task: run one task run's engine on this worker; return its pickled outcome.

    *header* holds the task's digest, the pickled task when small (else the first of *rest*
    is a list holding its ``ObjectRef``, fetched only by a worker that has not seen the task),
    the pickled flow context and the run's own message. The others of *rest* are the pickled
    outcomes of the upstream runs, resolved by Ray before the call. No argument stands empty:
    each costs Ray a serialization on both sides. The outcome is the reply of
    :func:`~fluvial.runners._ray_engine.run_engine`.
    """
    try:
        payload, wait_for, context_digest = _load(header, rest)
    except Exception as exc:
        error = SerializationError(
            f"the task run could not be unpickled on the Ray worker: {type(exc).__name__}: "
            f"{exc}. Workers must be able to import the task's module (install it on the "
            "cluster or ship it with a runtime_env), or register it with "
            "cloudpickle.register_pickle_by_value(module)."
        )
        return outcome_reply(Failed(data=error, message=str(error)), None)
    if wait_for:
        try:
            resolve_parameters({}, wait_for)
        except UpstreamTaskError as exc:
            details = StateDetails(task_run_id=payload.task_run_id)
            return outcome_reply(NotReady(message=str(exc), state_details=details), None)
    return run_engine(payload, context_digest)


def upstream_state(blob: bytes) -> State[Any]:
    """Return the final state in an upstream run's reply (see :func:`run_on_worker`)."""
    fields = pickle.loads(blob)[0]  # cloudpickle's output loads with the standard unpickler
    return state_from_fields(fields)


def _load(header: bytes, rest: tuple[Any, ...]) -> tuple[TaskPayload, list[Any], bytes]:
    digest, inline, context, message = pickle.loads(header)  # bytes only: plain pickle
    task_box, upstream = (None, rest) if inline is not None else (rest[0], rest[1:])

    def task_bytes() -> bytes:
        if inline is not None:
            return bytes(inline)
        assert task_box is not None
        data: bytes = import_ray().get(task_box[0])
        return data

    payload, wait_for = unpack((digest, task_bytes), context, message)
    if upstream:
        states = [upstream_state(item) for item in upstream]

        def fill(placeholder: Upstream) -> object:
            return states[placeholder.index]

        payload.parameters = {k: swap(v, fill) for k, v in payload.parameters.items()}
        wait_for = [swap(item, fill) for item in wait_for]
    return payload, wait_for, context[0]
