"""Cache policies: how a task run's cache key is computed (Prefect 3's names and semantics).

A policy's :meth:`~CachePolicy.compute_key` returns a string key, or ``None`` for "do not cache
and do not persist". The built-in policies and what their keys are made of:

===================  ==========================================================================
``INPUTS``           ``stable_hash({name: value})`` of the task's inputs, minus excluded names
                     (``INPUTS - "client"``); ``None`` if the task has no inputs at all.
``TASK_SOURCE``      a hash of the task function's source (comments and layout left out) and of
                     its compiled code, computed once per task and cached on the task.
``FLOW_PARAMETERS``  ``stable_hash`` of the flow run's parameters; ``None`` if there are none.
``RUN_ID``           the flow run id as a string (the task run id outside a flow).
``NO_CACHE``/``NONE``  always ``None``.
``DEFAULT``          ``INPUTS + TASK_SOURCE + RUN_ID``: a hit only within one flow run (and so
                     across its retries and when a run is resumed by id).
``CacheKeyFnPolicy``  whatever ``cache_key_fn(task_ctx, inputs)`` returns.
===================  ==========================================================================

``a + b`` makes a :class:`CompoundCachePolicy`: nested compounds are flattened, every
``Inputs`` is merged into one (at the place of the first) with the union of the excludes, and
the key is ``stable_hash(k1, k2, ...)`` of the sub-keys that are not ``None``, **in order**
(``None`` when all are). ``stable_hash`` (see :mod:`fluvial._hashing`) is blake2b-128 over
canonical JSON, so keys are the same in every process and on every machine for equal inputs
and code.

An input that has no stable hash (a lock, socket, open file, generator...) makes ``INPUTS``
raise :class:`UnhashableParameterError`, a ``ValueError`` naming the task and the parameter;
the engine logs it and runs the task uncached.

``key_storage``, ``isolation_level`` and ``lock_manager`` ride along with a policy: set them
with :meth:`~CachePolicy.configure`, which returns a copy. Adding two policies that set
different values for one of them raises ``ValueError``.
"""

from __future__ import annotations

__all__ = (
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NONE",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "RunId",
    "TaskSource",
    "UnhashableParameterError",
)

import dataclasses
import enum
import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Self

from ._hashing import UnhashableInputError, code_digest, describe_type, stable_hash

if TYPE_CHECKING:
    from .context import TaskRunContext

_ISOLATION_LEVELS = ("READ_COMMITTED", "SERIALIZABLE")
_CONFIG_FIELDS = (
    ("key_storage", "storage locations"),
    ("isolation_level", "isolation levels"),
    ("lock_manager", "lock implementations"),
)


class UnhashableParameterError(UnhashableInputError, ValueError):
    """A task (or flow) parameter has no stable hash, so no cache key can be computed.

    A ``ValueError`` like Prefect's, and an :class:`~fluvial._hashing.UnhashableInputError`.

    Attributes:
        task_name: the task whose key was being computed (None without a task context).
        parameter: the name of the offending parameter.
        flow_parameter: True when it is a flow parameter (``FLOW_PARAMETERS``).
        type_name: the type that could not be hashed (from the underlying error).
    """

    def __init__(
        self,
        message: str,
        type_name: str | None = None,
        *,
        task_name: str | None = None,
        parameter: str | None = None,
        flow_parameter: bool = False,
    ) -> None:
        super().__init__(message, type_name)
        self.task_name = task_name
        self.parameter = parameter
        self.flow_parameter = flow_parameter


def _normalize_isolation(level: Any) -> Any:
    """Return *level* as ``fluvial.storage.IsolationLevel`` if that exists, else an uppercase str.

    Raises:
        ValueError: not READ_COMMITTED or SERIALIZABLE.
    """
    if level is None:
        return None
    name = level.name if isinstance(level, enum.Enum) else level
    if not isinstance(name, str) or name.upper() not in _ISOLATION_LEVELS:
        raise ValueError(
            f"isolation_level must be 'READ_COMMITTED' or 'SERIALIZABLE', got {level!r}"
        )
    name = name.upper()
    enum_type = _isolation_enum()
    if enum_type is None:
        return name
    if isinstance(level, enum_type):
        return level
    try:
        return enum_type[name]
    except KeyError:
        return enum_type(name)


def _isolation_enum() -> Any:
    # fluvial.storage is optional here: policies work (with string levels) without it.
    try:
        storage = importlib.import_module("fluvial.storage")
    except ImportError:
        return None
    return getattr(storage, "IsolationLevel", None)


def _level_name(level: Any) -> Any:
    return level.name if isinstance(level, enum.Enum) else level


@dataclass(kw_only=True)
class CachePolicy(ABC):
    """Base class of every cache policy.

    Attributes:
        key_storage: where cache records' metadata live (a storage, URL or path), or None.
        isolation_level: "READ_COMMITTED", "SERIALIZABLE" (or the ``IsolationLevel`` enum), or
            None for the default (READ_COMMITTED).
        lock_manager: the lock manager SERIALIZABLE uses, or None.
    """

    key_storage: Any = None
    isolation_level: Any = None
    lock_manager: Any = None

    def __post_init__(self) -> None:
        self.isolation_level = _normalize_isolation(self.isolation_level)

    @classmethod
    def from_cache_key_fn(
        cls, cache_key_fn: Callable[[TaskRunContext, dict[str, Any]], str | None]
    ) -> CacheKeyFnPolicy:
        """Return a policy whose key is ``cache_key_fn(task_ctx, inputs)``."""
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    @abstractmethod
    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return the cache key for this task run, or None to neither cache nor persist."""

    def configure(
        self,
        key_storage: Any = None,
        lock_manager: Any = None,
        isolation_level: Any = None,
    ) -> Self:
        """Return a copy with the given settings; None leaves a setting as it is.

        The copy is shallow: storages and lock managers are shared, not duplicated.
        """
        new = self._copy()
        if key_storage is not None:
            new.key_storage = key_storage
        if lock_manager is not None:
            new.lock_manager = lock_manager
        if isolation_level is not None:
            new.isolation_level = _normalize_isolation(isolation_level)
        return new

    def _copy(self) -> Self:
        return dataclasses.replace(self)

    def __sub__(self, other: str) -> CachePolicy:
        """Exclude input *other* from the key: a no-op except for Inputs and compounds."""
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        return self

    def __add__(self, other: CachePolicy) -> CachePolicy:
        """Combine two policies into a :class:`CompoundCachePolicy`.

        Raises:
            ValueError: both sides set different key_storage, isolation_level or lock_manager.
        """
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _None):
            return self
        _check_compatible([self, other])
        return CompoundCachePolicy(policies=[self, other])


def _check_compatible(policies: list[CachePolicy]) -> dict[str, Any]:
    """Return the settings *policies* agree on; raise ValueError where two differ."""
    merged: dict[str, Any] = {}
    for name, plural in _CONFIG_FIELDS:
        chosen: Any = None
        for policy in policies:
            value = getattr(policy, name)
            if value is None:
                continue
            if chosen is None:
                chosen = value
            elif _level_name(chosen) != _level_name(value):
                raise ValueError(f"Cannot add CachePolicies with different {plural}.")
        merged[name] = chosen
    return merged


@dataclass
class _None(CachePolicy):
    """Always None: the task is neither cached nor persisted by its key."""

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return None."""
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        """Adding to NO_CACHE gives the other policy unchanged."""
        if not isinstance(other, CachePolicy):
            return NotImplemented
        return other


@dataclass
class Inputs(CachePolicy):
    """Key from the task's inputs, leaving out the names in *exclude*."""

    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.exclude = list(self.exclude)

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return ``stable_hash`` of the inputs not excluded; None if there are no inputs.

        Raises:
            UnhashableParameterError: an input has no stable hash (the message names the task
                and the parameter and says how to cache without it).
        """
        if not inputs:
            return None
        exclude = self.exclude
        hashed = {key: value for key, value in inputs.items() if key not in exclude}
        try:
            return stable_hash(hashed)
        except UnhashableInputError as exc:
            raise _parameter_error(task_ctx, hashed, exc, flow=False) from exc

    def __sub__(self, other: str) -> CachePolicy:
        """Return a copy that also excludes input *other*."""
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        return dataclasses.replace(self, exclude=[*self.exclude, other])


@dataclass
class TaskSource(CachePolicy):
    """Key from the task function's source code and compiled code.

    Comments, blank lines and spacing within lines do not count; the function's body, its
    signature and its decorators do. Other functions in the same file do not. The digest is
    computed on first use and cached on the task (``Task._fluvial_source_key``); a task
    carrying a ``source_code`` string (captured at decoration) is hashed from that instead of
    reading the file.
    """

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return the digest of the task's source, or None without a task context."""
        if task_ctx is None:
            return None
        return task_source_key(task_ctx.task)


@dataclass
class FlowParameters(CachePolicy):
    """Key from the flow run's parameters."""

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return ``stable_hash`` of the flow parameters; None if there are none.

        Raises:
            UnhashableParameterError: a flow parameter has no stable hash.
        """
        if flow_parameters is None:
            from .context import FlowRunContext

            flow_ctx = FlowRunContext.get()
            flow_parameters = flow_ctx.parameters if flow_ctx is not None else None
        if not flow_parameters:
            return None
        try:
            return stable_hash(flow_parameters)
        except UnhashableInputError as exc:
            raise _parameter_error(task_ctx, flow_parameters, exc, flow=True) from exc


@dataclass
class RunId(CachePolicy):
    """Key from the flow run id (the task run id for a task run outside any flow)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return the run id as a string, or None without a task context."""
        if task_ctx is None:
            return None
        run = task_ctx.task_run
        run_id = run.flow_run_id
        if run_id is None:
            run_id = run.id
        return str(run_id)


@dataclass
class CacheKeyFnPolicy(CachePolicy):
    """Key from a function ``cache_key_fn(task_ctx, inputs) -> str | None``."""

    cache_key_fn: Callable[[TaskRunContext, dict[str, Any]], str | None] | None = None

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return what ``cache_key_fn`` returns (None if there is no function).

        Raises:
            TypeError: the function returned something other than a str or None.
        """
        if self.cache_key_fn is None:
            return None
        key: Any = self.cache_key_fn(task_ctx, inputs)  # type: ignore[arg-type]
        if key is not None and not isinstance(key, str):
            name = getattr(self.cache_key_fn, "__qualname__", repr(self.cache_key_fn))
            raise TypeError(
                f"cache_key_fn {name} must return a str or None, got {describe_type(key)}"
            )
        return key


@dataclass
class CompoundCachePolicy(CachePolicy):
    """Several policies at once; the key hashes their non-None keys in order."""

    policies: list[CachePolicy] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        flat: list[CachePolicy] = []
        for policy in self.policies:
            if isinstance(policy, CompoundCachePolicy):
                flat.extend(policy.policies)
            else:
                flat.append(policy)
        # Settings given to the parts apply to the whole; explicit settings on this one win.
        merged = _check_compatible(list(self.policies))
        for name, value in merged.items():
            if getattr(self, name) is None and value is not None:
                setattr(self, name, value)
        merged_inputs: Inputs | None = None
        parts: list[CachePolicy] = []
        for policy in flat:
            if isinstance(policy, Inputs):
                if merged_inputs is None:
                    merged_inputs = Inputs(exclude=list(policy.exclude))
                    parts.append(merged_inputs)
                else:
                    merged_inputs.exclude.extend(
                        name for name in policy.exclude if name not in merged_inputs.exclude
                    )
            else:
                parts.append(policy)
        self.policies = parts

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        """Return ``stable_hash`` of the sub-keys that are not None, in order; else None."""
        keys: list[str] = []
        for policy in self.policies:
            key = policy.compute_key(
                task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters, **kwargs
            )
            if key is not None:
                keys.append(key)
        if not keys:
            return None
        return stable_hash(*keys)

    def __sub__(self, other: str) -> CachePolicy:
        """Return a copy whose Inputs part also excludes *other* (self if it has none)."""
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        if not any(isinstance(policy, Inputs) for policy in self.policies):
            return self
        return dataclasses.replace(self, policies=[policy - other for policy in self.policies])


# -- unhashable inputs ---------------------------------------------------------------------------


def _parameter_error(
    task_ctx: TaskRunContext | None,
    values: dict[str, Any],
    cause: UnhashableInputError,
    *,
    flow: bool,
) -> UnhashableParameterError:
    parameter, found = _culprit(values)
    cause = found or cause
    task_name = task_ctx.task.name if task_ctx is not None else None
    who = f"task {task_name!r}" if task_name is not None else "this task"
    what = f"flow parameter {parameter!r}" if flow else f"parameter {parameter!r}"
    if flow:
        remedies = (
            "  1. define a `cache_key_fn` that builds the key from hashable values,\n"
            "  2. drop FLOW_PARAMETERS from the task's cache_policy, or\n"
            "  3. disable caching with `cache_policy=NO_CACHE`."
        )
    else:
        remedies = (
            f'  1. leave it out of the key: `cache_policy=INPUTS - "{parameter}"`'
            f' (or `DEFAULT - "{parameter}"`),\n'
            "  2. define a `cache_key_fn` that builds the key from the other inputs, or\n"
            "  3. disable caching with `cache_policy=NO_CACHE`."
        )
    message = (
        f"Cannot compute a cache key for {who}: {what} cannot be hashed ({cause}).\n"
        "Locks, sockets, open files, generators and similar live resources have no stable "
        "identity to hash. To cache this task anyway:\n" + remedies
    )
    return UnhashableParameterError(
        message,
        cause.type_name,
        task_name=task_name,
        parameter=parameter,
        flow_parameter=flow,
    )


def _culprit(values: dict[str, Any]) -> tuple[str | None, UnhashableInputError | None]:
    for name, value in values.items():
        try:
            stable_hash(value)
        except UnhashableInputError as exc:
            return name, exc
    return None, None


# -- task source -----------------------------------------------------------------------------------

_SOURCE_ATTR = "_fluvial_source_key"


def task_source_key(task: Any) -> str:
    """Return the TASK_SOURCE digest of *task*, computing it once and caching it on the task.

    The cache is ``task._fluvial_source_key = (function, digest)``; it is reused only while
    ``task.fn`` (or the function a bound method wraps) is that same function.
    """
    fn = getattr(task, "fn", task)
    base = getattr(fn, "__func__", fn)
    cached = getattr(task, _SOURCE_ATTR, None)
    if cached is not None and cached[0] is base:
        digest: str = cached[1]
        return digest
    digest = _source_digest(task, base)
    try:
        setattr(task, _SOURCE_ATTR, (base, digest))
    except (AttributeError, TypeError):
        pass
    return digest


def _source_digest(task: Any, fn: Any) -> str:
    import inspect

    source = getattr(task, "source_code", None)
    if not isinstance(source, str):
        try:
            source = inspect.getsource(fn)
        except TypeError:
            try:
                source = inspect.getsource(type(fn))  # a callable object
            except (OSError, TypeError):
                source = None
        except OSError:  # defined in a REPL, exec() or a frozen app: no file to read
            source = None
    code = getattr(fn, "__code__", None)
    if code is None:
        call = next((vars(k)["__call__"] for k in type(fn).__mro__ if "__call__" in vars(k)), None)
        code = getattr(call, "__code__", None)
    code_part = code_digest(code) if code is not None else None
    source_part = _normalize_source(source) if source is not None else None
    if source_part is None and code_part is None:
        try:
            return stable_hash("task-source", fn)
        except UnhashableInputError:
            return stable_hash("task-source", describe_type(fn), getattr(task, "name", None))
    return stable_hash("task-source", source_part, code_part)


def _normalize_source(source: str) -> list[str] | str:
    """The source's tokens without comments, blank lines and intra-line spacing."""
    import io
    import textwrap
    import tokenize

    text = textwrap.dedent(source)
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
    marks = {tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>", tokenize.NEWLINE: "<nl>"}
    tokens: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in skip:
                continue
            tokens.append(marks.get(token.type, token.string))
    except (tokenize.TokenError, SyntaxError):
        return text  # e.g. a lambda cut out of the middle of an expression
    return tokens


INPUTS = Inputs()
NONE = NO_CACHE = _None()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
RUN_ID = RunId()
DEFAULT = CompoundCachePolicy([INPUTS, TASK_SOURCE, RUN_ID])  # INPUTS + TASK_SOURCE + RUN_ID
