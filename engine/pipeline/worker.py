"""`opsconsole pipeline --worker`: one of several processes (on one or many machines) sharing a run.

The first worker started with a given set of work options creates the run and ingests (fetches,
normalizes, groups) once, queueing every event in Postgres; workers started later with the same
options join that open run (or name it with --run-id). Each worker then loops: claim up to
`event_batch_size` events (FOR UPDATE SKIP LOCKED, with a lease), process them exactly like the
single-process pipeline (stored results are reused, each result committed as it returns), mark
each done together with the worker's accounting, renew its leases in the background. A worker
that dies stops renewing; its events become claimable once the lease runs out. When a worker finds
nothing left to claim and nothing held by anyone, it tries to finalize: a row lock on the run makes
exactly one of them write the status and the merged summary.
"""

from __future__ import annotations

import re
from typing import Any

import anyio

from engine.errors import BadInput, OpsError
from engine.events import Summary
from engine.files import atomic_write_json
from engine.pipeline.experiments import Registry, experiment_hashes
from engine.pipeline.gamma import Window
from engine.pipeline.job import PipelineJob, git_sha
from engine.pipeline.normalize import EventGroup
from engine.pipeline.options import PipelineOptions
from engine.pipeline.repository import PipelineRepository
from engine.pipeline.summary import MAX_FAILURES_LISTED, RunStats
from engine.pipeline.workqueue import Claim, QueueCounts, WorkQueue, run_key, worker_id
from engine.redact import redact
from engine.runner import JobContext

WORKER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
STATS_FAILURES_KEPT = 100  # per worker row; processing_failures has every one


def _sum_into(target: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and hasattr(target, key):
            setattr(target, key, getattr(target, key) + value)


def merge_worker_stats(run_id: str, counts: QueueCounts, ingest: dict[str, Any],
                       workers: dict[str, dict[str, Any]]) -> tuple[RunStats, dict[str, dict[str, int]]]:
    """The run's accounting from the queue (events) and the workers' rows (calls, tokens, failures)."""
    merged = RunStats(run_id, False)
    _sum_into(merged, {k: ingest.get(k, 0) for k in ("markets_seen", "markets_valid", "markets_invalid", "duplicates", "requests")})
    merged.events_total = counts.total
    merged.events_done = counts.done + counts.failed
    merged.events_with_failures = counts.with_failures
    experiments: dict[str, dict[str, int]] = {}
    for stats in workers.values():
        merged.events_complete_skipped += int(stats.get("events_complete_skipped", 0))
        merged.failures_total += int(stats.get("failures_total", 0))
        room = MAX_FAILURES_LISTED - len(merged.failures)
        merged.failures.extend((stats.get("failures") or [])[:max(room, 0)])
        for suite, values in (stats.get("suites") or {}).items():
            _sum_into(merged.suite(suite), values)
        for name, values in (stats.get("experiments") or {}).items():
            row = experiments.setdefault(name, {})
            for k, v in values.items():
                row[k] = row.get(k, 0) + int(v)
    return merged, experiments


class PipelineWorkerJob(PipelineJob):
    """The pipeline as one worker of a shared run. Events carry job name 'pipeline-worker[-NAME]'."""

    def __init__(self, options: PipelineOptions, registry: Registry | None = None) -> None:
        if options.dry_run:
            raise BadInput("--worker cannot be combined with --dry-run: workers share their run through Postgres")
        if options.worker_name is not None and not WORKER_NAME.match(options.worker_name):
            raise BadInput(f"--worker-name {options.worker_name!r}: use 1-40 letters, digits, '_', '.' or '-'")
        if options.lease_s is not None and not 1 <= options.lease_s <= 3600:
            raise BadInput(f"--lease-seconds must be between 1 and 3600, not {options.lease_s:g}")
        super().__init__(options, registry)
        # Lock, pid and log file stem: one worker per runtime dir per name (give each extra worker on
        # the same machine its own --worker-name, or its own OPSCONSOLE_RUNTIME_DIR).
        self.name = "pipeline-worker" + (f"-{options.worker_name}" if options.worker_name else "")
        self.held: set[str] = set()
        self.ingesting = False
        self.run_counts = QueueCounts()
        self.finalized = False

    # --- keys and accounting ----------------------------------------------------------------------
    def work_key(self) -> str:
        """What makes two workers' runs the same run: the experiments with their effective configs
        and everything that decides which markets are read. Not the machine, not the keys."""
        o = self.options
        hashes = experiment_hashes(self.registry, self.start_configs)
        return run_key({
            "experiments": sorted((e.name, hashes[e.name]) for e in self.selection.experiments),
            "stage": o.stage, "limit": o.limit, "source": str(o.source) if o.source else None,
            "window_days": o.window_days, "target_date": o.target_date,
        })

    def stats_record(self) -> dict[str, Any]:
        s = self.stats
        return {
            "events_done": s.events_done, "events_complete_skipped": s.events_complete_skipped,
            "events_with_failures": s.events_with_failures, "failures_total": s.failures_total,
            "failures": s.failures[:STATS_FAILURES_KEPT], "llm_calls": s.llm_calls,
            "suites": {n: {k: v for k, v in st.__dict__.items() if k != "skipped_reason"} for n, st in s.suites.items()},
            "experiments": self._exp_counts,
        }

    def _progress(self) -> None:
        s, c = self.stats, self.run_counts
        # done/total are the run's (all workers); `mine` is this worker's share.
        self.ctx.progress("events", c.done + c.failed, c.total, unit="events", in_flight=s.in_flight,
                          llm_calls=s.llm_calls, tokens=s.tokens, cost_usd=round(s.cost_usd, 6),
                          suites=s.progress_suites(), worker=self.worker, mine=s.events_done)

    # --- the run ----------------------------------------------------------------------------------
    async def run(self, ctx: JobContext) -> None:
        opts, settings = self.options, ctx.settings
        self.ctx = ctx
        self._select_available(ctx)
        if self.selection.skipped_suites:
            suite, reason = next(iter(self.selection.skipped_suites.items()))
            raise BadInput(f"--worker: suite {suite} cannot run on this machine ({reason}); every worker must run every "
                           "suite of the run: set the key here or choose suites with --suite on every worker")
        self.lease_s = float(opts.lease_s or settings.pipeline_worker_lease_s)
        self.poll_s = min(max(self.lease_s / 4, 0.2), 5.0)
        self.worker = worker_id(opts.worker_name)
        requested = opts.window()
        self.window_desc = requested.describe() if requested else {"start": None, "end": None}

        from engine.stores.postgres import Postgres

        pg = Postgres(settings)
        await pg.open()
        self.repo = None
        status, error = "failed", None
        queue: WorkQueue | None = None
        try:
            self.repo = PipelineRepository(pg)
            await self.repo.migrate()
            queue = self.queue = WorkQueue(pg, self.worker, self.lease_s)
            sha = await anyio.to_thread.run_sync(git_sha)
            joined = await queue.create_or_join(
                key=self.work_key(), run_id=opts.run_id, new_run_id=self.run_id,
                window_start=requested.start if requested else None, window_end=requested.end if requested else None,
                options={**self._options_record(), "mode": "workers"}, git_sha=sha, environment=settings.environment,
            )
            self.run_id = joined.run_id
            window = None if joined.window_start is None and joined.window_end is None else Window(joined.window_start, joined.window_end)
            self._prepare(ctx, window, use_window=True)
            ctx.log(f"worker {self.worker} {'created' if joined.created else 'joined'} run {self.run_id} "
                    f"(lease {self.lease_s:g}s; other workers join with: opsconsole pipeline --worker --run-id {self.run_id})")
            await self._save_experiment_runs("running")
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat_loop)
                await self._work(ctx)
                tg.cancel_scope.cancel()
            status = "stopped" if ctx.control.stop_requested else "done"
        except OpsError as exc:
            error = redact(str(exc))
            raise
        except anyio.get_cancelled_exc_class():
            error = "aborted"
            raise
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if queue is not None and queue.run_id:
                    await self._leave(ctx, queue, status, error)
                for provider in self._providers.values():
                    await provider.aclose()
                await pg.close()

    async def _work(self, ctx: JobContext) -> None:
        assert self.queue is not None
        if not await self._wait_for_queue(ctx):
            return
        window_size = self.options.event_batch_size or ctx.settings.pipeline_event_batch_size
        self.run_counts = await self.queue.counts()
        self.stats.events_total = self.run_counts.total
        self._progress()
        self._wake = anyio.Event()
        async with anyio.create_task_group() as tg:
            while True:
                if ctx.control.pause_requested and not ctx.control.stop_requested:
                    while self.held and ctx.control.pause_requested and not ctx.control.stop_requested:
                        await anyio.sleep(0.05)
                if not await ctx.control.boundary():
                    ctx.log(f"stopping: {len(self.held)} event(s) in flight finish; unclaimed events stay queued "
                            f"for the other workers (or rerun this command to continue run {self.run_id})")
                    break
                free = window_size - len(self.held)
                claimed: list[Claim] = []
                if free > 0:
                    configs, hashes = self._configs_now()
                    claimed, poisoned = await self.queue.claim(free)
                    await self._poisoned(poisoned)
                    for claim in claimed:
                        self.held.add(claim.event_key)
                        self.stats.in_flight += 1
                        tg.start_soon(self._run_claim, claim, configs, hashes)
                    if not claimed and not self.held:
                        self.run_counts = await self.queue.counts()
                        self._progress()
                        if self.run_counts.remaining == 0:
                            break  # nothing queued, nothing held by anyone: the run is done
                # Either the window is full or the queue has nothing claimable right now: wait for one
                # of ours to finish, or for another worker's lease to run out.
                with anyio.move_on_after(self.poll_s):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _wait_for_queue(self, ctx: JobContext) -> bool:
        """Ingest if this worker holds (or can take over) the ingestion lease, else wait for it."""
        assert self.queue is not None
        told = False
        while True:
            status, ready, finalized_by = await self.queue.state()
            if status != "running":
                ctx.log(f"run {self.run_id} is already {status}" + (f" (finalized by {finalized_by})" if finalized_by else ""))
                return False
            if ready:
                return True
            if await self.queue.claim_ingest():
                self.ingesting = True
                try:
                    groups = await self._ingest(ctx)
                    if ctx.control.stop_requested:
                        ctx.log("stopped while ingesting: nothing queued; another worker will ingest", level="WARNING")
                        return False
                    s = self.stats
                    await self.queue.enqueue(
                        [(g.event_key, g.to_dict()) for g in groups],
                        {"markets_seen": s.markets_seen, "markets_valid": s.markets_valid, "markets_invalid": s.markets_invalid,
                         "duplicates": s.duplicates, "requests": s.requests},
                        self.stats_record(),
                    )
                    ctx.log(f"queued {len(groups)} event(s) of run {self.run_id} for the workers")
                    return True
                finally:
                    if self.ingesting:
                        self.ingesting = False
                        try:
                            await self.queue.release_ingest()  # no-op once the queue is complete
                        except Exception:
                            pass
            if not told:
                ctx.log(f"waiting for another worker to finish ingesting run {self.run_id}")
                told = True
            if not await ctx.control.boundary():
                return False
            await anyio.sleep(self.poll_s)

    async def _poisoned(self, poisoned: list[tuple[str, dict[str, Any], str]]) -> None:
        if not poisoned or self.repo is None:
            return
        sink: list[dict[str, Any]] = []
        for event_key, payload, reason in poisoned:
            group = EventGroup.from_dict(payload)
            for m in group.markets:
                self._record_failure(m.market_id, reason, True, None, event_key, "worker", sink)
            self.ctx.log(f"event {event_key}: {reason}; giving up on it in this run", level="ERROR")
        await self.repo.save_failures(sink)

    async def _run_claim(self, claim: Claim, configs: dict[str, dict[str, Any]], hashes: dict[str, str]) -> None:
        assert self.queue is not None
        group = EventGroup.from_dict(claim.payload)
        if claim.previous and claim.previous != self.worker:
            self.ctx.log(f"event {claim.event_key}: taking over from {claim.previous} (its lease ran out; "
                         f"attempt {claim.attempts}); stored results are reused")
        failed = True
        try:
            failed = await self._process_event(group, configs, hashes)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # a store error after its retries: this event fails, the run goes on
            await self._event_crashed(group, exc)
        finally:
            self.stats.in_flight -= 1
        self.stats.events_done += 1
        if failed:
            self.stats.events_with_failures += 1
        try:
            holder = await self.queue.complete(claim.event_key, failed, self.stats_record())
            if holder is None:
                self.ctx.log(f"event {claim.event_key}: another worker marked it done first", level="DEBUG")
            elif holder != self.worker:
                self.ctx.log(f"event {claim.event_key}: our lease had run out and {holder} claimed it; "
                             "the results are shared through their unique keys", level="WARNING")
            self.run_counts = await self.queue.counts()
        except Exception as exc:
            self.ctx.log(f"event {claim.event_key}: could not mark it done ({redact(str(exc))}); its lease will run out "
                         "and another worker redoes it, reusing the stored results", level="ERROR")
        self.held.discard(claim.event_key)
        self._progress()
        self._wake.set()

    async def _heartbeat_loop(self) -> None:
        assert self.queue is not None
        while True:
            await anyio.sleep(self.lease_s / 3)
            keys = sorted(self.held)
            try:
                still = await self.queue.heartbeat(keys, self.ingesting)
            except Exception as exc:  # the lease has two more renewals' worth of slack
                self.ctx.log(f"lease renewal failed: {redact(str(exc))}", level="WARNING")
                continue
            for key in keys:
                if key not in still and key in self.held:
                    self.ctx.log(f"event {key}: lease lost (another worker claimed it after our lease ran out)", level="WARNING")

    # --- the end ----------------------------------------------------------------------------------
    async def _leave(self, ctx: JobContext, queue: WorkQueue, status: str, error: str | None) -> None:
        try:
            if self.held:
                # Aborted or failed with events in hand: give them back now rather than after the lease.
                await queue.release(sorted(self.held))
                ctx.log(f"released {len(self.held)} unfinished event(s) back to the queue", level="WARNING")
            await queue.save_stats(self.stats_record(), leaving=True)
            summary = await queue.finalize(self._build_final) if error is None else None
        except Exception as exc:
            ctx.log(f"could not leave run {self.run_id} cleanly: {redact(str(exc))}; leases expire on their own", level="ERROR")
            summary = None
        if summary is not None:
            self.finalized = True
            self.summary = summary
            ctx.log(f"finalized run {self.run_id}: {summary['status']}")
            try:
                await self._save_experiment_runs(summary["status"])
            except Exception as exc:
                ctx.log(f"could not save experiment runs: {redact(str(exc))}", level="ERROR")
        else:
            try:
                run_status, _ready, finalized_by = await queue.state()
            except Exception:
                run_status, finalized_by = "unknown", None
            own = "failed" if error else ("worker_stopped" if status == "stopped" else "worker_done")
            self.summary = self.stats.summary(own, {
                **self._summary_extra(error), "run_status": run_status, "finalized_by": finalized_by,
                "scope": "this worker's share of the run",
            })
        if self.options.summary_path:
            try:
                await anyio.to_thread.run_sync(atomic_write_json, self.options.summary_path, self.summary)
            except OSError as exc:
                ctx.log(f"could not write --summary-path {self.options.summary_path}: {exc}", level="ERROR")
        ctx.emit(Summary(job=self.name, data=self.summary))

    def _summary_extra(self, error: str | None) -> dict[str, Any]:
        dumps = self.dumps.run_dir if getattr(self, "dumps", None) is not None else None
        return {"window": self.window_desc, "stage": self.options.stage,
                "source": str(self.options.source) if self.options.source else None,
                "dump_dir": str(dumps) if dumps is not None and dumps.is_dir() else None,
                "error": error, "mode": "workers", "worker": self.worker}

    def _build_final(self, counts: QueueCounts, ingest: dict[str, Any], workers: dict[str, dict[str, Any]]
                     ) -> tuple[str, dict[str, Any], dict[str, Any], str | None]:
        merged, experiments = merge_worker_stats(self.run_id, counts, ingest, workers)
        status = "completed_with_errors" if merged.failures_total or counts.failed else "completed"
        summary = merged.summary(status, {
            **self._summary_extra(None), "finalized_by": self.worker, "run_status": status,
            "workers": {w: {"events": int(s.get("events_done", 0)), "llm_calls": int(s.get("llm_calls", 0))}
                        for w, s in workers.items()},
        })
        self._exp_counts = {**self._exp_counts, **experiments}
        return status, merged.counts(), summary, None
