"""Command line for the benchmarks: ``python -m benchmarks [--quick] [--json PATH]``.

The exit code is always 0 because benchmarks report numbers; budgets are read, not enforced.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .core import Config, format_table, run_all, to_json


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Measure fluvial's overhead against raw Python."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller workloads and 3 repeats, for a smoke run"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark, print one table, optionally write JSON; always return 0."""
    args = _parse_args(argv)
    # Log records would be timed too and would bury the table.
    logging.getLogger("fluvial").setLevel(logging.WARNING)
    config = Config.quick_config() if args.quick else Config()
    results = run_all(config, progress=lambda name: print(f"… {name}", file=sys.stderr))
    print(format_table(config, results))
    if args.json is not None:
        args.json.write_text(to_json(config, results), encoding="utf-8")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
