"""``python -m tools.bench`` (``make bench``): benchmark KMS operations over HTTP.

Not part of the product: the installed ``keyledger`` package holds no benchmark, and the
benchmark's own needs (moto, for the comparison) are development dependencies.
"""

from __future__ import annotations

import argparse
import sys

from tools.bench import bench, scenarios


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    bench.add_arguments(parser)
    scenarios.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return scenarios.main(args) if args.suite else bench.main(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
