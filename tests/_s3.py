"""The moto S3 endpoint the tests run against (see the ``s3_server`` fixture in conftest.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

BUCKET = "fluvial-tests"


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 endpoint with one bucket."""

    endpoint_url: str
    bucket: str

    def storage_options(self) -> dict[str, Any]:
        """fsspec options for s3fs against this endpoint, with short timeouts and no retries."""
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
            "config_kwargs": {
                "connect_timeout": 2,
                "read_timeout": 10,
                "retries": {"max_attempts": 2},
            },
            # A fresh s3fs instance per store: fsspec's instance cache would otherwise share
            # one across tests, and with it state such as a closed event loop.
            "skip_instance_cache": True,
        }

    def url(self, prefix: str | None = None) -> str:
        """Return a unique ``s3://`` URL under the test bucket."""
        return f"s3://{self.bucket}/{prefix or uuid.uuid4().hex}"
