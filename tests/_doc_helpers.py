"""Stand-ins used by test_prefect_examples.py in place of the network.

Prefect's documentation examples call ``httpx.get`` on real URLs. There is no network in the test
environment (and httpx is not a dependency), so ``FakeHttpx`` offers the few names those examples
use: ``get``, ``Response.raise_for_status``/``json``, ``HTTPStatusError`` and ``ConnectError``.
Each instance answers from a ``responder(url, params) -> (status, json)`` callable and counts calls.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ("FakeHttpx", "emitted")


class _HTTPStatusError(Exception):
    def __init__(self, message: str, *, request: Any, response: _Response) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


class _ConnectError(Exception):
    pass


class _Response:
    def __init__(self, url: str, status_code: int, data: Any) -> None:
        self.url = url
        self.status_code = status_code
        self._data = data

    def raise_for_status(self) -> _Response:
        if self.status_code >= 400:
            raise _HTTPStatusError(
                f"Server error '{self.status_code}' for url '{self.url}'",
                request=None,
                response=self,
            )
        return self

    def json(self) -> Any:
        return self._data

    @property
    def text(self) -> str:
        return str(self._data)


Responder = Callable[[str, "dict[str, Any] | None"], "tuple[int, Any]"]


class FakeHttpx:
    """A tiny, thread-safe imitation of the parts of ``httpx`` the docs use.

    The responder may raise (for example ``FakeHttpx.ConnectError``) to simulate a network error.
    """

    HTTPStatusError = _HTTPStatusError
    ConnectError = _ConnectError
    Response = _Response

    def __init__(self, responder: Responder) -> None:
        self._responder = responder
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def get(self, url: str, params: dict[str, Any] | None = None) -> _Response:
        with self._lock:
            self.calls[url] += 1
        status, data = self._responder(url, params)
        return _Response(url, status, data)

    @property
    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())


def emitted(text: str, out: str, caplog: Any) -> bool:
    """True if ``text`` reached stdout (``out``) or a captured log record.

    State hooks and prints may legitimately go to either, depending on ``log_prints``.
    """
    return text in out or any(text in message for message in caplog.messages)
