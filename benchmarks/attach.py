"""Detachable jobs: consoles attached to a real job process over its socket (issue 18).

    uv run python -m benchmarks.attach [--scale seed] [--repeat 3] [--rounds 60] [--rate 1000]

Prints one line per figure as it is measured, then one JSON line of rows for `python -m benchmarks`.
Every job runs in its own process, started the way an operator starts a headless run; the consoles
measured here are the real OpsConsoleApp (Pilot, in this process) reaching it through
runtime/<job>.sock. Figures are measurements, never asserted:

* key → screen: `p` / `r` sent through the driver the way a terminal sends them, during a Step D
  with one pair per batch; the time until a composed frame shows the requested state (the console's
  own echo), and until the frame shows the job's answer (p: PAUSED, held at its next batch boundary;
  r: the job's own RUNNING applied to the view).
* event → screen: a small job emitting 1,000 events/s (log lines, every tenth a Progress); from each
  event's timestamp (`ts`, the job's time.time()) to the first composed frame whose log tail shows
  it or a newer line (this process's time.time(); same machine, same clock).
* attach → first full frame: from the attach command's first connect (it probes the job, then
  opens the console, as `opsconsole attach` does) to the first frame showing the job's state and
  Step D progress. Textual's imports are warm (this process): the CLI's own start is not included.
* Step D with three consoles attached (three processes, each a headless OpsConsoleApp attached
  over the socket), and Step D with hostile clients (one that never reads, one sending garbage, one
  sending 100 MB lines, one holding 100 connections), each ÷ Step D alone: the same data, P&L
  reset before each run, alternating, best of N; the P&L checksum of every run is compared.

A "frame" is Textual's compositor update for the screen (`App._display`); in a headless app it is
composed in full and then not written anywhere, so the terminal's own write is not included.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STEPD_JOB = "full-enrichment"
FLOOD_JOB = "attach-bench-flood"
SIZE = (160, 48)


# --- helpers shared by the processes -----------------------------------------------------------
def _env(runtime: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k == "CLICKHOUSE_NICE" or not k.startswith(("CLICKHOUSE_", "POSTGRES_", "SUPABASE_"))}
    env["OPSCONSOLE_RUNTIME_DIR"] = str(runtime)
    env["PYTHONPATH"] = str(REPO)
    return env


def _spawn(runtime: Path, *args: str, out: Path | None = None) -> subprocess.Popen[str]:
    # Output to a file, never an unread pipe: a full pipe would block the child (and a job with it).
    handle = out.open("w") if out is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen([sys.executable, "-m", "benchmarks.attach", *args, "--runtime", str(runtime)],
                                cwd=REPO, env=_env(runtime), stdout=handle, stderr=subprocess.STDOUT, text=True)
    finally:
        if out is not None:
            handle.close()  # type: ignore[union-attr]


def _last_json(path: Path) -> dict[str, Any]:
    for line in reversed(path.read_text().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    raise SystemExit(f"no result from a benchmark process; its output:\n{path.read_text()[-3000:]}")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def _runq_s() -> float:
    """Seconds this thread has waited on the run queue (runnable, but the CPU busy elsewhere)."""
    try:
        return int(Path(f"/proc/self/task/{threading.get_native_id()}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


def _dist(ms: list[float]) -> str:
    return f"p50 {_pct(ms, 50):.1f} ms, p99 {_pct(ms, 99):.1f} ms, max {max(ms):.1f} ms (n={len(ms)})"


def _wait_answering(runtime: Path, job: str, proc: subprocess.Popen[str] | None, timeout: float = 300) -> None:
    import anyio

    from engine.endpoint_client import job_answers

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if anyio.run(lambda: job_answers(runtime, job, timeout=1.0)):
            return
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the {job} process ended before serving its socket (exit {proc.returncode})")
        time.sleep(0.05)
    raise SystemExit(f"{job} did not serve its socket within {timeout:g}s")


# --- the job processes -------------------------------------------------------------------------
def job_stepd(args: argparse.Namespace) -> None:
    """Reset the P&L, then one Step D run (its socket served by run_job, as every job's is)."""
    import anyio

    from benchmarks.enrichment import reset_pnl
    from engine.bus import EventBus
    from engine.enrichment.job import EnrichmentJob
    from engine.enrichment.stepd import pnl_checksum
    from engine.runner import run_job
    from engine.settings import load_settings
    from engine.stores.clickhouse import open_clickhouse

    settings = load_settings(runtime_dir=args.runtime)
    ch = open_clickhouse(settings)
    reset_pnl(ch, settings)
    # --full: every run does the same work (after a reset an incremental run would first compare
    # every pair with what its P&L was computed from, and choose its own work list).
    job = EnrichmentJob(["D"], batch_size=args.batch_size, run_gates=False, full=True)
    waited = [0.0]

    class AfterClients:
        """Step D once `--wait-for` clients say they are attached (files in --ready-dir): the
        figure is Step D's own time with the clients in their steady state, not their start-up."""

        name, panels = job.name, job.panels

        def live_settings(self) -> Any:
            return job.live_settings()

        async def run(self, ctx: Any) -> None:
            started = time.monotonic()
            while args.wait_for and len(list(args.ready_dir.glob("ready-*"))) < args.wait_for:
                if time.monotonic() - started > 120:
                    ctx.log("benchmark: the clients did not attach within 120 s; running anyway", level="WARNING")
                    break
                await anyio.sleep(0.01)
            waited[0] = time.monotonic() - started
            await job.run(ctx)

    cpu = time.process_time()
    outcome = anyio.run(lambda: run_job(AfterClients(), settings, EventBus(), handle_signals=True, resources={"ch": ch}))
    d = job.results.get("D", {})
    print(json.dumps({"state": outcome.state.value, "seconds": d.get("seconds"), "batches": d.get("batches"),
                      "pairs": d.get("pairs_done"), "checksum": list(pnl_checksum(ch)), "waited_s": waited[0],
                      "cpu_s": time.process_time() - cpu}), flush=True)


@dataclass
class FloodJob:
    """Emits `rate` events per second for `seconds` once runtime/<name>.go exists: log lines, every
    tenth event a Progress. Each event's `ts` is stamped as it is published."""

    rate: int
    seconds: float
    go: Path
    name: str = FLOOD_JOB
    panels: tuple[str, ...] = ()

    def live_settings(self) -> Any:
        from engine.control import NoLiveSettings

        return NoLiveSettings()

    async def run(self, ctx: Any) -> None:
        import anyio

        from engine.events import LogLine

        ctx.log("waiting for the benchmark to attach")
        while not self.go.exists():
            await anyio.sleep(0.01)
        total = int(self.rate * self.seconds)
        started = time.perf_counter()
        n = 0
        while n < total:
            # Catch up to the schedule in one go (an asyncio sleep is ~1 ms at best), then yield.
            due = min(total, int((time.perf_counter() - started) * self.rate) + 1)
            while n < due:
                n += 1
                if n % 10 == 0:
                    ctx.progress("flood", n, total, unit="events")
                else:
                    ctx.emit(LogLine(job=self.name, level="INFO", message=f"flood {n}"))
            await anyio.sleep(1 / self.rate)
        elapsed = time.perf_counter() - started
        ctx.log(f"flood over: {n} events in {elapsed:.3f} s = {n / elapsed:.0f}/s")


def job_flood(args: argparse.Namespace) -> None:
    import anyio

    from engine.bus import EventBus
    from engine.runner import run_job
    from engine.settings import load_settings

    settings = load_settings(runtime_dir=args.runtime)
    job = FloodJob(args.rate, args.seconds, args.runtime / f"{FLOOD_JOB}.go")
    outcome = anyio.run(lambda: run_job(job, settings, EventBus(), handle_signals=True))
    print(json.dumps({"state": outcome.state.value}), flush=True)


def console_process(args: argparse.Namespace) -> None:
    """One attached console (a headless OpsConsoleApp, 160×48): waits for the job's socket, attaches,
    quits when the job ends. Prints when it attached and how many events it received."""
    import anyio

    from console.tui.app import OpsConsoleApp
    from console.tui.launch import _remote_session
    from engine.endpoint_client import job_answers
    from engine.settings import load_settings

    settings = load_settings(runtime_dir=args.runtime)
    while not anyio.run(lambda: job_answers(settings.runtime, args.job, timeout=1.0)):
        time.sleep(0.01)
    attached = time.time()
    session = _remote_session(settings, args.job)
    session.quit_when_done = True
    received = [0]
    session.bus.add_listener(lambda _e: received.__setitem__(0, received[0] + 1))
    # The console's own default (gates refreshed through the job every 30 s) unless told otherwise.
    app = OpsConsoleApp(settings, session=session, **({"gates_interval": args.gates_interval or None}
                                                       if args.gates_interval != 30.0 else {}))
    frames = Frames()
    frames.install(app)

    def first_frame() -> bool:
        from console.tui.job_screen import JobScreen

        if isinstance(app.screen, JobScreen) and app.screen.view.panels:  # the job's snapshot is in
            (args.ready_dir / f"ready-console-{os.getpid()}").touch()
            return True
        return False

    frames.checks.append(first_frame)
    cpu = time.process_time()
    app.run(headless=True, size=SIZE)
    print(json.dumps({"attached_at": attached, "events": received[0], "frames": frames.count,
                      "cpu_s": time.process_time() - cpu,
                      "state": session.outcome.state.value if session.outcome else None}), flush=True)


def hostile_process(args: argparse.Namespace) -> None:
    """The hostile clients of issue 18, all at once, until the job's socket goes away."""
    from engine.endpoint import socket_path, unix_address

    path = socket_path(args.runtime, args.job)
    while not path.exists():
        time.sleep(0.005)
    stop = threading.Event()
    counts: dict[str, int] = {"garbage_connections": 0, "big_line_connections": 0, "big_line_mib_sent": 0,
                              "hundred_rounds": 0}

    def connect() -> socket.socket | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with unix_address(path) as address:
                s.connect(address)
            return s
        except OSError:
            s.close()
            return None

    def never_reads() -> None:
        held = connect()  # connected once, never read from, held to the end
        stop.wait()
        if held is not None:
            held.close()

    def garbage() -> None:
        while not stop.is_set():
            s = connect()
            if s is None:
                time.sleep(0.05)
                continue
            counts["garbage_connections"] += 1
            with contextlib.suppress(OSError):
                for _ in range(5):
                    s.sendall(b"\x00\xff{not json at all]]\n")
                s.settimeout(2)
                while s.recv(65536):  # until the job cuts it off
                    pass
            s.close()
            time.sleep(0.02)

    def big_line() -> None:
        chunk = b"x" * (1 << 20)
        while not stop.is_set():
            s = connect()
            if s is None:
                time.sleep(0.05)
                continue
            counts["big_line_connections"] += 1
            with contextlib.suppress(OSError):
                for _ in range(100):  # one 100 MiB line, unless cut off first
                    s.sendall(chunk)
                    counts["big_line_mib_sent"] += 1
            s.close()
            time.sleep(0.02)

    def hundred() -> None:
        while not stop.is_set():
            conns = [c for c in (connect() for _ in range(100)) if c is not None]
            counts["hundred_rounds"] += 1
            stop.wait(2.0)  # held, never read
            for c in conns:
                c.close()
            stop.wait(0.5)

    threads = [threading.Thread(target=fn, daemon=True) for fn in (never_reads, garbage, big_line, hundred)]
    for t in threads:
        t.start()
    while counts["hundred_rounds"] == 0 and path.exists():
        time.sleep(0.01)
    (args.ready_dir / f"ready-hostile-{os.getpid()}").touch()  # every kind has connected once
    while path.exists():
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    print(json.dumps(counts), flush=True)


# --- in-process consoles (Pilot) ----------------------------------------------------------------
@dataclass
class Frames:
    """Hooks the app's frame output: calls `on_frame()` callbacks at each composed screen update."""

    checks: list[Any] = field(default_factory=list)
    count: int = 0

    def install(self, app: Any) -> None:
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is None:
                return
            self.count += 1
            for check in list(self.checks):
                if check():
                    self.checks.remove(check)

        app._display = display


def _remote(settings: Any, job: str) -> Any:
    from console.tui.remote import live_model_for
    from console.tui.session import JobSession
    from engine.endpoint_client import connect

    async def probe() -> Any:
        async with connect(settings.runtime, job) as client:
            snap = client.snapshot
            return JobSession.remote(job, settings.runtime, live_model_for(job, snap.live), snap.state,
                                     settings=settings)

    return probe()


def _header(app: Any) -> str:
    from console.tui.widgets import StatusHeader

    return str(app.screen.query_one("#header", StatusHeader)._markup or "")


async def attach_frames(settings: Any, times: int) -> list[float]:
    """Seconds from the attach's first connect to the first frame with state and Step D progress."""
    from console.tui.app import OpsConsoleApp
    from console.tui.job_screen import JobScreen

    out: list[float] = []
    for _ in range(times):
        started = time.perf_counter()
        session = await _remote(settings, STEPD_JOB)
        app = OpsConsoleApp(settings, session=session)
        frames = Frames()
        frames.install(app)
        shown = asyncio.Event()

        def full(app: Any = app, started: float = started, shown: asyncio.Event = shown) -> bool:
            screen = app.screen
            if not isinstance(screen, JobScreen):
                return False
            d = screen.view.steps.get("D")
            ok = d is not None and d.done > 0 and f" {screen.view.state.value.upper()} " in _header(app) \
                and screen.view.state.value == "running"
            if ok:
                out.append(time.perf_counter() - started)
                shown.set()
            return ok

        frames.checks.append(full)
        async with app.run_test(size=SIZE) as pilot:
            await asyncio.wait_for(shown.wait(), 60)
            await pilot.press("d")
            await pilot.pause()
        await asyncio.sleep(0.3)
    return out


async def key_rounds(settings: Any, rounds: int) -> dict[str, list[float]]:
    """Press p, then r, `rounds` times each; milliseconds to the echo and to the job's answer."""
    from textual import events

    from console.tui.app import OpsConsoleApp
    from console.tui.job_screen import JobScreen
    from engine.events import JobState, StateChanged

    result: dict[str, list[float]] = {"echo_p": [], "echo_r": [], "ack_p": [], "job_p": [], "job_r": []}
    session = await _remote(settings, STEPD_JOB)
    app = OpsConsoleApp(settings, session=session, gates_interval=None)
    frames = Frames()
    frames.install(app)
    rng = random.Random(18)
    async with app.run_test(size=SIZE):
        screen = app.screen
        assert isinstance(screen, JobScreen)
        view = screen.view
        applied: dict[JobState, float] = {}
        original_apply = view.apply

        def apply(event: Any) -> None:
            original_apply(event)
            if isinstance(event, StateChanged):
                applied[event.state] = time.perf_counter()

        view.apply = apply  # type: ignore[method-assign]
        await screen.wait_for(lambda v: v.state is JobState.RUNNING and v.steps.get("D") is not None)
        runq, wall = _runq_s(), time.perf_counter()
        for i in range(rounds * 2):
            key = "p" if i % 2 == 0 else "r"
            if key == "p":
                await screen.wait_for(lambda v: v.state is JobState.RUNNING or v.state.final)
            if view.state.final:
                break
            await asyncio.sleep(rng.uniform(0.03, 0.12))  # land anywhere within a batch
            echo_text, answer = (" PAUSING ", JobState.PAUSED) if key == "p" else (" RUNNING ", JobState.RUNNING)
            applied.clear()
            marks: dict[str, float] = {}
            done = asyncio.Event()
            start = time.perf_counter()

            def check(key: str = key, echo_text: str = echo_text, answer: JobState = answer,
                      marks: dict[str, float] = marks, done: asyncio.Event = done, start: float = start) -> bool:
                now = time.perf_counter()
                header = _header(app)
                # The echo, or the answer already (a batch shorter than a frame skips the echo).
                if "echo" not in marks and (echo_text in header or f" {answer.value.upper()} " in header):
                    marks["echo"] = now
                if "ack" not in marks and key == "p" and JobState.PAUSING in applied:
                    marks["ack"] = applied[JobState.PAUSING]  # the job's own PAUSING, already in the header
                if "job" not in marks and answer in applied:
                    if key == "p" and f" {answer.value.upper()} " in header:
                        marks["job"] = now  # the held state, on a composed frame
                    elif key == "r":
                        marks["job"] = applied[answer]  # the header already says RUNNING: applied is the answer
                if "echo" in marks and "job" in marks and (key == "r" or "ack" in marks):
                    done.set()
                    return True
                return False

            frames.checks.append(check)
            app._driver.send_message(events.Key(key, key))  # what a terminal key does
            try:
                await asyncio.wait_for(done.wait(), 30)
            except TimeoutError:
                frames.checks.remove(check)
                raise SystemExit(f"no answer to {key!r} within 30 s (state {view.state.value}, marks {marks}, "
                                 f"applied {applied}, header {_header(app)!r}, frames {frames.count}, round {i})") from None
            result[f"echo_{key}"].append((marks["echo"] - start) * 1000)
            result[f"job_{key}"].append((marks["job"] - start) * 1000)
            if key == "p":
                result["ack_p"].append((marks["ack"] - start) * 1000)
        result["runq_share"] = [(_runq_s() - runq) / (time.perf_counter() - wall)]
        session.control.stop("benchmark over")
        await screen.wait_for(lambda v: v.state.final)
    return result


async def flood_latency(settings: Any, go: Path) -> dict[str, Any]:
    """Attach to the flood job, start it, and time every log line from its ts to the screen."""
    from console.tui.app import OpsConsoleApp
    from console.tui.job_screen import JobScreen
    from console.tui.widgets import LogTail
    from engine.events import LogLine, Progress

    session = await _remote(settings, FLOOD_JOB)
    sent: dict[int, float] = {}  # seq -> the job's ts
    arrived: dict[int, float] = {}  # seq -> time.time() on arrival in this process
    progress_ts: list[float] = []
    pattern = re.compile(r"flood (\d+)$")

    def listen(event: Any) -> None:
        if isinstance(event, LogLine):
            m = pattern.search(event.message)
            if m:
                seq = int(m.group(1))
                sent[seq] = event.ts
                arrived[seq] = time.time()
        elif isinstance(event, Progress):
            progress_ts.append(event.ts)

    session.bus.add_listener(listen)
    app = OpsConsoleApp(settings, session=session, gates_interval=None)
    frames = Frames()
    frames.install(app)
    handed = [0]  # the newest flood line given to the log tail
    shown: list[tuple[float, int]] = []  # (time.time() of a frame, newest flood line in it)

    def on_frame() -> bool:
        if not shown or handed[0] > shown[-1][1]:
            shown.append((time.time(), handed[0]))
        return False  # keep watching

    frames.checks.append(on_frame)
    async with app.run_test(size=SIZE):
        screen = app.screen
        assert isinstance(screen, JobScreen)
        tail = screen.query_one("#log-tail", LogTail)
        original_append = tail.append

        def append(lines: list[tuple[int, str]]) -> None:
            original_append(lines)
            for _, text in reversed(lines):
                m = pattern.search(text)
                if m:
                    handed[0] = max(handed[0], int(m.group(1)))
                    break

        tail.append = append  # type: ignore[method-assign]
        await screen.wait_for(lambda v: v.log_counts["INFO"] > 0)
        cpu, wall, runq = time.process_time(), time.perf_counter(), _runq_s()
        go.touch()
        await screen.wait_for(lambda v: v.state.final)
        cpu, wall, runq = time.process_time() - cpu, time.perf_counter() - wall, _runq_s() - runq
    times = [t for t, _ in shown]
    newest = [n for _, n in shown]
    latencies, socket_ms, missing = [], [], 0
    for seq, ts in sent.items():
        i = bisect.bisect_left(newest, seq)
        if i == len(newest):
            missing += 1
            continue
        latencies.append((times[i] - ts) * 1000)
        socket_ms.append((arrived[seq] - ts) * 1000)
    events = len(sent) + len(progress_ts)
    span = max(sent.values()) - min(sent.values()) if sent else 0.0
    expected = max(sent) if sent else 0
    return {"latencies": latencies, "socket_ms": socket_ms, "missing": missing, "events": events,
            "rate": events / span if span else 0.0, "lost": expected - len(sent) - expected // 10,
            "cpu_share": cpu / wall, "frames": frames.count, "runq_share": runq / wall}


# --- Step D runs: alone, with three consoles, with hostile clients -----------------------------
def stepd_run(runtime: Path, kind: str, n: int, batch_size: int) -> dict[str, Any]:
    work = runtime.parent / f"run-{kind}-{n}"
    work.mkdir()
    ready = ("--ready-dir", str(work))
    helpers: list[tuple[subprocess.Popen[str], Path]] = []
    if kind in ("consoles", "consoles-nogates"):
        gates = ("--gates-interval", "0") if kind == "consoles-nogates" else ()
        for i in range(3):
            out = work / f"console-{i}.out"
            helpers.append((_spawn(runtime, "console", "--job", STEPD_JOB, *ready, *gates, out=out), out))
    elif kind == "hostile":
        out = work / "hostile.out"
        helpers.append((_spawn(runtime, "hostile", "--job", STEPD_JOB, *ready, out=out), out))
    log = runtime / f"{STEPD_JOB}.console.log"
    log_before = log.stat().st_size if log.exists() else 0
    out = work / "job.out"
    job = _spawn(runtime, "job", "--batch-size", str(batch_size), "--wait-for", str(len(helpers)), *ready, out=out)
    if job.wait(timeout=1800) != 0:
        raise SystemExit(f"Step D ({kind}) failed:\n{out.read_text()[-3000:]}")
    result = _last_json(out)
    result["helpers"] = []
    for proc, hout in helpers:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        result["helpers"].append(_last_json(hout))
    with log.open("rb") as fh:
        fh.seek(log_before)
        text = fh.read().decode(errors="replace")
    result["cut_offs"] = text.count("cut off:")
    result["refusals"] = text.count("refused a console client")
    return result


def ratio_rows(runtime: Path, scale: str, repeat: int, kinds: list[str]) -> list[tuple[str, str, str]]:
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ["alone", *[k for k in kinds if k != "alone"]]}
    for n in range(repeat):
        for kind in runs:
            r = stepd_run(runtime, kind, n, 300)
            runs[kind].append(r)
            print(f"    Step D {kind} #{n + 1}: {r['seconds']:.2f} s, {r['state']}, checksum {r['checksum']}"
                  f"{', cut-offs ' + str(r['cut_offs']) + ', refusals ' + str(r['refusals']) if kind == 'hostile' else ''}"
                  f"; {_load()}", flush=True)
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    spread = {k: ", ".join(f"{r['seconds']:.2f}" for r in v) for k, v in runs.items()}
    reference = runs["alone"][0]["checksum"]
    pairs = best["alone"]["pairs"] or 0
    alone_cpu = statistics.mean(r["cpu_s"] for r in runs["alone"])

    def same(kind: str) -> str:
        return "yes" if all(r["checksum"] == reference and r["state"] == "done" for r in runs[kind]) else "no"

    rows = []
    for kind in (k for k in ("consoles", "consoles-nogates") if k in runs):
        cons = [h for r in runs[kind] for h in r["helpers"]]
        attached_ok = sum(1 for h in cons if h.get("state") == "done")
        how = "their default gates refresh every 30 s" if kind == "consoles" else "no automatic gates refresh"
        rows.append((
            f"Step D ({scale}, batch 300) with three consoles attached ({how}) ÷ alone",
            f"best of {repeat}: alone {best['alone']['seconds']:.2f} s, three consoles {best[kind]['seconds']:.2f} s; "
            f"**ratio {best[kind]['seconds'] / best['alone']['seconds']:.3f}** (medians {med['alone']:.2f} / "
            f"{med[kind]:.2f} s = {med[kind] / med['alone']:.3f}; runs alone {spread['alone']}, consoles "
            f"{spread[kind]} s); {attached_ok} of {len(cons)} consoles followed their run to done "
            f"({min(h['events'] for h in cons):,}–{max(h['events'] for h in cons):,} events, "
            f"{statistics.mean(h['cpu_s'] for h in cons):.2f} s CPU each; the job "
            f"{statistics.mean(r['cpu_s'] for r in runs[kind]):.2f} s CPU vs {alone_cpu:.2f} s alone); "
            f"result identical: {same(kind)}",
            "≤ 1.05",
        ))
    if "hostile" in runs:
        hostile = runs["hostile"][-1]["helpers"][0] if runs["hostile"][-1]["helpers"] else {}
        rows.append((
            f"Step D ({scale}, batch 300) with hostile clients ÷ alone",
            f"best of {repeat}: {best['hostile']['seconds']:.2f} s vs {best['alone']['seconds']:.2f} s alone; **ratio "
            f"{best['hostile']['seconds'] / best['alone']['seconds']:.3f}** (throughput {pairs / best['hostile']['seconds']:,.0f} vs "
            f"{pairs / best['alone']['seconds']:,.0f} pairs/s; medians {med['hostile']:.2f} / {med['alone']:.2f} s = "
            f"{med['hostile'] / med['alone']:.3f}; runs {spread['hostile']} s; the job "
            f"{statistics.mean(r['cpu_s'] for r in runs['hostile']):.2f} s CPU vs {alone_cpu:.2f} s alone); "
            f"identical: {same('hostile')}; last run: "
            f"{hostile.get('garbage_connections', 0)} garbage connections, {hostile.get('big_line_connections', 0)} 100 MB-line "
            f"connections ({hostile.get('big_line_mib_sent', 0)} MiB taken before the cut), {hostile.get('hundred_rounds', 0)} "
            f"rounds of 100 connections, {runs['hostile'][-1]['cut_offs']} cut-offs and {runs['hostile'][-1]['refusals']} "
            "refusals in the job's log",
            "unharmed (≈ 1.0), identical",
        ))
    return rows


# --- the orchestrator --------------------------------------------------------------------------
def main(args: argparse.Namespace) -> None:
    from benchmarks import scratch

    with scratch("opsbench-attach-") as root:
        _main(args, root)


def _main(args: argparse.Namespace, root: Path) -> None:
    from engine.settings import load_settings

    runtime = root / "rt"
    print(f"attach benchmarks, {args.scale} scale; {_load()}", flush=True)
    prep = subprocess.run([sys.executable, "-m", "benchmarks.enrichment", "prepare", "--runtime", str(runtime),
                           "--scale", args.scale], cwd=REPO, env=_env(runtime), capture_output=True, text=True)
    if prep.returncode != 0:
        raise SystemExit(f"demo data failed (exit {prep.returncode}):\n{(prep.stdout + prep.stderr)[-3000:]}")
    data = json.loads(prep.stdout.strip().splitlines()[-1])
    rows: list[tuple[str, str, str]] = []

    def row(name: str, result: str, target: str) -> None:
        rows.append((name, result, target))
        print(f"  {name}: {result} [target {target}]; {_load()}", flush=True)

    settings = load_settings(runtime_dir=runtime)
    parts = set(args.parts.split(","))
    if "keys" in parts:
        interactive_rows(args, runtime, root, settings, row)
    if "flood" in parts:
        flood_rows(args, root, row)
    if "ratio" in parts:
        for name, result, target in ratio_rows(runtime, args.scale, args.repeat, args.kinds.split(",")):
            row(name, result, target)
    print(json.dumps({"scale": args.scale, "data": data, "rows": rows}), flush=True)


def interactive_rows(args: argparse.Namespace, runtime: Path, root: Path, settings: Any, row: Any) -> None:
    # One Step D with one pair per batch (a long run with a boundary every few ms) for the
    # interactive figures; stopped through the socket when they are taken.
    out = root / "interactive-job.out"
    job = _spawn(runtime, "job", "--batch-size", "1", out=out)
    try:
        _wait_answering(runtime, STEPD_JOB, job)

        async def interactive() -> tuple[list[float], dict[str, list[float]]]:
            from engine.endpoint_client import connect

            from engine.events import Progress

            async with connect(runtime, STEPD_JOB) as client:  # until the first batches are written
                d = client.snapshot.progress.get("D")
                if d is None or d.done == 0:
                    async for event in client.events():
                        if isinstance(event, Progress) and event.step == "D" and event.done > 0:
                            break
            return await attach_frames(settings, args.attaches), await key_rounds(settings, args.rounds)

        frames, keys = asyncio.run(interactive())
    finally:
        if job.poll() is None:
            job.send_signal(signal.SIGTERM)
        job.wait(timeout=300)
    echo = keys["echo_p"] + keys["echo_r"]
    answer = keys["job_p"] + keys["job_r"]
    row("key in an attached console → requested state in the header (p → PAUSING, r → RUNNING), frame composed",
        f"{_dist(echo)}; during Step D ({args.scale}, one pair per batch) in another process; the console waited "
        f"{keys['runq_share'][0] * 1000:.0f} ms per second for a CPU held by other processes", "≤ 100 ms p99")
    row("key in an attached console → the job's own new state in the console (p → the job's PAUSING, "
        "r → the job's RUNNING, each as the job published it)",
        f"{_dist(keys['ack_p'] + keys['job_r'])}; p alone {_dist(keys['ack_p'])}", "≤ 100 ms p99")
    row("key in an attached console → the job's answer on screen (p → PAUSED at its next batch boundary, "
        "r → the job's RUNNING applied)",
        f"{_dist(answer)}; p alone {_dist(keys['job_p'])}; r alone {_dist(keys['job_r'])}", "≤ 100 ms p99")
    row("attach → first full frame (job state and Step D progress)",
        f"best {min(frames) * 1000:.0f} ms, median {statistics.median(frames) * 1000:.0f} ms, max "
        f"{max(frames) * 1000:.0f} ms over {len(frames)} attaches (runs: {', '.join(f'{x * 1000:.0f}' for x in frames)} ms)",
        "≤ 1 s")



def flood_rows(args: argparse.Namespace, root: Path, row: Any) -> None:
    from engine.settings import load_settings

    flood_rt = root / "flood-rt"
    out = root / "flood-job.out"
    flood = _spawn(flood_rt, "flood", "--rate", str(args.rate), "--seconds", str(args.seconds), out=out)
    try:
        _wait_answering(flood_rt, FLOOD_JOB, flood)
        fl = asyncio.run(flood_latency(load_settings(runtime_dir=flood_rt), flood_rt / f"{FLOOD_JOB}.go"))
    finally:
        flood.wait(timeout=120)
    row(f"job event → on screen at {args.rate:,} events/s (log line's ts → frame showing it or a newer line)",
        f"{_dist(fl['latencies'])}; achieved {fl['rate']:,.0f} events/s over {args.seconds:g} s ({fl['events']:,} events, "
        f"{fl['lost']} log lines lost); socket alone (ts → arrival in the console process): {_dist(fl['socket_ms'])}; "
        f"the console used {fl['cpu_share']:.2f} s of CPU per second and waited {fl['runq_share'] * 1000:.0f} ms per second "
        f"for a CPU held by other processes; {fl['frames']} frames",
        "p99 ≤ 100 ms")


def cli() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("role", nargs="?", default="bench", choices=("bench", "job", "flood", "console", "hostile"),
                    help="bench (default) runs everything; the others are its child processes")
    ap.add_argument("--runtime", type=Path)
    ap.add_argument("--scale", default="seed", help="demo scale for every Step D (default seed, the runbook's)")
    ap.add_argument("--repeat", type=int, default=3, help="Step D runs of each kind (alone, consoles, hostile)")
    ap.add_argument("--rounds", type=int, default=60, help="p/r key rounds")
    ap.add_argument("--attaches", type=int, default=7)
    ap.add_argument("--rate", type=int, default=1000, help="flood job: events per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="flood job: how long")
    ap.add_argument("--batch-size", type=int, default=300)
    ap.add_argument("--parts", default="keys,flood,ratio", help="comma-separated: keys (key→screen, attach), flood, ratio")
    ap.add_argument("--job", default=STEPD_JOB)
    ap.add_argument("--gates-interval", type=float, default=30.0,
                    help="console: seconds between automatic gates refreshes (0: none; default 30, the console's)")
    ap.add_argument("--kinds", default="alone,consoles,hostile",
                    help="ratio: which Step D runs (alone, consoles, consoles-nogates, hostile); alone is always run")
    ap.add_argument("--chdb-nice", type=int, help="CLICKHOUSE_NICE for the jobs (default: the setting's default, 10)")
    ap.add_argument("--ready-dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--wait-for", type=int, default=0, help="job: start Step D once this many clients are ready")
    args = ap.parse_args()
    if args.role != "bench" and args.runtime is None:
        ap.error(f"{args.role} needs --runtime")
    if args.chdb_nice is not None:
        os.environ["CLICKHOUSE_NICE"] = str(args.chdb_nice)  # inherited by every child process
    {"bench": main, "job": job_stepd, "flood": job_flood, "console": console_process, "hostile": hostile_process}[args.role](args)


if __name__ == "__main__":
    cli()
