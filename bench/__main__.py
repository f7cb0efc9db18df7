"""Run every benchmark in one invocation: ``python -m bench [--quick] [--json] [NAME ...]``.

Each prints its table with the ratio to the plain-Python or raw-client limit measured in the
same run. NAME picks benchmarks by module (b1_dispatch, b6_nats, ...); B6 and B7 need the brokers.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS = [
    "b1_dispatch",
    "b2_async",
    "b3_pipeline",
    "b4_eventstore",
    "b5_codec",
    "b6_nats",
    "b6_kafka",
    "b6_rabbitmq",
    "b6_redis",
    "b7_scale_out",
    "b8_defaults",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="smaller workloads")
    parser.add_argument("--json", action="store_true", help="one JSON document per table")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    passed = [flag for flag, on in (("--quick", args.quick), ("--json", args.json)) if on]
    for name in args.names or BENCHMARKS:
        module = importlib.import_module(f"bench.{name}")
        module.main(passed)


if __name__ == "__main__":
    main()
