"""``python -m bench``: run every benchmark that needs no running stack, write bench/results/.

Today that is the simulated day (``bench.simulated_day``). The stack benchmarks of issue 19
(load-balancer overhead, scaling reaction, engine cost, /health/ latency) are not here yet;
``bench.latency`` still runs on its own against a running local stack.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench import simulated_day
from bench.labels import run_label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=simulated_day.ROOT / "bench" / "results")
    args = parser.parse_args()
    label = run_label()
    start = time.perf_counter()
    day = simulated_day.write(args.out, label)
    elapsed = time.perf_counter() - start
    summary = {"label": label, "wall_s": {"simulated_day": round(elapsed, 2)},
               "files": sorted({p.name for p in args.out.iterdir() if p.is_file()} | {"run.json"})}
    (args.out / "run.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(f"{label}\n")
    print(simulated_day.markdown(day["results"]))
    print(f"written under {args.out} in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
