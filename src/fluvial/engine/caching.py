"""Cache keys, lookups and result persistence for one task run.

The task engine asks :func:`plan_results` once per run. A task that neither persists nor
caches gets None and pays nothing more. Otherwise the plan holds the run's cache key and result
store; the engine performs :class:`CacheLookup` before the first attempt and
:class:`PersistResult` after a success, as effects, so async runs do storage I/O on a worker
thread instead of blocking the event loop.

Rules (Prefect 3's, see docs/porting-from-prefect.md for the differences):

- persistence is on when the task says so, else when the flow says so, else per the
  ``results_persist_by_default`` setting; an explicit cache policy, ``cache_key_fn``,
  ``result_storage``, ``result_serializer`` or ``result_storage_key`` turns it on (decided at
  decoration, in ``Task``);
- the key comes from the task's cache policy, or from ``result_storage_key`` rendered with the
  run's parameters and runtime attributes;
- an input that cannot be hashed makes the run uncached, with one warning naming the task and
  parameter (or an error, with ``tasks_unhashable_inputs="error"``);
- a corrupt or unreadable record is a miss with a warning and is overwritten by this run;
- under SERIALIZABLE isolation, the key is locked from lookup to persist, so concurrent runs of
  one key execute once and the others read that result.
"""

from __future__ import annotations

__all__ = (
    "CacheLookup",
    "PersistResult",
    "PersistedResult",
    "ResultPlan",
    "persists",
    "plan_flow_results",
    "plan_results",
)

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._config import run_config
from ..exceptions import ConfigurationError, CorruptRecordError, ResultNotFound
from .effects import Effect

if TYPE_CHECKING:
    from .._runs import TaskRun
    from ..context import FlowRunContext, TaskRunContext
    from ..storage import ResultRecord, ResultStore
    from ..tasks import Task

_logger = logging.getLogger("fluvial.engine.caching")


class PersistedResult:
    """A task or flow result that lives in a result store, and maybe also in memory.

    States hold one of these as their data. Pickling drops the in-memory value, so a state
    sent to another process carries only the reference, and ``state.result()`` there reads the
    value back from storage.
    """

    __slots__ = ("_has_value", "_value", "key", "store")

    def __init__(self, store: ResultStore, key: str, value: Any, keep_value: bool) -> None:
        self.store = store
        self.key = key
        self._value = value if keep_value else None
        self._has_value = keep_value

    def __fluvial_result__(self) -> Any:
        """Return the value, reading it from the store if it is not held in memory."""
        if self._has_value:
            return self._value
        record = self.store.read(self.key)
        return record.result

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.store = state["store"]
        self.key = state["key"]
        self._value = None
        self._has_value = False

    def __repr__(self) -> str:
        return f"PersistedResult({self.store.url_for(self.key)!r})"


class ResultPlan:
    """Where and under which key one task run's result is looked up and persisted."""

    __slots__ = ("expiration", "holder", "keep_in_memory", "key", "lock", "refresh", "store")

    def __init__(
        self,
        store: ResultStore,
        key: str | None,
        *,
        refresh: bool,
        expiration: datetime | None,
        keep_in_memory: bool,
        lock: bool,
        holder: str,
    ) -> None:
        self.store = store
        self.key = key
        self.refresh = refresh
        self.expiration = expiration
        self.keep_in_memory = keep_in_memory
        self.lock = lock and key is not None
        self.holder = holder

    def lookup(self) -> ResultRecord | None:
        """Return the cached record for this run's key, or None on a miss (reason logged)."""
        if self.key is None:
            return None
        if self.lock:
            self.store.acquire_lock(self.key, holder=self.holder)
        if self.refresh:
            _logger.debug("cache miss for %s: refresh requested", self._where())
            return None
        try:
            return self.store.read(self.key, holder=self.holder if self.lock else None)
        except ResultNotFound as exc:
            _logger.debug("cache miss for %s: %s", self._where(), exc)
        except CorruptRecordError as exc:
            _logger.warning(
                "the cached record at %s is unreadable (%s); running the task and overwriting it",
                self._where(),
                exc,
            )
        return None

    def persist(self, value: Any) -> PersistedResult:
        """Write *value* under this run's key (a fresh one if the policy gave none)."""
        key = self.key if self.key is not None else uuid.uuid4().hex
        record = self.store.create_result_record(value, key=key, expiration=self.expiration)
        self.store.persist_result_record(record, holder=self.holder if self.lock else None)
        return PersistedResult(self.store, key, value, self.keep_in_memory)

    def release(self) -> None:
        """Release the SERIALIZABLE lock, if this run holds it."""
        if self.lock and self.key is not None and self.store.is_lock_holder(self.key, self.holder):
            self.store.release_lock(self.key, holder=self.holder)

    def _where(self) -> str:
        return self.store.url_for(self.key) if self.key is not None else "(no key)"


class CacheLookup(Effect):
    """Look the run's key up in its result store."""

    __slots__ = ("plan",)

    def __init__(self, plan: ResultPlan) -> None:
        self.plan = plan

    def run_sync(self) -> ResultRecord | None:
        """Read from storage in this thread."""
        return self.plan.lookup()

    async def run_async(self) -> ResultRecord | None:
        """Read from storage on a worker thread."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.plan.lookup)


class PersistResult(Effect):
    """Persist a successful run's value."""

    __slots__ = ("plan", "value")

    def __init__(self, plan: ResultPlan, value: Any) -> None:
        self.plan = plan
        self.value = value

    def run_sync(self) -> PersistedResult:
        """Write in this thread."""
        return self.plan.persist(self.value)

    async def run_async(self) -> PersistedResult:
        """Write on a worker thread."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.plan.persist, self.value)


def plan_flow_results(flow: Any) -> ResultPlan:
    """Return where a flow run's result is persisted (under a fresh key)."""
    from ..storage import ResultStore, resolve_result_store

    config = run_config()
    serializer = flow.result_serializer
    if serializer is None and not isinstance(flow.result_storage, ResultStore):
        serializer = config.results_default_serializer  # a ResultStore keeps its own
    store = resolve_result_store(
        flow.result_storage if flow.result_storage is not None else config.result_storage_url,
        serializer,
        cache_result_in_memory=flow.cache_result_in_memory,
    )
    return ResultPlan(
        store,
        None,
        refresh=False,
        expiration=None,
        keep_in_memory=flow.cache_result_in_memory,
        lock=False,
        holder="",
    )


def persists(task: Task[..., Any], flow_ctx: FlowRunContext | None) -> bool:
    """Return whether a run of *task* starting now persists (and so caches) its result."""
    persist = task.persist_result
    if persist is not None:
        return persist
    # Order as in Prefect: the task's own setting, the tasks default, the flow's choice.
    if flow_ctx is None:
        config = run_config()
        persist = config.tasks_default_persist_result
        return bool(config.results_persist_by_default if persist is None else persist)
    persist = flow_ctx._task_persist
    if persist is None:
        # Once per flow run: this is asked for every task call, and reading settings is not free.
        default = run_config().tasks_default_persist_result
        persist = flow_ctx._task_persist = flow_ctx.persist_result if default is None else default
    return persist


def plan_results(
    task: Task[..., Any], run: TaskRun, ctx: TaskRunContext, flow_ctx: FlowRunContext | None
) -> ResultPlan | None:
    """Return the run's result plan, or None when it neither persists nor caches."""
    if not persists(task, flow_ctx):
        return None
    config = run_config()
    key = _cache_key(task, run, ctx, flow_ctx, config.tasks_unhashable_inputs)
    policy = task.cache_policy
    serializable = _is_serializable(getattr(policy, "isolation_level", None))
    store = _store_for(task, flow_ctx, config, policy)
    if serializable and not store.supports_isolation_level("SERIALIZABLE"):
        raise ConfigurationError(
            f"task {task.name!r} asks for SERIALIZABLE isolation but its cache policy has no "
            "lock manager; configure one: INPUTS.configure(isolation_level='SERIALIZABLE', "
            "lock_manager=MemoryLockManager()) for threads, or FileSystemLockManager(directory) "
            "for processes on one machine"
        )
    refresh = task.refresh_cache if task.refresh_cache is not None else config.tasks_refresh_cache
    expiration = datetime.now(UTC) + task.cache_expiration if task.cache_expiration else None
    return ResultPlan(
        store,
        key,
        refresh=bool(refresh),
        expiration=expiration,
        keep_in_memory=task.cache_result_in_memory,
        lock=serializable,
        # Only a lock reads the holder; the f-string would make the run's id (1-2 µs) on
        # every cache hit otherwise.
        holder=f"task-run:{run.id}" if serializable else "",
    )


def _is_serializable(level: Any) -> bool:
    if level is None:
        return False
    return str(getattr(level, "value", level)).upper() == "SERIALIZABLE"


def _cache_key(
    task: Task[..., Any],
    run: TaskRun,
    ctx: TaskRunContext,
    flow_ctx: FlowRunContext | None,
    on_unhashable: str,
) -> str | None:
    policy = task.cache_policy
    if policy is not None:  # a CachePolicy (None: the storage key template is the key)
        flow_parameters = flow_ctx.parameters if flow_ctx is not None else {}
        try:
            key: str | None = policy.compute_key(
                task_ctx=ctx, inputs=run.parameters, flow_parameters=flow_parameters
            )
        except ValueError as exc:  # unhashable inputs
            if on_unhashable == "error":
                raise
            _warn_unhashable_once(task, exc)
            return None
        return key
    if task.result_storage_key is not None:
        return _render_storage_key(task.result_storage_key, run.parameters)
    return None


_warned: set[tuple[str, str]] = set()


def _warn_unhashable_once(task: Task[..., Any], exc: ValueError) -> None:
    # One warning per task and parameter: a task called in a loop should not flood the log.
    marker = (task.task_key, str(getattr(exc, "parameter", "")))
    if marker in _warned:
        _logger.debug("%s The task runs without caching.", exc)
        return
    _warned.add(marker)
    _logger.warning("%s The task runs without caching.", exc)


def _render_storage_key(template: str, parameters: dict[str, Any]) -> str:
    from .. import runtime

    return template.format(
        flow_run=runtime.flow_run,
        task_run=runtime.task_run,
        deployment=runtime.deployment,
        parameters=parameters,
    )


def _store_for(
    task: Task[..., Any], flow_ctx: FlowRunContext | None, config: Any, policy: Any
) -> ResultStore:
    # Resolving a store parses its URL; a task's store only changes with its flow or the
    # settings, so it is resolved once per (flow, settings) and kept on the task.
    flow = flow_ctx.flow if flow_ctx is not None else None
    cache: dict[tuple[int, int], tuple[Any, Any, ResultStore]]
    cache = task.__dict__.setdefault("_fluvial_stores", {})
    entry = cache.get((id(flow), id(config)))
    # The objects are kept in the entry and compared: an id alone may be reused.
    if entry is not None and entry[0] is flow and entry[1] is config:
        return entry[2]
    if len(cache) > 16:
        cache.clear()
    store = _resolve_store(task, flow, config, policy)
    cache[(id(flow), id(config))] = (flow, config, store)
    return store


def _resolve_store(task: Task[..., Any], flow: Any, config: Any, policy: Any) -> ResultStore:
    from ..storage import ResultStore, resolve_result_store

    storage = task.result_storage
    serializer = task.result_serializer
    if flow is not None:
        storage = storage if storage is not None else flow.result_storage
        serializer = serializer if serializer is not None else flow.result_serializer
    if serializer is None and not isinstance(storage, ResultStore):
        serializer = config.results_default_serializer  # a ResultStore keeps its own
    return resolve_result_store(
        storage if storage is not None else config.result_storage_url,
        serializer,
        metadata_storage=getattr(policy, "key_storage", None),
        lock_manager=getattr(policy, "lock_manager", None),
        cache_result_in_memory=task.cache_result_in_memory,
    )
