"""``python -m fluvial``: the ``fluvial`` command (see :mod:`fluvial.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
