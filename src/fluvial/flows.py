"""``@flow`` and :class:`Flow`: the function that runs tasks, and the unit of a run.

Calling a flow starts a flow run in the calling thread (an async flow returns a coroutine). A
flow called inside another flow is a subflow: a child run with its own state, task runner and
hooks. Options and defaults are Prefect 3's; see docs/porting-from-prefect.md for differences.
"""

from __future__ import annotations

__all__ = ("Flow", "flow")

import copy
import inspect
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from ._definitions import Definition, StateHook, check_reserved, hook_list
from ._signature import CallSignature, MethodBinding, unwrap_method
from .engine.retries import normalize_retry_delays
from .exceptions import DefinitionError

if TYPE_CHECKING:
    from .runners.base import TaskRunner

P = ParamSpec("P")
R = TypeVar("R")


class Flow(Definition, Generic[P, R]):
    """A function whose calls are flow runs: validated parameters, states, retries, hooks."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[..., str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | None = None,
        task_runner: TaskRunner | type[TaskRunner] | None = None,
        description: str | None = None,
        timeout_seconds: float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: Any = None,
        cache_result_in_memory: bool = True,
        log_prints: bool | None = None,
        on_completion: list[StateHook] | None = None,
        on_failure: list[StateHook] | None = None,
        on_cancellation: list[StateHook] | None = None,
        on_crashed: list[StateHook] | None = None,
        on_running: list[StateHook] | None = None,
    ) -> None:
        fn, method_kind = unwrap_method(fn)
        if not callable(fn):
            raise DefinitionError(f"@flow needs a function, got {fn!r}")
        check_reserved(fn, "flow")
        self._options = {
            key: value
            for key, value in locals().items()
            if key not in ("self", "fn", "__class__", "method_kind")
        }
        self.fn = fn
        self.name = name or _default_name(fn)
        self._version = version
        self.flow_run_name = flow_run_name
        self.retries = _check_retries(retries)
        self.retry_delay_seconds = retry_delay_seconds
        self._retry_delays = normalize_retry_delays(retry_delay_seconds, self.retries)
        self.task_runner = _runner_instance(task_runner)
        self.description = description or inspect.getdoc(fn)
        self.timeout_seconds = float(timeout_seconds) if timeout_seconds else None
        self.should_validate_parameters = validate_parameters
        # As in Prefect: giving a storage or serializer implies persisting the flow's result.
        if persist_result is None and (result_storage is not None or result_serializer is not None):
            persist_result = True
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = log_prints
        self.on_completion_hooks = hook_list(on_completion, "on_completion")
        self.on_failure_hooks = hook_list(on_failure, "on_failure")
        self.on_cancellation_hooks = hook_list(on_cancellation, "on_cancellation")
        self.on_crashed_hooks = hook_list(on_crashed, "on_crashed")
        self.on_running_hooks = hook_list(on_running, "on_running")
        self.isasync = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self._signature = CallSignature(fn, f"flow {self.name!r}")
        self._method = MethodBinding(method_kind, f"flow {self.name!r}")
        # Built on first use and shared with bound copies (see __get__).
        self._lazy: dict[str, Any] = {}
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def version(self) -> str | None:
        """The flow's version: as given, else a hash of its source file."""
        if self._version is None:
            self._version = _file_hash(self.fn)
        return self._version

    @overload
    def __call__(
        self: Flow[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    def __call__(  # type: ignore[misc]  # return_state/wait_for join the wrapped signature
        self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any
    ) -> Any:
        """Run the flow and return its value (or, with ``return_state=True``, its final state).

        ``wait_for`` (subflows only) waits for those futures before the run starts.
        """
        from .engine.flow_engine import run_flow_async, run_flow_sync

        if wait_for:
            from .futures import wait

            wait(list(wait_for))
        parameters = self._signature.bind(args, kwargs)
        return_type: Literal["result", "state"] = "state" if return_state else "result"
        if self.isasync:
            return run_flow_async(self, parameters, return_type)
        return run_flow_sync(self, parameters, return_type)

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Return *parameters* validated and coerced against the function's annotations.

        Raises:
            ParameterTypeError: a value cannot be coerced to its parameter's type.
        """
        if not self.should_validate_parameters or not parameters:
            return parameters
        validator = self._lazy.get("validator")
        if validator is None:
            from ._validation import ParameterValidator

            validator = self._lazy["validator"] = ParameterValidator(self.fn, self.name)
        result: dict[str, Any] = validator.validate(parameters)
        return result

    def on_cancellation(self, fn: StateHook) -> StateHook:
        """Register *fn* to run when a run of this flow is cancelled (decorator)."""
        return self._register("on_cancellation", fn)

    def on_crashed(self, fn: StateHook) -> StateHook:
        """Register *fn* to run when a run of this flow crashes (decorator)."""
        return self._register("on_crashed", fn)

    def __get__(self, instance: Any, owner: Any = None) -> Flow[P, R]:
        # A flow defined on a class binds like a method (or classmethod/staticmethod).
        if instance is None and self._method.kind != "class":
            return self
        target = self._method.target(instance, owner)
        if target is None:
            return self
        bound = copy.copy(self)
        bound.fn, bound._signature = self._method.bind(self.fn, target)
        bound._lazy = self._lazy.setdefault(f"bound:{id(target)}", {})
        return bound

    def __getstate__(self) -> dict[str, Any]:
        # The parameter validator is a class built at run time: rebuilt where it is needed.
        state = dict(self.__dict__)
        state["_lazy"] = {}
        return state

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r})"


def _default_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__name__", "flow")
    return "unknown-lambda" if name == "<lambda>" else name.replace("_", "-")


def _check_retries(retries: int | None) -> int:
    if retries is None:
        return 0
    if not isinstance(retries, int) or retries < 0:
        raise DefinitionError(f"retries must be a whole number of zero or more, got {retries!r}")
    return retries


def _runner_instance(runner: Any) -> TaskRunner:
    from .runners.base import TaskRunner
    from .runners.thread import ThreadPoolTaskRunner

    if runner is None:
        return ThreadPoolTaskRunner()
    if isinstance(runner, type) and issubclass(runner, TaskRunner):
        return runner()
    if isinstance(runner, TaskRunner):
        return runner
    raise DefinitionError(
        f"task_runner must be a TaskRunner instance or class, got {type(runner).__name__}"
    )


def _file_hash(fn: Callable[..., Any]) -> str | None:
    import hashlib

    try:
        path = inspect.getsourcefile(fn)
        if path is None:
            return None
        with open(path, "rb") as handle:
            return hashlib.md5(handle.read(), usedforsecurity=False).hexdigest()
    except (OSError, TypeError):
        return None


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(
    __fn: None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    flow_run_name: str | Callable[..., str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | None = None,
    task_runner: TaskRunner | type[TaskRunner] | None = None,
    description: str | None = None,
    timeout_seconds: float | None = None,
    validate_parameters: bool = True,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: Any = None,
    cache_result_in_memory: bool = True,
    log_prints: bool | None = None,
    on_completion: list[StateHook] | None = None,
    on_failure: list[StateHook] | None = None,
    on_cancellation: list[StateHook] | None = None,
    on_crashed: list[StateHook] | None = None,
    on_running: list[StateHook] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Turn a function into a :class:`Flow`; use as ``@flow`` or ``@flow(retries=2, ...)``."""
    if __fn is not None:
        return Flow(__fn, **options)

    def decorate(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, **options)

    return decorate
