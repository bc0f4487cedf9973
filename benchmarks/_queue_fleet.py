"""The two sides bench_queue.py measures, each on a queue of its own: SAQ worker processes
(`_queue_worker.py`) and the waits they run, jobpoll's or the bare floor's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from _queue_worker import BARE_INTERVALS, bare_job, make_waits

from jobpoll._saq_links import Links
from jobpoll.testing import FakeJobsService

WORKER = Path(__file__).parent / "_queue_worker.py"


class Workers:
    """SAQ worker processes of one queue, of one side (jobpoll's waits, or the bare floor)."""

    def __init__(
        self,
        redis_url: str,
        queue: str,
        service: FakeJobsService,
        policy: str,
        concurrency: int,
        mend_interval: float = 60.0,
        side: str = "jobpoll",
    ) -> None:
        self.args = (redis_url, queue, service.base_url, service.api_key, policy, concurrency)
        self.mend_interval = mend_interval
        self.side = side
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start(self) -> str:
        redis_url, queue, base_url, api_key, policy, concurrency = self.args
        name = f"w{self.started}"
        self.started += 1
        command = [sys.executable, str(WORKER), "--redis", redis_url, "--queue", queue]
        command += ["--base-url", base_url, "--api-key", api_key, "--name", name]
        command += ["--policy", policy, "--concurrency", str(concurrency)]
        command += ["--mend-interval", str(self.mend_interval), "--side", self.side]
        self.processes[name] = subprocess.Popen(command)
        return name

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes.values():
            with open(f"/proc/{process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    async def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 30)
        self.processes.clear()


class Side:
    """Waits of one side on one queue: jobpoll's (`SaqWaits`), or the bare floor's jobs."""

    def __init__(self, side: str, redis_url: str, queue: str, policy: str) -> None:
        self.side = side
        self.waits = make_waits(redis_url, queue, policy)
        self.queue = self.waits.queue
        self.interval = BARE_INTERVALS[policy]
        self.links = Links(queue=self.queue, poll_timeout=10.0, outcome_ttl=60.0)

    async def start(self, ids: list[str]) -> None:
        if self.side == "jobpoll":
            await self.waits.submit(ids)
            return
        for job_id in ids:
            await self.queue.enqueue("bare_poll", **bare_job(job_id, 0, self.interval))

    async def live_keys(self, job_id: str, polls: int) -> list[str]:
        """The Redis keys of one waiting job: the bare job; or the wait's kept checkpoint and
        its record (parked, it has no SAQ job)."""
        if self.side == "bare":
            return [self.queue.job_id(f"bare:{job_id}:{polls}")]
        return [self.links.saved_key(job_id), self.links.wait_key(job_id)]

    def queue_keys(self) -> list[str]:
        """The sorted sets a waiting job has an entry in: SAQ's `incomplete` (the bare job),
        jobpoll's parked set (a parked wait)."""
        if self.side == "bare":
            return [self.queue.namespace("incomplete")]
        return [self.links.parked_key]

    async def close(self) -> None:
        await self.queue.disconnect()
