"""The one thread that runs this process's chDB calls, at a lower CPU priority than the rest.

chDB executes inside our process. A Step D statement keeps a dozen engine threads busy (query
pipeline, merges, mutations) on a machine that may have two cores, and the job's event loop, which
answers consoles and writes the log, must wait its turn among them: under a running Step D a pause
key took up to half a second to be answered. On Linux the nice value is a per-thread attribute that
new threads inherit, so chDB is imported, opened and called from one dedicated thread whose nice
value is raised first: every engine thread chDB starts then inherits it. With nothing else to
run, the engine's threads still get every core (nice only orders threads competing for a CPU).

Statements are already serialised per process (chDB keeps bound parameters on its connection),
so one thread costs no concurrency. Raising a nice value needs no privilege; lowering it again
would, which is why the niced work lives on its own thread rather than borrowing a caller's.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_NICE = 10

_guard = threading.Lock()
_jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] | None = None
_thread_id: int | None = None


def _serve(jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]], nice: int) -> None:
    _lower_priority(nice)
    while True:
        fn, future = jobs.get()
        try:
            future.set_result(fn())
        except BaseException as exc:  # the caller re-raises it
            future.set_exception(exc)


def _lower_priority(nice: int) -> None:
    global _thread_id
    _thread_id = threading.get_ident()
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # a sandbox forbidding it: run at the caller's priority
        pass


def _forget_after_fork() -> None:
    # A forked child has no copy of the thread; a new one is made if the child uses chDB.
    global _jobs, _thread_id
    _jobs, _thread_id = None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def call(fn: Callable[[], T], nice: int = DEFAULT_NICE, timeout: float | None = None) -> T:
    """Run `fn` on the chDB thread and return its result (or raise its exception; TimeoutError
    after `timeout` seconds, `fn` then still queued or running). `nice` is applied when the thread
    is first made; later calls reuse that thread as it is."""
    global _jobs
    if _thread_id == threading.get_ident():  # already on it (e.g. a nested call): never wait on ourselves
        return fn()
    with _guard:
        if _jobs is None:
            _jobs = queue.SimpleQueue()
            # A daemon, like anyio's worker threads: exiting never waits on a statement.
            threading.Thread(target=_serve, args=(_jobs, nice), name="chdb", daemon=True).start()
        jobs = _jobs
    future: Future[T] = Future()
    jobs.put((fn, future))
    return future.result(timeout)

