"""``@task`` and :class:`Task`: a function with states, retries, timeouts and hooks.

A task called directly runs in the caller's thread (or, if async, on the caller's event loop)
and returns its value; ``.submit()`` and ``.map()`` hand it to the flow's task runner and return
futures. Options and defaults are Prefect 3's; the differences are listed in
docs/porting-from-prefect.md.
"""

from __future__ import annotations

__all__ = ("NotSet", "Task", "exponential_backoff", "task", "task_input_hash")

import copy
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from ._definitions import Definition, NotSet, StateHook, check_reserved, hook_list
from ._signature import CallSignature, MethodBinding, unwrap_method
from .context import _flow_run_context
from .engine.retries import RetryDelay, exponential_backoff, normalize_retry_delays
from .engine.task_engine import (
    run_generator_task_async,
    run_generator_task_sync,
    run_task_async,
    run_task_sync,
)
from .exceptions import DefinitionError, MissingContextError

if TYPE_CHECKING:
    from .futures import Future, FutureList
    from .states import State

_logger = logging.getLogger("fluvial.tasks")
P = ParamSpec("P")
R = TypeVar("R")


def _resolve_caching(
    name: str,
    policy: Any,
    cache_key_fn: Callable[..., Any] | None,
    persist_result: bool | None,
    implied: tuple[Any, ...],
) -> tuple[Any, bool | None]:
    """Apply Prefect's rules: which cache policy a task uses and whether it persists.

    ``cache_key_fn`` wins over ``cache_policy``; an explicit policy, key function, storage,
    serializer or storage key implies persistence; ``persist_result=False`` means no caching;
    no policy means ``DEFAULT``, or the storage key when ``result_storage_key`` is given.
    """
    from . import cache_policies

    if cache_key_fn is not None:
        if policy is not NotSet:
            _logger.warning(
                "task %r got both cache_policy and cache_key_fn; cache_key_fn is used", name
            )
        policy = cache_policies.CacheKeyFnPolicy(cache_key_fn)
    no_cache = policy is cache_policies.NO_CACHE
    if persist_result is None and (
        (policy is not NotSet and not no_cache) or any(v is not None for v in implied)
    ):
        persist_result = True
    storage_key = implied[0]
    if persist_result is False:
        if policy is not NotSet and not no_cache:
            _logger.warning(
                "task %r has persist_result=False, so its cache policy is not used", name
            )
        return cache_policies.NO_CACHE, False
    if policy is NotSet:
        return (None if storage_key is not None else cache_policies.DEFAULT), persist_result
    if storage_key is not None and not no_cache:
        return None, persist_result  # the rendered storage key is the cache key
    return policy, persist_result


def _task_key(fn: Callable[..., Any]) -> str:
    import hashlib

    code = getattr(fn, "__code__", None)
    digest = hashlib.blake2b(
        code.co_code if code is not None else repr(fn).encode(), digest_size=4
    ).hexdigest()
    return f"{fn.__qualname__.split('.')[-1]}-{digest}"


class Task(Definition, Generic[P, R]):
    """A function that fluvial runs with states, retries, timeouts, hooks and caching."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        cache_policy: Any = NotSet,
        cache_key_fn: Callable[..., str | None] | None = None,
        cache_expiration: timedelta | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: RetryDelay = None,
        retry_jitter_factor: float | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        result_storage_key: str | None = None,
        cache_result_in_memory: bool = True,
        timeout_seconds: float | None = None,
        log_prints: bool | None = False,
        refresh_cache: bool | None = None,
        on_completion: list[StateHook] | None = None,
        on_failure: list[StateHook] | None = None,
        on_running: list[StateHook] | None = None,
        on_rollback: list[Callable[..., Any]] | None = None,
        on_commit: list[Callable[..., Any]] | None = None,
        retry_condition_fn: Callable[..., Any] | None = None,
        viz_return_value: Any = None,
    ) -> None:
        fn, method_kind = unwrap_method(fn)
        if not callable(fn):
            raise DefinitionError(f"@task needs a function, got {fn!r}")
        check_reserved(fn, "task")
        self._options = {
            key: value
            for key, value in locals().items()
            if key not in ("self", "fn", "__class__", "method_kind")
        }
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "task")
        self.description = description or inspect.getdoc(fn)
        self.tags: frozenset[str] = frozenset(tags or ())
        self.version = version
        self.isasync = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self.isgenerator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self.task_key = _task_key(fn)
        self.task_run_name = task_run_name
        self.retries = self._check_retries(retries)
        self.retry_delay_seconds = retry_delay_seconds
        self._retry_delays = normalize_retry_delays(retry_delay_seconds, self.retries)
        if retry_jitter_factor is not None and retry_jitter_factor < 0:
            raise DefinitionError("retry_jitter_factor must be zero or more")
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        if retry_condition_fn is not None and not callable(retry_condition_fn):
            raise DefinitionError("retry_condition_fn must be callable")
        self.timeout_seconds = float(timeout_seconds) if timeout_seconds else None
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.result_storage_key = result_storage_key
        self.cache_policy, self.persist_result = _resolve_caching(
            str(self.name),
            cache_policy,
            cache_key_fn,
            persist_result,
            implied=(result_storage_key, result_storage, result_serializer),
        )
        self.cache_result_in_memory = cache_result_in_memory
        self.refresh_cache = refresh_cache
        self.log_prints = log_prints
        self.on_completion_hooks = hook_list(on_completion, "on_completion")
        self.on_failure_hooks = hook_list(on_failure, "on_failure")
        self.on_running_hooks = hook_list(on_running, "on_running")
        self.on_rollback_hooks = hook_list(on_rollback, "on_rollback")
        self.on_commit_hooks = hook_list(on_commit, "on_commit")
        self.viz_return_value = viz_return_value
        self._signature = CallSignature(fn, f"task {self.name!r}")
        self._method = MethodBinding(method_kind, f"task {self.name!r}")
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @staticmethod
    def _check_retries(retries: int | None) -> int:
        if retries is None:
            return 0
        if not isinstance(retries, int) or retries < 0:
            raise DefinitionError(
                f"retries must be a whole number of zero or more, got {retries!r}"
            )
        return retries

    # -- calling -----------------------------------------------------------------------------

    @overload
    def __call__(
        self: Task[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def __call__(  # type: ignore[misc]  # return_state/wait_for join the wrapped signature
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Any:
        """Run the task now, in this thread or on this event loop, and return its value.

        With ``return_state=True`` the final :class:`State` is returned instead. An async task
        returns a coroutine to await.
        """
        parameters = self._signature.bind(args, kwargs)
        if self.isgenerator and not return_state:
            if self.isasync:
                return run_generator_task_async(self, parameters, wait_for)
            return run_generator_task_sync(self, parameters, wait_for)
        return_type: Literal["result", "state"] = "state" if return_state else "result"
        if self.isasync:
            return run_task_async(self, parameters, wait_for, return_type)
        return run_task_sync(self, parameters, wait_for, return_type)

    def submit(
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Future[R] | State[R]:
        """Hand the task to the current flow's task runner; return a future at once.

        Arguments may be futures of other tasks: the task starts only when they are done.
        With ``return_state=True`` this waits and returns the final state.

        Raises:
            MissingContextError: called outside a flow run.
        """
        runner = _current_runner(self, "submit")
        parameters = self._signature.bind(args, kwargs)
        future: Future[R] = runner.submit(self, parameters, wait_for=wait_for)
        if return_state:
            future.wait()
            return future.state
        return future

    def map(
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> FutureList[R] | list[State[R]]:
        """Submit one run per item of the iterable arguments; return their futures in order.

        Wrap an iterable that every run should receive whole in ``unmapped(...)``.

        Raises:
            MissingContextError: called outside a flow run.
            MappingLengthMismatch: the iterables have different lengths.
            MappingMissingIterable: no argument is iterable.
        """
        runner = _current_runner(self, "map")
        parameters = self._signature.bind_partial(args, kwargs)
        futures: FutureList[R] = runner.map(self, parameters, wait_for=wait_for)
        if return_state:
            futures.wait()
            return [future.state for future in futures]
        return futures

    def on_commit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register a transaction commit hook (decorator; transactions come with caching)."""
        return self._register("on_commit", fn)

    def on_rollback(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register a transaction rollback hook (decorator; transactions come with caching)."""
        return self._register("on_rollback", fn)

    def __get__(self, instance: Any, owner: Any = None) -> Task[P, R]:
        # A task defined on a class binds like a method (or classmethod/staticmethod).
        target = (
            self._method.target(instance, owner)
            if instance is not None or (self._method.kind == "class")
            else None
        )
        if target is None:
            return self
        bound = copy.copy(self)
        bound.fn, bound._signature = self._method.bind(self.fn, target)
        return bound

    def __getstate__(self) -> dict[str, Any]:
        # Stores resolved for this process stay here: a worker resolves its own.
        state = dict(self.__dict__)
        state.pop("_fluvial_stores", None)
        return state

    def __repr__(self) -> str:
        return f"Task(name={self.name!r})"


def _current_runner(task: Task[Any, Any], verb: str) -> Any:
    ctx = _flow_run_context.get()
    if ctx is None:
        raise MissingContextError(
            f"{task.name}.{verb}() needs a running flow to hand the task to its task runner; "
            f"call it inside a @flow, or call the task directly: {task.name}(...)"
        )
    return ctx.task_runner


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...


@overload
def task(
    __fn: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
    version: str | None = None,
    cache_policy: Any = NotSet,
    cache_key_fn: Callable[..., str | None] | None = None,
    cache_expiration: timedelta | None = None,
    task_run_name: str | Callable[..., str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: RetryDelay = None,
    retry_jitter_factor: float | None = None,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_storage_key: str | None = None,
    result_serializer: Any = None,
    cache_result_in_memory: bool = True,
    timeout_seconds: float | None = None,
    log_prints: bool | None = None,
    refresh_cache: bool | None = None,
    on_completion: list[StateHook] | None = None,
    on_failure: list[StateHook] | None = None,
    on_running: list[StateHook] | None = None,
    retry_condition_fn: Callable[..., Any] | None = None,
    viz_return_value: Any = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Turn a function into a :class:`Task`; use as ``@task`` or ``@task(retries=3, ...)``.

    ``log_prints`` defaults to None here: inherit the flow's setting.
    """
    options.setdefault("log_prints", None)
    if __fn is not None:
        return Task(__fn, **options)

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    return decorate


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """Prefect's legacy ``cache_key_fn``: a key from the task's identity, code and inputs.

    Unlike the ``DEFAULT`` policy it leaves the run id out, so a result is reused across flow
    runs. Returns None (no caching) when an argument cannot be hashed.
    """
    from ._hashing import UnhashableInputError, stable_hash

    task_obj = context.task
    code = getattr(task_obj.fn, "__code__", None)
    try:
        return stable_hash(task_obj.task_key, code.co_code.hex() if code else "", arguments)
    except UnhashableInputError:
        return None
