"""``python -m benchmarks [--quick] [--runner ...] [--scenario ...] [--json PATH] ...``.

The same command as ``fluvial bench``; see docs/benchmarks.md and ``--help``.
"""

from __future__ import annotations

import sys

from fluvial.bench.cli import run

if __name__ == "__main__":
    sys.exit(run(None, "python -m benchmarks"))
