"""States: types, named constructors, predicates, ``result()``, formatting and aggregation.

The rules follow Prefect 3 (reference/prefect-semantics.md §1.5): a state's ``type`` is one of
:class:`StateType`, its ``name`` may be more specific; ``result()`` returns the value or raises
the exception that ended the run; a state or list of states returned by a run is aggregated
(all completed → COMPLETED, else any cancelled → CANCELLED, else any paused → PAUSED, else
FAILED) unless it is a single hand-made state, which is used as it is.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

import fluvial
from fluvial import states as S
from fluvial.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    PausedRun,
    UnfinishedRun,
)
from fluvial.states import (
    TERMINAL_STATES,
    State,
    StateDetails,
    StateGroup,
    StateType,
    get_state_exception,
    return_value_to_state,
)

ALL_TYPES = list(StateType)

# --------------------------------------------------------------------------------------------
# StateType
# --------------------------------------------------------------------------------------------


def test_state_type_values_are_prefects_strings():
    assert {t.value for t in StateType} == {
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "CRASHED",
        "PAUSED",
        "CANCELLING",
    }
    for t in StateType:
        assert t.name == t.value
        assert t == t.value  # compares equal to its string, as Prefect's AutoEnum does
        assert StateType(t.value) is t


def test_terminal_states():
    assert frozenset(TERMINAL_STATES) == {
        StateType.COMPLETED,
        StateType.FAILED,
        StateType.CRASHED,
        StateType.CANCELLED,
    }


def test_state_accepts_type_as_string():
    state = State("COMPLETED")
    assert state.type is StateType.COMPLETED
    assert state.name == "Completed"


def test_state_public_export():
    assert fluvial.State is State


# --------------------------------------------------------------------------------------------
# Constructors
# --------------------------------------------------------------------------------------------

CONSTRUCTORS = [
    (S.Completed, StateType.COMPLETED, "Completed"),
    (S.Failed, StateType.FAILED, "Failed"),
    (S.Crashed, StateType.CRASHED, "Crashed"),
    (S.Cancelled, StateType.CANCELLED, "Cancelled"),
    (S.Cancelling, StateType.CANCELLING, "Cancelling"),
    (S.Pending, StateType.PENDING, "Pending"),
    (S.Running, StateType.RUNNING, "Running"),
    (S.Scheduled, StateType.SCHEDULED, "Scheduled"),
    (S.Paused, StateType.PAUSED, "Paused"),
    (S.Suspended, StateType.PAUSED, "Suspended"),
    (S.AwaitingRetry, StateType.SCHEDULED, "AwaitingRetry"),
    (S.Retrying, StateType.RUNNING, "Retrying"),
    (S.Late, StateType.SCHEDULED, "Late"),
    (S.Cached, StateType.COMPLETED, "Cached"),
    (S.NotReady, StateType.PENDING, "NotReady"),
    (S.TimedOut, StateType.FAILED, "TimedOut"),
    (S.RolledBack, StateType.COMPLETED, "RolledBack"),
]


@pytest.mark.parametrize(("ctor", "type_", "name"), CONSTRUCTORS, ids=[c[2] for c in CONSTRUCTORS])
def test_constructor_type_and_name(ctor, type_, name):
    state = ctor()
    assert isinstance(state, State)
    assert state.type is type_
    assert state.name == name
    assert state.message is None
    assert state.data is None


@pytest.mark.parametrize(("ctor", "type_", "name"), CONSTRUCTORS, ids=[c[2] for c in CONSTRUCTORS])
def test_constructor_keeps_message_and_data(ctor, type_, name):
    state = ctor(message="hello", data=[1, 2])
    assert state.type is type_
    assert state.name == name
    assert state.message == "hello"
    assert state.data == [1, 2]


def test_constructor_name_can_be_overridden():
    state = S.Completed(name="MyCompleted")
    assert state.type is StateType.COMPLETED
    assert state.name == "MyCompleted"


@pytest.mark.parametrize("ctor", [S.Scheduled, S.AwaitingRetry, S.Late])
def test_scheduled_states_default_to_now(ctor):
    before = datetime.now(UTC)
    state = ctor()
    after = datetime.now(UTC)
    assert before <= state.state_details.scheduled_time <= after


@pytest.mark.parametrize("ctor", [S.Scheduled, S.AwaitingRetry, S.Late])
def test_scheduled_states_keep_given_time(ctor):
    when = datetime.now(UTC) + timedelta(hours=1)
    assert ctor(scheduled_time=when).state_details.scheduled_time == when


def test_paused_and_suspended_details():
    paused = S.Paused(timeout_seconds=30, pause_key="k")
    assert paused.state_details.pause_timeout == 30
    assert paused.state_details.pause_key == "k"
    assert paused.state_details.pause_reschedule is False
    assert S.Suspended().state_details.pause_reschedule is True


def test_state_has_id_and_utc_timestamp():
    a, b = S.Completed(), S.Completed()
    assert isinstance(a.id, uuid.UUID)
    assert a.id == a.id
    assert a.id != b.id
    assert a.timestamp.tzinfo is not None
    assert abs(a.timestamp - datetime.now(UTC)) < timedelta(minutes=1)


# --------------------------------------------------------------------------------------------
# Predicates
# --------------------------------------------------------------------------------------------

PREDICATES = {
    StateType.SCHEDULED: "is_scheduled",
    StateType.PENDING: "is_pending",
    StateType.RUNNING: "is_running",
    StateType.COMPLETED: "is_completed",
    StateType.FAILED: "is_failed",
    StateType.CRASHED: "is_crashed",
    StateType.CANCELLED: "is_cancelled",
    StateType.CANCELLING: "is_cancelling",
    StateType.PAUSED: "is_paused",
}


@pytest.mark.parametrize(("ctor", "type_", "name"), CONSTRUCTORS, ids=[c[2] for c in CONSTRUCTORS])
def test_exactly_one_type_predicate_is_true(ctor, type_, name):
    state = ctor()
    for kind, predicate in PREDICATES.items():
        assert getattr(state, predicate)() is (kind is type_), (name, predicate)
    assert state.is_final() is (type_ in TERMINAL_STATES)


# --------------------------------------------------------------------------------------------
# result()
# --------------------------------------------------------------------------------------------


def test_completed_result_returns_value():
    value = {"a": [1, 2]}
    assert S.Completed(data=value).result() is value
    assert S.Cached(data=3).result() == 3
    assert S.Completed(data=0).result(raise_on_failure=False) == 0


def test_failed_result_raises_stored_exception():
    exc = ValueError("boom")
    state = S.Failed(data=exc, message="it failed")
    with pytest.raises(ValueError, match="boom") as info:
        state.result()
    assert info.value is exc


def test_failed_result_without_raising_returns_exception():
    exc = KeyError("k")
    assert S.Failed(data=exc).result(raise_on_failure=False) is exc
    assert S.TimedOut(data=exc).result(raise_on_failure=False) is exc


def test_failed_without_exception_raises_failed_run():
    with pytest.raises(FailedRun, match="it broke"):
        S.Failed(message="it broke").result()
    assert isinstance(S.Failed(message="x").result(raise_on_failure=False), FailedRun)


def test_crashed_raises_crashed_run():
    with pytest.raises(CrashedRun, match="process died"):
        S.Crashed(message="process died").result()
    assert isinstance(S.Crashed().result(raise_on_failure=False), CrashedRun)


def test_cancelled_raises_cancelled_run():
    with pytest.raises(CancelledRun, match="stopped by user"):
        S.Cancelled(message="stopped by user").result()
    assert isinstance(S.Cancelled().result(raise_on_failure=False), CancelledRun)


@pytest.mark.parametrize(
    "ctor",
    [
        S.Pending,
        S.Running,
        S.Scheduled,
        S.AwaitingRetry,
        S.Retrying,
        S.Late,
        S.NotReady,
        S.Cancelling,
    ],
)
@pytest.mark.parametrize("raise_on_failure", [True, False])
def test_non_final_result_raises_unfinished_run(ctor, raise_on_failure):
    with pytest.raises(UnfinishedRun):
        ctor(data=5).result(raise_on_failure=raise_on_failure)


@pytest.mark.parametrize("ctor", [S.Paused, S.Suspended])
@pytest.mark.parametrize("raise_on_failure", [True, False])
def test_paused_result_raises_paused_run(ctor, raise_on_failure):
    with pytest.raises(PausedRun):
        ctor().result(raise_on_failure=raise_on_failure)


@pytest.mark.anyio
async def test_aresult_matches_result():
    assert await S.Completed(data=7).aresult() == 7
    with pytest.raises(ValueError, match="async boom"):
        await S.Failed(data=ValueError("async boom")).aresult()


# --------------------------------------------------------------------------------------------
# str / repr
# --------------------------------------------------------------------------------------------


def test_str_format():
    assert str(S.Completed()) == "Completed()"
    assert str(S.Failed(message="msg")) == "Failed('msg')"
    assert str(S.Cached()) == "Cached(type=COMPLETED)"
    assert str(S.Cached(message="hit")) == "Cached('hit', type=COMPLETED)"
    assert str(S.TimedOut(message="slow")) == "TimedOut('slow', type=FAILED)"
    assert str(S.NotReady()) == "NotReady(type=PENDING)"


def test_repr_names_state_message_and_type():
    assert repr(S.Completed()).startswith("Completed(message=None, type=COMPLETED")
    assert repr(S.Failed(message="msg")).startswith("Failed(message='msg', type=FAILED")
    assert repr(S.Cached()).startswith("Cached(message=None, type=COMPLETED")


# --------------------------------------------------------------------------------------------
# return_value_to_state
# --------------------------------------------------------------------------------------------


def _run_state(ctor, **kwargs):
    """A state as if a task run produced it: it carries a task run id."""
    return ctor(state_details=StateDetails(task_run_id=uuid.uuid4()), **kwargs)


def test_plain_value_becomes_completed():
    value = {"x": 1}
    state = return_value_to_state(value)
    assert state.is_completed()
    assert state.result() is value


def test_none_and_empty_list_become_completed():
    assert return_value_to_state(None).is_completed()
    state = return_value_to_state([])
    assert state.is_completed()
    assert state.result() == []


def test_list_mixing_states_and_values_is_a_plain_value():
    value = [S.Failed(), 1]
    state = return_value_to_state(value)
    assert state.is_completed()
    assert state.result() is value


@pytest.mark.parametrize(
    "ctor", [S.Completed, S.Failed, S.Cancelled, S.Crashed, S.Paused, S.Pending, S.Cached]
)
def test_hand_made_state_is_used_as_is(ctor):
    state = ctor(message="custom")
    assert return_value_to_state(state) is state


def test_hand_made_failed_state_keeps_its_message():
    state = return_value_to_state(S.Failed(message="I decided this failed"))
    assert state.is_failed()
    assert state.message == "I decided this failed"


def test_all_completed_aggregates_to_completed():
    returned = [S.Completed(data=1), S.Cached(data=2), _run_state(S.Completed, data=3)]
    state = return_value_to_state(returned)
    assert state.type is StateType.COMPLETED
    assert state.message == "All states completed."
    assert state.data is returned


def test_any_cancelled_aggregates_to_cancelled():
    state = return_value_to_state([S.Failed(), S.Cancelled(), S.Paused(), S.Completed()])
    assert state.type is StateType.CANCELLED
    assert state.message == "1/4 states cancelled."


def test_any_paused_aggregates_to_paused():
    state = return_value_to_state([S.Failed(), S.Paused(), S.Suspended(), S.Completed()])
    assert state.type is StateType.PAUSED
    assert state.message == "2/4 states paused."


def test_failures_aggregate_to_failed_with_counts():
    exc = RuntimeError("inner")
    state = return_value_to_state([S.Completed(), S.Failed(data=exc), S.Crashed()])
    assert state.type is StateType.FAILED
    assert state.message == "2/3 states failed."
    with pytest.raises(RuntimeError, match="inner"):
        state.result()


def test_non_final_states_aggregate_to_failed():
    state = return_value_to_state([S.Completed(), S.Running(), S.Pending()])
    assert state.type is StateType.FAILED
    assert state.message == "2/3 states are not final."


def test_tuple_of_states_is_aggregated():
    state = return_value_to_state((S.Completed(), S.Failed()))
    assert state.type is StateType.FAILED
    assert state.message == "1/2 states failed."


def test_single_run_state_is_aggregated():
    completed = _run_state(S.Completed, data=1)
    state = return_value_to_state(completed)
    assert state is not completed
    assert state.type is StateType.COMPLETED
    assert state.message == "All states completed."

    failed = _run_state(S.Failed, data=ValueError("x"))
    state = return_value_to_state(failed)
    assert state is not failed
    assert state.type is StateType.FAILED
    assert state.message == "1/1 states failed."


def test_state_returned_by_a_task_run_is_aggregated():
    @fluvial.task
    def good():
        return 5

    @fluvial.task
    def bad():
        raise ValueError("task failed")

    good_state = good(return_state=True)
    assert good_state.is_completed()
    assert good_state.result() == 5
    aggregated = return_value_to_state(good_state)
    assert aggregated is not good_state
    assert aggregated.type is StateType.COMPLETED
    assert aggregated.message == "All states completed."

    bad_state = bad(return_state=True)
    assert bad_state.is_failed()
    aggregated = return_value_to_state(bad_state)
    assert aggregated is not bad_state
    assert aggregated.type is StateType.FAILED
    assert aggregated.message == "1/1 states failed."
    with pytest.raises(ValueError, match="task failed"):
        aggregated.result()


def test_task_returning_states_is_aggregated():
    @fluvial.task
    def returns_states():
        return [S.Completed(data=1), S.Failed(message="nope")]

    state = returns_states(return_state=True)
    assert state.is_failed()
    assert state.message == "1/2 states failed."


def test_task_returning_hand_made_state_takes_it():
    @fluvial.task
    def returns_cancelled():
        return S.Cancelled(message="chose to stop")

    state = returns_cancelled(return_state=True)
    assert state.is_cancelled()
    assert state.message == "chose to stop"


# Hypothesis: the aggregation rule over random lists of state types.

_BY_TYPE = {
    StateType.COMPLETED: [S.Completed, S.Cached, S.RolledBack],
    StateType.FAILED: [S.Failed, S.TimedOut],
    StateType.CRASHED: [S.Crashed],
    StateType.CANCELLED: [S.Cancelled],
    StateType.CANCELLING: [S.Cancelling],
    StateType.PAUSED: [S.Paused, S.Suspended],
    StateType.PENDING: [S.Pending, S.NotReady],
    StateType.RUNNING: [S.Running, S.Retrying],
    StateType.SCHEDULED: [S.Scheduled, S.AwaitingRetry, S.Late],
}


@st.composite
def _states(draw, from_run=st.booleans()):
    type_ = draw(st.sampled_from(ALL_TYPES))
    ctor = draw(st.sampled_from(_BY_TYPE[type_]))
    if draw(from_run):
        return _run_state(ctor)
    return ctor()


def _expected_type(types):
    if all(t is StateType.COMPLETED for t in types):
        return StateType.COMPLETED
    if StateType.CANCELLED in types:
        return StateType.CANCELLED
    if StateType.PAUSED in types:
        return StateType.PAUSED
    return StateType.FAILED


def _expected_message(types):
    n = len(types)
    count = types.count
    if all(t is StateType.COMPLETED for t in types):
        return "All states completed."
    if StateType.CANCELLED in types:
        return f"{count(StateType.CANCELLED)}/{n} states cancelled."
    if StateType.PAUSED in types:
        return f"{count(StateType.PAUSED)}/{n} states paused."
    failed = count(StateType.FAILED) + count(StateType.CRASHED)
    if failed:
        return f"{failed}/{n} states failed."
    not_final = sum(t not in TERMINAL_STATES for t in types)
    return f"{not_final}/{n} states are not final."


@given(st.lists(_states(), min_size=1, max_size=12))
def test_aggregation_rule_over_lists(states):
    types = [s.type for s in states]
    aggregated = return_value_to_state(states)
    assert aggregated.type is _expected_type(types)
    assert aggregated.message == _expected_message(types)
    assert aggregated.data is states


@given(_states(from_run=st.just(True)))
def test_aggregation_rule_for_a_single_run_state(state):
    aggregated = return_value_to_state(state)
    assert aggregated.type is _expected_type([state.type])
    assert aggregated.message == _expected_message([state.type])


@given(_states(from_run=st.just(False)))
def test_single_hand_made_state_is_never_aggregated(state):
    assert return_value_to_state(state) is state


@given(st.lists(_states(), min_size=1, max_size=12))
def test_state_group_counts(states):
    group = StateGroup(states)
    types = [s.type for s in states]
    assert group.total_count == len(states)
    assert group.fail_count == types.count(StateType.FAILED) + types.count(StateType.CRASHED)
    assert group.cancelled_count == types.count(StateType.CANCELLED)
    assert group.paused_count == types.count(StateType.PAUSED)
    assert group.final_count == sum(t in TERMINAL_STATES for t in types)
    assert group.not_final_count == len(states) - group.final_count
    assert group.all_completed() is all(t is StateType.COMPLETED for t in types)
    assert group.any_failed() is (group.fail_count > 0)
    assert group.any_cancelled() is (StateType.CANCELLED in types)
    assert group.any_paused() is (StateType.PAUSED in types)
    assert group.all_final() is all(t in TERMINAL_STATES for t in types)


# --------------------------------------------------------------------------------------------
# StateGroup
# --------------------------------------------------------------------------------------------


def test_state_group_counts_by_type_not_name():
    group = StateGroup(
        [
            S.Completed(),
            S.Cached(),
            S.Failed(),
            S.TimedOut(),
            S.Crashed(),
            S.Cancelled(),
            S.Paused(),
            S.Suspended(),
            S.Running(),
            S.NotReady(),
        ]
    )
    assert group.total_count == 10
    assert group.fail_count == 3
    assert group.cancelled_count == 1
    assert group.paused_count == 2
    assert group.final_count == 6
    assert group.not_final_count == 4
    assert group.type_counts[StateType.COMPLETED] == 2
    assert not group.all_completed()
    assert group.any_failed()
    assert group.any_cancelled()
    assert group.any_paused()
    assert not group.all_final()
    # Prefect's format: "total=10, not_final=4, 'COMPLETED'=2, 'FAILED'=2, ..."
    message = group.counts_message()
    assert "total=10" in message
    assert "not_final=4" in message
    assert "'COMPLETED'=2" in message
    assert "'FAILED'=2" in message
    assert "'CRASHED'=1" in message


def test_state_group_all_completed():
    group = StateGroup([S.Completed(), S.Cached(), S.RolledBack()])
    assert group.all_completed()
    assert group.all_final()
    assert not group.any_failed()
    assert not group.any_cancelled()
    assert not group.any_paused()


# --------------------------------------------------------------------------------------------
# get_state_exception
# --------------------------------------------------------------------------------------------


def test_get_state_exception_returns_stored_exception():
    exc = ValueError("v")
    assert get_state_exception(S.Failed(data=exc)) is exc


def test_get_state_exception_follows_nested_state():
    exc = OSError("disk")
    outer = S.Failed(data=S.Failed(data=S.Crashed(data=exc)))
    assert get_state_exception(outer) is exc


def test_get_state_exception_takes_first_failure_in_list():
    first = ValueError("first")
    second = TypeError("second")
    outer = S.Failed(
        data=[S.Completed(data=1), S.Running(), S.Failed(data=first), S.Failed(data=second)]
    )
    assert get_state_exception(outer) is first


def test_get_state_exception_nested_list_inside_state():
    exc = LookupError("deep")
    outer = S.Failed(data=[S.Completed(), S.Failed(data=[S.Cancelled(data=exc)])])
    assert get_state_exception(outer) is exc


def test_get_state_exception_cancelled_in_list():
    outer = S.Failed(data=[S.Completed(), S.Cancelled(message="stop")])
    exc = get_state_exception(outer)
    assert isinstance(exc, CancelledRun)
    assert "stop" in str(exc)


@pytest.mark.parametrize(
    ("ctor", "exc_type"),
    [
        (S.Failed, FailedRun),
        (S.TimedOut, FailedRun),
        (S.Crashed, CrashedRun),
        (S.Cancelled, CancelledRun),
    ],
)
def test_get_state_exception_without_data_uses_message(ctor, exc_type):
    exc = get_state_exception(ctor(message="explained"))
    assert type(exc) is exc_type
    assert "explained" in str(exc)


def test_aggregated_failure_raises_the_inner_task_exception():
    exc = ZeroDivisionError("div")
    aggregated = return_value_to_state([_run_state(S.Completed), _run_state(S.Failed, data=exc)])
    assert get_state_exception(aggregated) is exc
    with pytest.raises(ZeroDivisionError):
        aggregated.result()
    assert aggregated.result(raise_on_failure=False) is exc
