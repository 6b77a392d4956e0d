"""Background jobs (downloads, quantization): a thread each, progress and Cancel, visible from
every browser tab because the JobManager lives in the process-wide Runtime."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zoe_panel.errors import ZoePanelError

log = logging.getLogger(__name__)


@dataclass
class Job:
    id: str
    kind: str
    title: str
    state: str = "running"  # running | done | failed | cancelled
    progress: float = 0.0
    detail: str = ""
    error: str = ""
    result: Any = None
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.state == "running"

    def report(self, fraction: float, detail: str = "") -> None:
        self.progress = max(0.0, min(1.0, fraction))
        if detail:
            self.detail = detail


JobFn = Callable[[Job], Any]


class JobManager:
    def __init__(self, on_finish: Callable[[Job], None] = lambda job: None) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.on_finish = on_finish

    def submit(self, kind: str, title: str, fn: JobFn, *, exclusive_key: str | None = None) -> Job:
        """Run ``fn(job)`` in a thread. ``exclusive_key``: refuse a second running job with the same key."""
        with self._lock:
            if exclusive_key and any(
                j.active and j.kind == kind and j.title == exclusive_key for j in self._jobs.values()
            ):
                raise ZoePanelError(f"{kind} of {exclusive_key} is already running")
            job = Job(uuid.uuid4().hex[:8], kind, exclusive_key or title)
            self._jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, fn), name=f"zoe-job-{kind}", daemon=True).start()
        return job

    def _run(self, job: Job, fn: JobFn) -> None:
        try:
            job.result = fn(job)
            job.state = "cancelled" if job.cancel.is_set() else "done"
            job.progress = 1.0 if job.state == "done" else job.progress
        except ZoePanelError as e:
            job.state = "cancelled" if job.cancel.is_set() else "failed"
            job.error = str(e)
        except Exception as e:  # a job thread must report, never die silently (logged)
            log.exception("job %s failed", job.id)
            job.state, job.error = "failed", f"{type(e).__name__}: {e}"
        job.ended_at = time.time()
        try:
            self.on_finish(job)
        except Exception:  # logged
            log.exception("job finish hook failed")

    def jobs(self, *, include_finished_s: float = 600.0) -> list[Job]:
        now = time.time()
        with self._lock:
            return sorted(
                (j for j in self._jobs.values() if j.active or (now - (j.ended_at or now)) < include_finished_s),
                key=lambda j: j.started_at,
                reverse=True,
            )

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is not None:
            job.cancel.set()

    def wait(self, job: Job, timeout_s: float) -> Job:
        deadline = time.monotonic() + timeout_s
        while job.active and time.monotonic() < deadline:
            time.sleep(0.05)
        return job
