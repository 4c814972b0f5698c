"""A system under test as a child process: started, sampled with psutil, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

import psutil


class SystemProcess:
    """One subprocess with its output in a log file, and its process tree sampled.

    Every `interval` seconds the sampler adds up RSS and CPU time (user + system)
    over the process and its children; `peak_rss` is the largest RSS sum seen, and
    `cpu_seconds()` the tree's CPU time now. CPU time is read per thread from
    /proc/PID/task/TID/schedstat (nanoseconds) where the kernel has it, else from psutil
    (clock ticks of 10 ms, too coarse for a run that spends a fraction of a second of CPU);
    a thread or process that ended counts with its last sample.
    """

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.command = command
        self.env = env
        self.cwd = cwd
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0
        self._cpu: dict[tuple[int, int], float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sampler: threading.Thread | None = None

    def start(self, interval: float = 0.2) -> SystemProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it for its lifetime
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._sampler = threading.Thread(target=self._sample_loop, args=(interval,), daemon=True)
        self._sampler.start()
        return self

    def _tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def sample(self) -> None:
        rss = 0
        for p in self._tree():
            try:
                with p.oneshot():
                    rss += p.memory_info().rss
                    threads = thread_cpu_seconds(p.pid)
                    if not threads:
                        t = p.cpu_times()
                        threads = {0: t.user + t.system}
                with self._lock:
                    for tid, seconds in threads.items():
                        self._cpu[(p.pid, tid)] = seconds
            except psutil.Error:
                continue
        self.peak_rss = max(self.peak_rss, rss)

    def _sample_loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(interval)

    def cpu_seconds(self) -> float:
        """CPU time of the tree so far (processes that ended count with their last sample)."""
        self.sample()
        with self._lock:
            return sum(self._cpu.values())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM, then SIGKILL of the process group after `timeout`; the exit status."""
        self._stop.set()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # children left behind by the system (if any) go with their group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of each live thread of `pid` from schedstat (its first field: time on
    the CPU in ns); {} where /proc has no schedstat (another OS, or a kernel without it)."""
    out: dict[int, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[int(tid)] = int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return out
