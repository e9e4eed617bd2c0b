"""A CPU-bound Dask job on a cluster started from the command line: interpool worker
interpreters (``dask worker --nworkers 1 --nthreads 2 --preload interpool.dask``) against two
worker processes (``--nworkers 2 --nthreads 1``) and Dask's default threads (``--nworkers 1
--nthreads 2``).

Issue 23's benchmark. The three clusters (each a ``dask scheduler`` and its ``dask worker``
command, with Dask's nanny, on 127.0.0.1) run side by side, and the job runs on each in turn,
round after round, the order rotated (a shared machine's noise then falls on all three). The
job: a ``dask.bag`` of 16 partitions, each the sum of squares below ~1.5 M in pure Python
(``workloads.spin``), summed; every result is checked against the closed form. Timed: the
whole ``compute()`` on a warm cluster (after one untimed run), median and best of ``--rounds``.
Memory: the resident memory of the workers' process trees (each ``dask worker`` command, its
nannies and their worker processes; the scheduler is left out), idle after the warm-up, and
the peak sampled every 10 ms while the job runs.

    python benchmarks/bench_dask.py [--rounds N] [--tasks N] [--n N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from bench_groupby import tree_rss
from dask_cluster import Cluster
from suite import machine_line

import workloads

HERE = os.path.dirname(os.path.abspath(__file__))


def configs(workers: int) -> dict[str, list[str]]:
    """The three clusters' ``dask worker`` options, for ``workers`` parallel tasks each."""
    n = str(workers)
    return {
        f"interpool (1 process x {n} interpreters)": [
            "--nworkers",
            "1",
            "--nthreads",
            n,
            "--preload",
            "interpool.dask",
        ],
        f"processes ({n} x 1 thread)": ["--nworkers", n, "--nthreads", "1"],
        f"threads (1 process x {n})": ["--nworkers", "1", "--nthreads", n],
    }


def processes(pid: int) -> list[tuple[str, int]]:
    """(command, resident bytes) of ``pid`` and its descendants."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/cmdline") as f:
                argv = f.read().split("\0")
            command = " ".join(a for a in argv[:4] if a)
            found.append((command[-60:], tree_rss(p) - sum(_children_rss(p))))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return found


def _children_rss(pid: int) -> list[int]:
    rss = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                rss.extend(tree_rss(int(c)) for c in f.read().split())
    except OSError:
        pass
    return rss


def job(client: Any, inputs: list[int]) -> int:
    import dask.bag as db

    total: int = db.from_sequence(inputs, npartitions=len(inputs)).map(workloads.spin).sum().compute()
    return total


class Sampler:
    """Peak resident memory of some process trees, sampled every 10 ms in a thread."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(tree_rss(pid) for pid in self.pids))
            self._stop.wait(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="parallel tasks per cluster (default 2)")
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--n", type=int, default=1_500_000, help="each task sums the squares below about this")
    options = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")
    from distributed import Client

    configs_ = configs(options.workers)
    processes_per_cluster = [1, options.workers, 1]
    inputs = [options.n + i for i in range(options.tasks)]
    expected = sum(workloads.spin_expected(n) for n in inputs)
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    print(machine_line())
    print(f"job: dask.bag of {options.tasks} partitions, sum of squares below ~{options.n:,} each, summed")
    clusters: dict[str, Cluster] = {}
    clients: dict[str, Client] = {}
    workers: dict[str, list[int]] = {}
    times: dict[str, list[float]] = {name: [] for name in configs_}
    idle: dict[str, int] = {}
    peak: dict[str, int] = dict.fromkeys(configs_, 0)
    breakdown: dict[str, str] = {}
    ok = True
    try:
        for name, args in configs_.items():
            cluster = clusters[name] = Cluster(env=env, cwd=HERE)
            before = set(cluster.pids().values())
            cluster.add_worker(*args)
            workers[name] = [pid for pid in cluster.pids().values() if pid not in before]
        for (name, cluster), count in zip(clusters.items(), processes_per_cluster, strict=True):
            client = clients[name] = Client(scheduler_file=cluster.scheduler_file, timeout=60)
            client.wait_for_workers(count, timeout=120)
            if job(client, inputs) != expected:  # warm-up: imports, worker interpreters
                print(f"{name}: WRONG RESULT in the warm-up")
                ok = False
        time.sleep(1)
        for name in configs_:
            idle[name] = sum(tree_rss(pid) for pid in workers[name])
            parts = [f"{rss / 2**20:.0f} MiB {command}" for pid in workers[name] for command, rss in processes(pid)]
            breakdown[name] = "; ".join(parts)
        names = list(configs_)
        for r in range(options.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                with Sampler(workers[name]) as sampler:
                    start = time.perf_counter()
                    total = job(clients[name], inputs)
                    times[name].append(time.perf_counter() - start)
                peak[name] = max(peak[name], sampler.peak)
                if total != expected:
                    print(f"{name}: WRONG RESULT {total} != {expected}")
                    ok = False
    finally:
        for name, client in clients.items():
            try:
                client.shutdown()
                client.close()
            except Exception as exc:  # the clusters are ended below anyway
                print(f"{name}: shutdown: {exc!r}")
        for cluster in clusters.values():
            cluster.close()

    mib = 1024 * 1024
    print(f"\n{'configuration':40} {'median s':>9} {'best s':>8} {'idle RSS':>10} {'peak RSS':>10}")
    for name in configs_:
        print(
            f"{name:40} {statistics.median(times[name]):9.3f} {min(times[name]):8.3f} "
            f"{idle[name] / mib:8.0f} MiB {peak[name] / mib:6.0f} MiB"
        )
    print("\nidle, process by process:")
    for name in configs_:
        print(f"  {name}: {breakdown.get(name, '?')}")
    ip, pr, th = (min(times[name]) for name in configs_)
    ip_mem, pr_mem, th_mem = (peak[name] for name in configs_)
    # Best of the rounds: on a shared machine noise only ever adds time (see suite.py).
    print(f"\nprocesses / interpool time (best): {pr / ip:.2f}x   threads / interpool time (best): {th / ip:.2f}x")
    print(
        f"interpool / processes memory: {ip_mem / pr_mem:.2f}x peak, "
        f"{idle[names[0]] / idle[names[1]]:.2f}x idle   interpool / threads: {ip_mem / th_mem:.2f}x peak"
    )
    print(f"results checked: {'all right' if ok else 'WRONG'} ({options.rounds} rounds + warm-up each)")
    print(
        f"verdict: interpool {'not slower than' if ip <= pr * 1.05 else 'SLOWER than'} the processes "
        f"(best times, within 5%), {'less' if ip_mem < pr_mem else 'NOT less'} memory (peak)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
