"""Resume a recorded run from the command line: ``python resume_run.py RUN_ID``.

Storage comes from ``CRASH_STORE`` (and ``CRASH_S3_ENDPOINT`` for ``s3://``); prints the
result as JSON on its last line. The crash tests run it from another working directory and
``FLUVIAL_HOME`` than the run it resumes.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from fluvial.runs import resume
from fluvial.storage import ResultStore


def _storage() -> Any:
    url = os.environ["CRASH_STORE"]
    if not url.startswith("s3://"):
        return url
    return ResultStore.from_url(
        url,
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": os.environ["CRASH_S3_ENDPOINT"], "region_name": "us-east-1"},
    )


if __name__ == "__main__":
    print(json.dumps(resume(sys.argv[1], _storage())))
