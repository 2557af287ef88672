"""Every exception fluvial raises on purpose.

User exceptions are never wrapped: a task that raises ``KeyError`` makes the caller see that
``KeyError`` (with a note naming the task and attempt). The classes below mean that fluvial
itself, or its configuration, refused something, and each message says what to do.

```
FluvialError                                base of everything below
├── DefinitionError            (TypeError)  @flow/@task misuse found at decoration time
│   └── ReservedArgumentError               a parameter named return_state or wait_for
├── ParameterBindError         (TypeError)  call arguments don't bind to the signature
├── ParameterTypeError         (TypeError)  flow parameters failed pydantic validation
├── ConfigurationError         (ValueError) an option value fluvial can't use
│   └── MissingExtraError    (ImportError)  an optional backend is not installed
├── MappingLengthMismatch      (ValueError) .map() iterables of different lengths
├── MappingMissingIterable     (ValueError) .map() given nothing to iterate
├── MissingContextError      (RuntimeError) needs a flow or task run and there is none
├── UnfinishedRun            (RuntimeError) result() of a state that is not final
├── MissingResult            (RuntimeError) a completed state has no value to give back
├── UpstreamTaskError                       a dependency did not complete
├── SerializationError                      a value couldn't be pickled or encoded
├── StorageError                (OSError)   result storage couldn't be reached, read or written
│   ├── ResultNotFound                      no record at that key, or it expired
│   └── CorruptRecordError                  a record is torn, foreign, or fails its checksum
├── WorkerCrashed                           the runner lost the worker running a task
├── RunJournalError                         a recorded run cannot be read or resumed
│   ├── RunNotFound           (LookupError) no run with that id in that storage
│   ├── CorruptRunJournal                   a journal file is torn, foreign or too new
│   └── RunStillRunning                     resume() of a run whose process is still alive
├── FlowImportError           (ImportError) a recorded flow's code cannot be imported
├── ConcurrencySlotAcquisitionError         slots of a concurrency limit cannot be had
│   │                                       (unknown limit with strict=True, occupy > limit…)
│   └── AcquireConcurrencySlotTimeoutError (TimeoutError) timeout_seconds passed while waiting
├── ConcurrencyLimitNotFound  (LookupError) no concurrency limit by that name
├── FailedRun / CrashedRun / CancelledRun   stand-ins raised by result() when no exception
│                                           was recorded for a failed/crashed/cancelled run
├── PausedRun                               result() of a paused run
└── InvalidTransition        (RuntimeError) the state machine refused a move: a fluvial bug
TaskRunTimeoutError, FlowRunTimeoutError    (TimeoutError, FluvialError) a run hit timeout_seconds
TerminationSignal                           (BaseException) SIGTERM arrived during a flow run
```
"""

from __future__ import annotations

__all__ = (
    "AcquireConcurrencySlotTimeoutError",
    "CancelledRun",
    "ConcurrencyLimitNotFound",
    "ConcurrencySlotAcquisitionError",
    "ConfigurationError",
    "CorruptRecordError",
    "CorruptRunJournal",
    "CrashedRun",
    "DefinitionError",
    "FailedRun",
    "FlowImportError",
    "FlowRunTimeoutError",
    "FluvialError",
    "InvalidTransition",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "MissingContextError",
    "MissingExtraError",
    "MissingResult",
    "ParameterBindError",
    "ParameterTypeError",
    "PausedRun",
    "PrefectException",
    "ReservedArgumentError",
    "ResultNotFound",
    "RunJournalError",
    "RunNotFound",
    "RunStillRunning",
    "SerializationError",
    "StorageError",
    "TaskRunTimeoutError",
    "TerminationSignal",
    "UnfinishedRun",
    "UpstreamTaskError",
    "WorkerCrashed",
)


class FluvialError(Exception):
    """Base class of every error fluvial raises on purpose."""


#: Prefect's name for the base class, so ``except PrefectException`` ports unchanged.
PrefectException = FluvialError


class DefinitionError(FluvialError, TypeError):
    """A flow or task was defined in a way fluvial cannot run."""


class ReservedArgumentError(DefinitionError):
    """The decorated function has a parameter whose name fluvial's call API takes."""


class ParameterBindError(FluvialError, TypeError):
    """The arguments of a call do not fit the function's signature."""


class ParameterTypeError(FluvialError, TypeError):
    """Flow parameters failed validation against the function's annotations."""


class ConfigurationError(FluvialError, ValueError):
    """An option was given a value fluvial cannot use."""


class MissingExtraError(ConfigurationError, ImportError):
    """An optional backend was asked for but its package is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs an optional dependency that is not installed; "
            f"install it with: pip install 'fluvial[{extra}]'"
        )


class MappingLengthMismatch(FluvialError, ValueError):
    """``Task.map`` was given iterables of different lengths."""


class MappingMissingIterable(FluvialError, ValueError):
    """``Task.map`` was given no iterable argument to map over."""


class MissingContextError(FluvialError, RuntimeError):
    """Something that needs a flow or task run was used outside one."""


class UnfinishedRun(FluvialError, RuntimeError):
    """The result of a run was asked for before the run reached a final state."""


class MissingResult(FluvialError, RuntimeError):
    """A completed state holds no result (it was not kept in memory or persisted)."""


class UpstreamTaskError(FluvialError):
    """A task did not run because one of its upstream tasks did not complete."""


class SerializationError(FluvialError):
    """A value could not be serialized or deserialized."""


class StorageError(FluvialError, OSError):
    """Result storage could not be reached, read or written; the message names the URL."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ResultNotFound(StorageError):
    """No record exists at the requested key, or the record there has expired."""


class CorruptRecordError(StorageError):
    """A record exists but cannot be trusted: torn, foreign, or failing its checksum."""


class WorkerCrashed(FluvialError):
    """The worker running a task died before the task finished."""


class RunJournalError(FluvialError):
    """A run recorded in a run journal cannot be read or resumed."""


class RunNotFound(RunJournalError, LookupError):
    """No run with that id is recorded in that storage."""


class CorruptRunJournal(RunJournalError):
    """A run journal file is torn, not fluvial's, or written by a newer fluvial."""


class RunStillRunning(RunJournalError):
    """A run cannot be resumed: a live process on this machine is still running it."""


class FlowImportError(FluvialError, ImportError):
    """The code of a recorded flow cannot be imported (moved, renamed, or not on the path)."""


class ConcurrencySlotAcquisitionError(FluvialError):
    """Slots of a concurrency limit cannot be acquired (the message names the limit)."""


class AcquireConcurrencySlotTimeoutError(ConcurrencySlotAcquisitionError, TimeoutError):
    """``timeout_seconds`` passed before the slots of the named limits were free."""


class ConcurrencyLimitNotFound(FluvialError, LookupError):
    """No concurrency limit has the given name."""


class FailedRun(FluvialError):
    """Raised by ``State.result()`` for a failed run that recorded no exception."""


class CrashedRun(FluvialError):
    """Raised by ``State.result()`` for a crashed run that recorded no exception."""


class CancelledRun(FluvialError):
    """Raised by ``State.result()`` for a cancelled run."""


class PausedRun(FluvialError):
    """Raised by ``State.result()`` for a paused run."""


class InvalidTransition(FluvialError, RuntimeError):
    """The engine attempted a state transition that is not allowed; this is a fluvial bug."""


class TaskRunTimeoutError(FluvialError, TimeoutError):
    """A task attempt ran longer than its ``timeout_seconds``."""


class FlowRunTimeoutError(FluvialError, TimeoutError):
    """A flow attempt ran longer than its ``timeout_seconds``."""


class TerminationSignal(BaseException):
    """SIGTERM arrived while a flow was running; the run is marked crashed and the signal re-sent."""

    def __init__(self, signal: int) -> None:
        super().__init__(f"received signal {signal}")
        self.signal = signal
