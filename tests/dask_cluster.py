"""A Dask cluster started from the command line on loopback (``dask scheduler`` and ``dask
worker`` processes), for tests/test_dask.py and benchmarks/bench_dask.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

# What the processes' output must not contain (an abort, a corrupted heap).
HEAP_ERRORS = ("free(): ", "double free", "corruption", "munmap_chunk", "Fatal Python error", "Segmentation fault")


def dask_command() -> str:
    found = os.path.join(os.path.dirname(sys.executable), "dask")
    return found if os.path.exists(found) else shutil.which("dask") or "dask"


class Cluster:
    """``dask scheduler`` on 127.0.0.1 (a free port, found through its scheduler file) and the
    workers started with :meth:`add_worker`. Each process leads its own process group (a
    worker's nanny and worker, interpool's lane processes), which :meth:`close` ends."""

    def __init__(self, env: dict[str, str] | None = None, cwd: str | None = None) -> None:
        self.work = tempfile.mkdtemp(prefix="interpool-dask-")
        self.scheduler_file = os.path.join(self.work, "scheduler.json")
        self.env = env
        self.cwd = cwd
        self.procs: list[tuple[str, subprocess.Popen[str], IO[str]]] = []
        self._start("scheduler", ["scheduler", "--scheduler-file", self.scheduler_file, "--port", "0"])

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[str]:
        log = open(os.path.join(self.work, f"{name}.log"), "w+")  # closed by close()
        proc = subprocess.Popen(
            [dask_command(), *args, "--no-dashboard", "--host", "127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.procs.append((name, proc, log))
        return proc

    def add_worker(self, *args: str) -> subprocess.Popen[str]:
        """Start ``dask worker ADDRESS`` with ``args`` (``--nthreads 2 --preload interpool.dask``...).
        The address is given, not ``--scheduler-file``: without an address, Dask's command line
        takes the first of a preload's options for it (and the preload does not get it)."""
        name = f"worker{sum(1 for n, _, _ in self.procs if n.startswith('worker'))}"
        return self._start(name, ["worker", self.wait_ready(), *args])

    def wait_ready(self, timeout: float = 60) -> str:
        """Wait for the scheduler to listen: its address."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with open(self.scheduler_file) as file:
                    address = json.load(file)["address"]
                if isinstance(address, str):
                    return address
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the scheduler did not start in {timeout} s:\n{self.output()}")
            for name, proc, _ in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.output()}")
            time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc, _ in self.procs}

    def output(self) -> str:
        text = ""
        for name, _, log in self.procs:
            log.flush()
            log.seek(0)
            text += f"--- {name}\n{log.read()}"
        return text

    def wait(self, timeout: float) -> dict[str, Any]:
        """Wait for every process to exit by itself (after ``client.shutdown()``): their exit
        statuses (``None``: still running at ``timeout``)."""
        deadline = time.monotonic() + timeout
        codes: dict[str, Any] = {}
        for name, proc, _ in self.procs:
            try:
                codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[name] = None
        return codes

    def close(self) -> None:
        """End every process group that is still there, then remove the logs."""
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # what is left of the group (a nanny's child)
            proc.wait()
        for _, _, log in self.procs:
            log.close()
        shutil.rmtree(self.work, ignore_errors=True)


def _signal_group(proc: subprocess.Popen[str], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group this process leads (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass
