"""``python -m fluvial.bench``: the same command as ``fluvial bench``."""

from __future__ import annotations

import sys

from .cli import run

if __name__ == "__main__":
    sys.exit(run(None, "python -m fluvial.bench"))
