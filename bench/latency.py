"""Load-balancer overhead on a running local stack: through Nginx (TLS) vs straight to a worker.

Both paths are measured in the same run, interleaved, so machine noise hits them alike; the
result is a ratio plus the absolute mean against the 500 ms response-time target.

    .venv/bin/python -m bench.latency --stack local --requests 300
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from engine.workspace import open_stack

TARGET_MEAN_MS = 500.0


def timed_get(client: httpx.Client, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    response = client.get(url, headers=headers)
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stack", default="local")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--path", default="/whoami/")
    args = parser.parse_args()
    outputs = open_stack(args.stack).outputs()
    site = outputs["siteUrl"].value
    controller = outputs["controllerPrivateIp"].value
    worker = outputs["workers"].value[0]["privateIp"]
    direct_url = f"http://{worker}:8000{args.path}"
    via_lb: list[float] = []
    direct: list[float] = []
    # verify=False: the local controller's certificate is self-signed.
    with httpx.Client(verify=False, timeout=10) as lb, httpx.Client(timeout=10) as plain:
        for _ in range(10):  # warm connections and caches on both paths
            timed_get(lb, f"{site}{args.path}", {})
            timed_get(plain, direct_url, {"Host": controller})
        for _ in range(args.requests):
            via_lb.append(timed_get(lb, f"{site}{args.path}", {}))
            direct.append(timed_get(plain, direct_url, {"Host": controller}))
    lb_mean, direct_mean = statistics.mean(via_lb), statistics.mean(direct)
    p95 = statistics.quantiles(via_lb, n=20)[-1]
    print(f"requests per path:           {args.requests} ({args.path})")
    print(f"through Nginx (TLS, LB):     mean {lb_mean:.2f} ms, p95 {p95:.2f} ms")
    print(f"straight to {worker}:  mean {direct_mean:.2f} ms")
    print(f"ratio LB / direct:           {lb_mean / direct_mean:.2f}")
    budget = lb_mean / TARGET_MEAN_MS
    print(f"mean vs {TARGET_MEAN_MS:.0f} ms target:       {budget:.3f} of the budget")


if __name__ == "__main__":
    main()
