"""Real crash tests: a flow process killed with SIGKILL is resumed by id from another process.

The flow (tests/runs/crash_flow.py) runs N tasks; every execution of a task leaves a file. The
tasks from ``hold_from`` on hold until released, so the process is killed while exactly the
others have finished. Another process, with another working directory and ``FLUVIAL_HOME``,
resumes the run by its id from the same storage URL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _s3 import S3Server
from fluvial.runs import RunRecord, list_runs, read_run, resume
from fluvial.storage import ResultStore

HERE = Path(__file__).parent
SCRIPT = HERE / "crash_flow.py"
RESUMER = HERE / "resume_run.py"


class Crash:
    """One crash-and-resume scenario: its folders, storage and environment."""

    def __init__(self, tmp_path: Path, store_url: str, n: int, **env: str) -> None:
        self.tmp = tmp_path
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.store_url = store_url
        self.n = n
        self.env = {
            **os.environ,
            "CRASH_STORE": store_url,
            "CRASH_MARKS": str(self.marks),
            "CRASH_N": str(n),
            **env,
        }
        self.env.pop("CRASH_HOLD_FROM", None)
        self.storage: Any = store_url

    def folder(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(exist_ok=True)
        return path

    def executions(self) -> Counter[int]:
        """How many times each task ran, from the side-effect files."""
        return Counter(int(p.name.split("-")[1]) for p in self.marks.glob("run-*"))

    def crash(self, hold_from: int, how: signal.Signals = signal.SIGKILL) -> RunRecord:
        """Run the flow until the tasks before *hold_from* finished, then signal it."""
        env = {
            **self.env,
            "CRASH_HOLD_FROM": str(hold_from),
            "FLUVIAL_HOME": str(self.folder("h1")),
        }
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT)],
            cwd=self.folder("first"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            record = self._wait_for_finished(process, hold_from)
            os.kill(process.pid, how)
            process.wait(timeout=30)
            assert process.returncode == -how
        finally:
            (self.marks / "release").touch()  # held tasks on surviving workers fail and end
            _kill_group(process)
        return record

    def _wait_for_finished(self, process: subprocess.Popen[bytes], count: int) -> RunRecord:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _, err = process.communicate()
                pytest.fail(f"the flow process ended early:\n{err.decode()[-3000:]}")
            runs = list_runs(self.storage)
            if runs:
                record = read_run(runs[0].id, self.storage)
                assert record.task_runs is not None
                if sum(t.state == "COMPLETED" for t in record.task_runs) >= count:
                    return record
            time.sleep(0.1)
        pytest.fail("the flow did not finish its first tasks in time")

    def resume_elsewhere(self, run_id: uuid.UUID) -> Any:
        """Resume from another process, working directory and FLUVIAL_HOME."""
        env = {**self.env, "FLUVIAL_HOME": str(self.folder("h2"))}
        done = subprocess.run(
            [sys.executable, str(RESUMER), str(run_id)],
            cwd=self.folder("second"),
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return json.loads(done.stdout.decode().strip().splitlines()[-1])

    def uninterrupted(self, store_url: str) -> Any:
        """The result of the same flow run without a crash, in a fresh process and storage."""
        marks = self.folder("marks-uninterrupted")
        env = {**self.env, "CRASH_STORE": store_url, "CRASH_MARKS": str(marks)}
        env["FLUVIAL_HOME"] = str(self.folder("h3"))
        done = subprocess.run(
            [sys.executable, str(SCRIPT)],
            cwd=self.folder("third"),
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return json.loads(done.stdout.decode().strip().splitlines()[-1])


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    # The process runner's workers share the flow process's session: end any left over.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.stdout is not None:
        process.stdout.close()
    if process.stderr is not None:
        process.stderr.close()


def check_resumed(crash: Crash, hold_from: int, uninterrupted_store: str) -> None:
    """Crash, resume elsewhere, and check executions, result and journal."""
    before_kill = crash.crash(hold_from)
    assert before_kill.task_runs is not None
    finished = {t.name for t in before_kill.task_runs if t.state == "COMPLETED"}
    assert len(finished) >= hold_from
    executed_before = crash.executions()
    finished_indexes = set(range(hold_from))

    result = crash.resume_elsewhere(before_kill.id)

    executed_after = crash.executions()
    for i in range(crash.n):
        if i in finished_indexes:
            assert executed_after[i] == executed_before[i] == 1, f"finished task {i} ran again"
        else:
            assert executed_after[i] == executed_before[i] + 1, f"task {i} did not run once more"
    assert result == crash.uninterrupted(uninterrupted_store) == [i * i for i in range(crash.n)]
    _check_journal(read_run(before_kill.id, crash.storage), hold_from, crash.n)

    # Resuming a completed run gives its stored result and runs nothing.
    assert resume(before_kill.id, crash.storage) == result
    assert crash.executions() == executed_after


def _check_journal(record: RunRecord, hold_from: int, n: int) -> None:
    assert record.state_name == "Completed"
    assert [a.attempt for a in record.attempts] == [1, 2]
    first, second = record.attempts
    assert first.state_name == "Running"  # killed: no last word
    assert first.ended is None
    assert second.state_name == "Completed"
    assert second.ended is not None
    assert first.pid != second.pid
    names = [name for name, _ in record.history]
    assert names.count("Running") == 2
    assert names[-1] == "Completed"
    assert record.task_runs is not None
    resumed = [t for t in record.task_runs if t.flow_attempt == 2]
    assert len(resumed) == n
    by_state = Counter(t.state_name for t in resumed)
    assert by_state == {"Cached": hold_from, "Completed": n - hold_from}
    assert all(t.result_ref and t.cache_key for t in resumed)
    first_attempt = {t.cache_key for t in record.task_runs if t.flow_attempt == 1 and t.cache_key}
    assert {t.cache_key for t in resumed if t.is_cached} == first_attempt


def test_thread_runner_on_local_disk(tmp_path: Path) -> None:
    crash = Crash(tmp_path, str(tmp_path / "store"), n=6)
    check_resumed(crash, hold_from=3, uninterrupted_store=str(tmp_path / "store-2"))


def test_process_runner_on_local_disk(tmp_path: Path) -> None:
    crash = Crash(tmp_path, str(tmp_path / "store"), n=5, CRASH_RUNNER="process")
    check_resumed(crash, hold_from=2, uninterrupted_store=str(tmp_path / "store-2"))


def test_thread_runner_on_s3(tmp_path: Path, s3_server: S3Server) -> None:
    url = s3_server.url()
    crash = Crash(tmp_path, url, n=5, CRASH_S3_ENDPOINT=s3_server.endpoint_url)
    crash.storage = ResultStore.from_url(url, **s3_server.storage_options())
    check_resumed(crash, hold_from=2, uninterrupted_store=s3_server.url())


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    """A small LocalCluster whose scheduler the flow processes connect to by address."""
    import distributed

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=5, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def test_dask_runner_on_local_disk(tmp_path: Path, dask_address: str) -> None:
    crash = Crash(
        tmp_path, str(tmp_path / "store"), n=5, CRASH_RUNNER="dask", CRASH_DASK_ADDRESS=dask_address
    )
    check_resumed(crash, hold_from=2, uninterrupted_store=str(tmp_path / "store-2"))


def test_sigterm_flushes_the_journal_before_the_process_ends(tmp_path: Path) -> None:
    crash = Crash(tmp_path, str(tmp_path / "store"), n=4)
    run_id = crash.crash(hold_from=2, how=signal.SIGTERM).id
    record = read_run(run_id, crash.storage)
    assert record.state == "CRASHED"
    assert record.attempts[0].ended is not None
    assert record.task_counts["Completed"] == 2
    assert crash.resume_elsewhere(run_id) == [0, 1, 4, 9]
    assert crash.executions() == {0: 1, 1: 1, 2: 2, 3: 2}
