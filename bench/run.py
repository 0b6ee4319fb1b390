"""`python -m bench.run [--quick] [NAME...]`: run the benchmarks, write bench/results/.

`make bench` runs them all at full size (under 10 minutes on 2 shared cores), `make
bench QUICK=1` at quick sizes (under 2 minutes). Each writes `results/<name>.json` and,
where a curve says more than a number, a PNG beside it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    accounts,
    backlog,
    console,
    latency,
    listing,
    throughput,
    utilization,
    validation,
    webhooks,
)
from bench.common import RESULTS_DIR, own_vhost

Runner = Callable[[bool, Path, Path], dict[str, Any]]


def _runner(module: Any) -> Runner:
    def run(quick: bool, out_dir: Path, tmp: Path) -> dict[str, Any]:
        sizes = module.QUICK if quick else module.FULL
        result: dict[str, Any] = module.run(sizes, out_dir, tmp)
        return result

    return run


#: In the order `make bench` runs them: cheap and independent first. Each runs on a
#: RabbitMQ vhost of its own (`own_vhost`), so that the delayed messages one leaves
#: behind (the backlog's: thousands of track messages) reach no other run.
BENCHMARKS: dict[str, Runner] = {
    "validation": _runner(validation),
    "latency": _runner(latency),
    "throughput": _runner(throughput),
    "utilization": _runner(utilization),
    "webhooks": _runner(webhooks),
    "accounts": _runner(accounts),
    "backlog": _runner(backlog),
    "console": _runner(console),
    "listing": _runner(listing),
}


def main(argv: list[str] | None = None) -> None:
    """Run the named benchmarks (all by default) and say how long each took."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (all)")
    parser.add_argument("--quick", action="store_true", help="small sizes (under 2 minutes)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results go")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    started = time.monotonic()
    for name in names:
        begun = time.monotonic()
        with own_vhost(name), tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
            BENCHMARKS[name](args.quick, args.out, Path(tmp))
        print(f"bench {name}: {time.monotonic() - begun:.0f} s", flush=True)
    print(f"bench: {len(names)} benchmark(s) in {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
