"""Named crash points for durability tests.

`OPSCONSOLE_CRASH_AT=name` (or `name:N` for the N-th time the point is reached) makes the process
SIGKILL itself at that point, exactly as a power cut or OOM kill would. Unset — always, outside the
crash tests — this is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_ENV = "OPSCONSOLE_CRASH_AT"
_hits: Counter[str] = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get(_ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] >= (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
