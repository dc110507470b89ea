"""The benchmark's loopback OpenAI server, in a process of its own.

    python -m benchmarks.llm_server LATENCIES.json     # prints its URL, serves until stdin closes

A real LLM API runs on someone else's machine: its request parsing and JSON encoding must not take
turns with the pipeline on the pipeline's interpreter lock, or the benchmark would charge the fake
server's CPU to the pipeline.
"""

from __future__ import annotations

import json
import sys

from benchmarks.pipeline import SlowOpenAI
from tests.pipeline.fakes import LoopbackServer


def main() -> None:
    per_event = json.loads(open(sys.argv[1]).read())
    server = LoopbackServer(SlowOpenAI(per_event))
    print(server.url, flush=True)
    sys.stdin.read()  # the benchmark closes our stdin when it is done
    server.close()


if __name__ == "__main__":
    main()
