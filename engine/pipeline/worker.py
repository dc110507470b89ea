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
from engine.pipeline.config import Configs, PipelineConfig
from engine.pipeline.event_processor import EventProcessor
from engine.pipeline.experiments import Registry, Selection
from engine.pipeline.gamma import Window
from engine.pipeline.ingest import ingest
from engine.pipeline.job import PipelineJob, git_sha
from engine.pipeline.normalize import EventGroup
from engine.pipeline.options import PipelineOptions
from engine.pipeline.repository import PipelineRepository
from engine.pipeline.run_state import RunState, pause_point
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


def work_key(config: PipelineConfig, selection: Selection) -> str:
    """What makes two workers' runs the same run: the experiments with their effective configs
    and everything that decides which markets are read. Not the machine, not the keys."""
    o = config.options
    hashes = config.hashes(config.start_configs)
    return run_key({
        "experiments": sorted((e.name, hashes[e.name]) for e in selection.experiments),
        "stage": o.stage, "limit": o.limit, "source": str(o.source) if o.source else None,
        "window_days": o.window_days, "target_date": o.target_date,
    })


def stats_record(state: RunState) -> dict[str, Any]:
    """This worker's accounting as stored in its pipeline_run_workers row."""
    s = state.stats
    return {
        "events_done": s.events_done, "events_complete_skipped": s.events_complete_skipped,
        "events_with_failures": s.events_with_failures, "failures_total": s.failures_total,
        "failures": s.failures[:STATS_FAILURES_KEPT], "llm_calls": s.llm_calls,
        "suites": {n: {k: v for k, v in st.__dict__.items() if k != "skipped_reason"} for n, st in s.suites.items()},
        "experiments": state.exp_counts,
    }


def validate_worker_options(options: PipelineOptions) -> None:
    if options.dry_run:
        raise BadInput("--worker cannot be combined with --dry-run: workers share their run through Postgres")
    if options.worker_name is not None and not WORKER_NAME.match(options.worker_name):
        raise BadInput(f"--worker-name {options.worker_name!r}: use 1-40 letters, digits, '_', '.' or '-'")
    if options.lease_s is not None and not 1 <= options.lease_s <= 3600:
        raise BadInput(f"--lease-seconds must be between 1 and 3600, not {options.lease_s:g}")


class PipelineWorkerJob(PipelineJob):
    """The pipeline as one worker of a shared run. Events carry job name 'pipeline-worker[-NAME]'.

    It shares the job identity with `PipelineJob` (config, live settings, summary; the console
    types both as PipelineJob) and, like it, composes PipelineConfig + RunState + EventProcessor;
    the claim loop, leases and finalization live in `WorkerRun`."""

    def __init__(self, options: PipelineOptions, registry: Registry | None = None) -> None:
        validate_worker_options(options)
        super().__init__(options, registry)
        # Lock, pid and log file stem: one worker per runtime dir per name (give each extra worker on
        # the same machine its own --worker-name, or its own OPSCONSOLE_RUNTIME_DIR).
        self.name = "pipeline-worker" + (f"-{options.worker_name}" if options.worker_name else "")
        self.worker = ""  # host:pid[:name], set when the run starts
        self.finalized = False  # True when this worker wrote the run's final status and summary

    async def run(self, ctx: JobContext) -> None:
        config, opts, settings = self.config, self.config.options, ctx.settings
        selection = config.select_available(settings)
        if selection.skipped_suites:
            suite, reason = next(iter(selection.skipped_suites.items()))
            raise BadInput(f"--worker: suite {suite} cannot run on this machine ({reason}); every worker must run every "
                           "suite of the run: set the key here or choose suites with --suite on every worker")
        lease_s = float(opts.lease_s or settings.pipeline_worker_lease_s)
        self.worker = worker_id(opts.worker_name)
        requested = opts.window()
        requested_desc: dict[str, str | None] = requested.describe() if requested else {"start": None, "end": None}

        from engine.stores.postgres import Postgres

        pg = Postgres(settings)
        await pg.open()
        status, error = "failed", None
        queue: WorkQueue | None = None
        loop: WorkerRun | None = None
        try:
            repo = PipelineRepository(pg)
            await repo.migrate()
            queue = WorkQueue(pg, self.worker, lease_s)
            sha = await anyio.to_thread.run_sync(git_sha)
            joined = await queue.create_or_join(
                key=work_key(config, selection), run_id=opts.run_id, new_run_id=self.run_id,
                window_start=requested.start if requested else None, window_end=requested.end if requested else None,
                options={**config.options_record(selection, requested_desc, settings), "mode": "workers"},
                git_sha=sha, environment=settings.environment,
            )
            self.run_id = joined.run_id
            window = None if joined.window_start is None and joined.window_end is None else Window(joined.window_start, joined.window_end)
            state = self.state = RunState.begin(config, ctx, selection, self.run_id, window)
            state.repo = repo
            loop = WorkerRun(self.name, state, queue, self.worker)
            ctx.log(f"worker {self.worker} {'created' if joined.created else 'joined'} run {self.run_id} "
                    f"(lease {lease_s:g}s; other workers join with: opsconsole pipeline --worker --run-id {self.run_id})")
            await state.save_experiment_runs("running")
            async with anyio.create_task_group() as tg:
                tg.start_soon(loop.heartbeat_loop)
                await loop.work()
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
                if loop is not None:
                    # Only once the run state exists: before that this worker holds nothing and has
                    # no accounting to leave behind (its worker row just goes quiet).
                    await loop.leave(status, error)
                    self.summary, self.finalized = loop.summary, loop.finalized
                    await loop.state.providers.aclose()
                await pg.close()


class WorkerRun:
    """One worker's part of a shared run: ingest or wait for the queue, claim and process events,
    renew leases, then leave (and finalize the run when it is the last one out)."""

    def __init__(self, job_name: str, state: RunState, queue: WorkQueue, worker: str) -> None:
        self.job_name, self.state, self.queue, self.worker = job_name, state, queue, worker
        self.processor = EventProcessor(state)
        self.lease_s = queue.lease_s
        self.poll_s = min(max(self.lease_s / 4, 0.2), 5.0)
        self.held: set[str] = set()  # claimed by us and not yet marked done
        self.ingesting = False
        self.run_counts = QueueCounts()
        self.summary: dict[str, Any] | None = None
        self.finalized = False
        self._wake = anyio.Event()

    def _progress(self) -> None:
        s, c = self.state.stats, self.run_counts
        # done/total are the run's (all workers); `mine` is this worker's share.
        self.state.ctx.progress("events", c.done + c.failed, c.total, unit="events", in_flight=s.in_flight,
                                llm_calls=s.llm_calls, tokens=s.tokens, cost_usd=round(s.cost_usd, 6),
                                suites=s.progress_suites(), worker=self.worker, mine=s.events_done)

    async def work(self) -> None:
        state, ctx, queue = self.state, self.state.ctx, self.queue
        if not await self._wait_for_queue():
            return
        window_size = state.config.event_batch_size(ctx.settings)
        self.run_counts = await queue.counts()
        state.stats.events_total = self.run_counts.total
        self._progress()
        self._wake = anyio.Event()
        async with anyio.create_task_group() as tg:
            while True:
                # Pause drains what we hold (processed and marked done), like the single runner's in-flight events.
                if not await pause_point(ctx.control, lambda: len(self.held)):
                    ctx.log(f"stopping: {len(self.held)} event(s) in flight finish; unclaimed events stay queued "
                            f"for the other workers (or rerun this command to continue run {state.run_id})")
                    break
                free = window_size - len(self.held)
                claimed: list[Claim] = []
                if free > 0:
                    configs, hashes = state.configs_now()
                    claimed, poisoned = await queue.claim(free)
                    await self._poisoned(poisoned)
                    for claim in claimed:
                        self.held.add(claim.event_key)
                        state.stats.in_flight += 1
                        tg.start_soon(self._run_claim, claim, configs, hashes)
                    if not claimed and not self.held:
                        self.run_counts = await queue.counts()
                        self._progress()
                        if self.run_counts.remaining == 0:
                            break  # nothing queued, nothing held by anyone: the run is done
                # Either the window is full or the queue has nothing claimable right now: wait for one
                # of ours to finish, or for another worker's lease to run out.
                with anyio.move_on_after(self.poll_s):
                    await self._wake.wait()
                self._wake = anyio.Event()

    async def _wait_for_queue(self) -> bool:
        """Ingest if this worker holds (or can take over) the ingestion lease, else wait for it."""
        state, ctx, queue = self.state, self.state.ctx, self.queue
        told = False
        while True:
            status, ready, finalized_by = await queue.state()
            if status != "running":
                ctx.log(f"run {state.run_id} is already {status}" + (f" (finalized by {finalized_by})" if finalized_by else ""))
                return False
            if ready:
                return True
            if await queue.claim_ingest():
                self.ingesting = True
                try:
                    groups = await ingest(state)
                    if ctx.control.stop_requested:
                        ctx.log("stopped while ingesting: nothing queued; another worker will ingest", level="WARNING")
                        return False
                    s = state.stats
                    await queue.enqueue(
                        [(g.event_key, g.to_dict()) for g in groups],
                        {"markets_seen": s.markets_seen, "markets_valid": s.markets_valid, "markets_invalid": s.markets_invalid,
                         "duplicates": s.duplicates, "requests": s.requests},
                        stats_record(state),
                    )
                    ctx.log(f"queued {len(groups)} event(s) of run {state.run_id} for the workers")
                    return True
                finally:
                    if self.ingesting:
                        self.ingesting = False
                        try:
                            await queue.release_ingest()  # no-op once the queue is complete
                        except Exception as exc:
                            # Releasing only hands the lease over sooner; unreleased, it runs out and
                            # another worker takes the ingestion over then.
                            ctx.log(f"could not release the ingestion lease of run {state.run_id} "
                                    f"({redact(str(exc))}); it runs out on its own", level="DEBUG")
            if not told:
                ctx.log(f"waiting for another worker to finish ingesting run {state.run_id}")
                told = True
            if not await pause_point(ctx.control, lambda: 0):  # nothing in hand while waiting
                return False
            await anyio.sleep(self.poll_s)

    async def _poisoned(self, poisoned: list[tuple[str, dict[str, Any], str]]) -> None:
        state = self.state
        if not poisoned or state.repo is None:
            return
        sink: list[dict[str, Any]] = []
        for event_key, payload, reason in poisoned:
            group = EventGroup.from_dict(payload)
            for m in group.markets:
                state.record_failure(m.market_id, reason, True, None, event_key, "worker", sink)
            state.ctx.log(f"event {event_key}: {reason}; giving up on it in this run", level="ERROR")
        await state.repo.save_failures(sink)

    async def _run_claim(self, claim: Claim, configs: Configs, hashes: dict[str, str]) -> None:
        state, ctx, stats = self.state, self.state.ctx, self.state.stats
        group = EventGroup.from_dict(claim.payload)
        if claim.previous and claim.previous != self.worker:
            ctx.log(f"event {claim.event_key}: taking over from {claim.previous} (its lease ran out; "
                    f"attempt {claim.attempts}); stored results are reused")
        try:
            failed = await self.processor.run_event(group, configs, hashes)
        finally:
            stats.in_flight -= 1
        stats.events_done += 1
        if failed:
            stats.events_with_failures += 1
        try:
            holder = await self.queue.complete(claim.event_key, failed, stats_record(state))
            if holder is None:
                ctx.log(f"event {claim.event_key}: another worker marked it done first", level="DEBUG")
            elif holder != self.worker:
                ctx.log(f"event {claim.event_key}: our lease had run out and {holder} claimed it; "
                        "the results are shared through their unique keys", level="WARNING")
            self.run_counts = await self.queue.counts()
        except Exception as exc:
            ctx.log(f"event {claim.event_key}: could not mark it done ({redact(str(exc))}); its lease will run out "
                    "and another worker redoes it, reusing the stored results", level="ERROR")
        self.held.discard(claim.event_key)
        self._progress()
        self._wake.set()

    async def heartbeat_loop(self) -> None:
        ctx = self.state.ctx
        while True:
            await anyio.sleep(self.lease_s / 3)
            keys = sorted(self.held)
            try:
                still = await self.queue.heartbeat(keys, self.ingesting)
            except Exception as exc:  # the lease has two more renewals' worth of slack
                ctx.log(f"lease renewal failed: {redact(str(exc))}", level="WARNING")
                continue
            for key in keys:
                if key not in still and key in self.held:
                    ctx.log(f"event {key}: lease lost (another worker claimed it after our lease ran out)", level="WARNING")

    # --- the end ----------------------------------------------------------------------------------
    async def leave(self, status: str, error: str | None) -> None:
        state, ctx, queue = self.state, self.state.ctx, self.queue
        try:
            if self.held:
                # Aborted or failed with events in hand: give them back now rather than after the lease.
                await queue.release(sorted(self.held))
                ctx.log(f"released {len(self.held)} unfinished event(s) back to the queue", level="WARNING")
            await queue.save_stats(stats_record(state), leaving=True)
            summary = await queue.finalize(self._build_final) if error is None else None
        except Exception as exc:
            ctx.log(f"could not leave run {state.run_id} cleanly: {redact(str(exc))}; leases expire on their own", level="ERROR")
            summary = None
        if summary is not None:
            self.finalized = True
            self.summary = summary
            ctx.log(f"finalized run {state.run_id}: {summary['status']}")
            try:
                await state.save_experiment_runs(summary["status"])
            except Exception as exc:
                ctx.log(f"could not save experiment runs: {redact(str(exc))}", level="ERROR")
        else:
            try:
                run_status, _ready, finalized_by = await queue.state()
            except Exception:  # only the summary's run_status field depends on it
                run_status, finalized_by = "unknown", None
            own = "failed" if error else ("worker_stopped" if status == "stopped" else "worker_done")
            self.summary = state.stats.summary(own, {
                **self._summary_extra(error), "run_status": run_status, "finalized_by": finalized_by,
                "scope": "this worker's share of the run",
            })
        await state.publish_summary(self.job_name, self.summary)

    def _summary_extra(self, error: str | None) -> dict[str, Any]:
        return {**self.state.summary_extra(error), "mode": "workers", "worker": self.worker}

    def _build_final(self, counts: QueueCounts, ingest: dict[str, Any], workers: dict[str, dict[str, Any]]
                     ) -> tuple[str, dict[str, Any], dict[str, Any], str | None]:
        state = self.state
        merged, experiments = merge_worker_stats(state.run_id, counts, ingest, workers)
        status = "completed_with_errors" if merged.failures_total or counts.failed else "completed"
        summary = merged.summary(status, {
            **self._summary_extra(None), "finalized_by": self.worker, "run_status": status,
            "workers": {w: {"events": int(s.get("events_done", 0)), "llm_calls": int(s.get("llm_calls", 0))}
                        for w, s in workers.items()},
        })
        state.exp_counts = {**state.exp_counts, **experiments}
        return status, merged.counts(), summary, None
