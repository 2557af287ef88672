"""The runner conformance suite over fluvial's runners, each on real infrastructure.

One parametrized class: every test shows up once per runner (``test_...[thread]``,
``[process]``). A runner joins by adding a :class:`Backend` to ``BACKENDS`` and its name to
``BACKEND_PARAMS`` (a cluster as ``pytest.param(name, marks=[pytest.mark.slow])``). A factory
gets the pytest ``request``, so a runner on a cluster can take a session-scoped cluster fixture
with ``request.getfixturevalue(...)``. A backend whose workers need their own lock manager for
SERIALIZABLE isolation gives a ``lock_manager`` factory (else the suite's default is used).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fluvial.runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner
from fluvial.storage import FileSystemLockManager, LockManager, MemoryLockManager
from fluvial.testing import RunnerCapabilities, RunnerConformance


@dataclasses.dataclass(frozen=True)
class Backend:
    """How to make a fresh runner, and what it can do."""

    make: Callable[[pytest.FixtureRequest], TaskRunner]
    capabilities: RunnerCapabilities
    #: test name -> reason: known bugs, marked strict xfail so a fix shows up as XPASS.
    known_bugs: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Makes the lock manager for SERIALIZABLE isolation; None: the suite's default.
    lock_manager: Callable[[pytest.FixtureRequest], LockManager] | None = None


BACKENDS: dict[str, Backend] = {
    "thread": Backend(
        lambda request: ThreadPoolTaskRunner(max_workers=4),
        RunnerCapabilities(shares_memory=True, survives_worker_death=False),
    ),
    "process": Backend(
        lambda request: ProcessPoolTaskRunner(max_workers=2),
        RunnerCapabilities(shares_memory=False, shares_filesystem=True),
    ),
}


def _ray_runner(request: pytest.FixtureRequest) -> TaskRunner:
    from fluvial.runners import RayTaskRunner

    request.getfixturevalue("ray_session")  # one Ray per session, reused by every runner
    return RayTaskRunner()


def _ray_locks(request: pytest.FixtureRequest) -> LockManager:
    from fluvial.storage import RayLockManager

    request.getfixturevalue("ray_session")
    return RayLockManager()


BACKENDS["ray"] = Backend(
    _ray_runner,
    RunnerCapabilities(shares_memory=False, shares_filesystem=True),
    lock_manager=_ray_locks,
)


def _dask_runner(fixture: str) -> Callable[[pytest.FixtureRequest], TaskRunner]:
    def make(request: pytest.FixtureRequest) -> TaskRunner:
        from fluvial.runners import DaskTaskRunner

        target = request.getfixturevalue(fixture)
        address = target if isinstance(target, str) else target.scheduler_address
        return DaskTaskRunner(address=address)

    return make


def _dask_locks(fixture: str) -> Callable[[pytest.FixtureRequest], LockManager]:
    def make(request: pytest.FixtureRequest) -> LockManager:
        from fluvial.storage import DaskLockManager

        target = request.getfixturevalue(fixture)
        return DaskLockManager(target if isinstance(target, str) else target.scheduler_address)

    return make


BACKENDS["dask"] = Backend(
    _dask_runner("dask_cluster"),
    RunnerCapabilities(shares_memory=False, shares_filesystem=True),
    lock_manager=_dask_locks("dask_cluster"),
)
BACKENDS["dask-cli"] = Backend(
    _dask_runner("cli_cluster"),
    RunnerCapabilities(shares_memory=False, shares_filesystem=True),
    lock_manager=_dask_locks("cli_cluster"),
)

BACKEND_PARAMS: list[Any] = ["thread", "process", "ray", "dask", "dask-cli"]


class TestBuiltinRunners(RunnerConformance):
    @pytest.fixture(params=BACKEND_PARAMS)
    def backend(self, request: pytest.FixtureRequest) -> Backend:
        backend = BACKENDS[request.param]
        reason = backend.known_bugs.get(request.function.__name__)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
        return backend

    @pytest.fixture
    def runner(self, backend: Backend, request: pytest.FixtureRequest) -> TaskRunner:
        return backend.make(request)

    @pytest.fixture
    def runner_capabilities(self, backend: Backend) -> RunnerCapabilities:
        return backend.capabilities

    @pytest.fixture
    def lock_manager(
        self, backend: Backend, request: pytest.FixtureRequest, tmp_path: Path
    ) -> Iterator[LockManager]:
        """The backend's own lock manager, else the suite's default for its capabilities."""
        if backend.lock_manager is not None:
            manager = backend.lock_manager(request)
            yield manager
            close = getattr(manager, "close", None)
            if close is not None:
                close()  # a connection it opened here, before the cluster goes away
        elif backend.capabilities.shares_memory:
            yield MemoryLockManager()
        elif backend.capabilities.shares_filesystem:
            yield FileSystemLockManager(tmp_path / "locks")
        else:
            pytest.skip("no lock manager works across this backend's workers")
