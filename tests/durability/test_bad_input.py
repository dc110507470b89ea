"""Bad input, table-driven: every case runs the real CLI in a subprocess and must exit with the
documented code, name the problem, print no traceback, and lose nothing.

Checkpoint cases run on a copy of one prepared demo database (Step D resume against real data);
the rest need no data.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import OPSCONSOLE, REPO, subprocess_env

SNAPSHOT = REPO / "engine" / "pipeline" / "data" / "sample_markets.json"
GOOD_MARKET = json.loads(SNAPSHOT.read_text())[0]


@dataclass
class Case:
    id: str
    args: list[str]
    code: int
    expect: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    needs_data: bool = False  # run on a copy of the prepared demo database
    check: Callable[[Path, str], None] | None = None
    #: prepares what files cannot express (a FIFO, a symlink, a read-only or full runtime dir); a
    #: generator: the code after its yield undoes it
    setup: Callable[[Path], Iterator[None]] | None = None


def _market(**changes: object) -> dict[str, object]:
    m = dict(GOOD_MARKET)
    m.update(changes)
    return m


def _snapshot(*markets: dict[str, object]) -> str:
    return json.dumps(list(markets))


RUNBOOK_CHECKPOINT = json.dumps({"job": "enrichment", "step": "D", "batch_idx": 1, "pairs_done": 30,
                                 "last_mutations": 0, "updated_at": "2025-10-28T12:00:00.000Z"})
CP = "runtime/full-enrichment.state.json"
RESUME = ["enrich", "--step", "D", "--resume", "--no-ui", "--log-format", "plain"]
DRY = ["pipeline", "--dry-run", "--no-ui", "--log-format", "plain", "--no-debug-dump"]
TRADES_HEADER = "trade_id,wallet_address,market_id,condition_id,outcome_index,side,price,shares,usd_value,fee_usd,timestamp,tx_hash\n"
TRADE_OK = "t1,0xw1,m1,0xc1,0,BUY,0.5,10,5,0,2025-01-01 00:00:00,0xh1\n"


def _trade(price: str = "0.5", shares: str = "10", usd: str = "5", fee: str = "0", tid: str = "t2") -> str:
    return f"{tid},0xw1,m1,0xc1,0,BUY,{price},{shares},{usd},{fee},2025-01-01 00:00:00,0xh2\n"


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True)


def _can_mount() -> bool:
    return os.geteuid() == 0


def read_only_runtime(tmp: Path) -> Iterator[None]:
    """runtime/ on a read-only filesystem (root: a read-only tmpfs, which root cannot write either);
    other users: a directory without write permission, which they cannot write."""
    runtime = tmp / "runtime"
    if _can_mount():
        _mount_tmpfs(runtime, "size=64k,ro")
    else:
        runtime.mkdir()
        runtime.chmod(0o500)
    try:
        yield
    finally:
        if _can_mount():
            subprocess.run(["umount", str(runtime)], check=False)
        else:
            runtime.chmod(0o700)


def full_runtime(tmp: Path) -> Iterator[None]:
    """runtime/ on a 16 KiB tmpfs that is already full: creating the lock works, writing its pid not."""
    if not _can_mount():
        pytest.skip("needs root to mount a small tmpfs")
    runtime = tmp / "runtime"
    _mount_tmpfs(runtime, "size=16k")
    try:
        with (runtime / "filler").open("wb") as fh:
            try:
                fh.write(b"\0" * 65536)
                fh.flush()
            except OSError:
                pass
        yield
    finally:
        subprocess.run(["umount", str(runtime)], check=False)


def fifo(name: str) -> Callable[[Path], Iterator[None]]:
    def make(tmp: Path) -> Iterator[None]:
        os.mkfifo(tmp / name)
        yield

    return make


def directory(name: str) -> Callable[[Path], Iterator[None]]:
    def make(tmp: Path) -> Iterator[None]:
        (tmp / name).mkdir(parents=True)
        yield

    return make


def symlink_to(name: str, target: str) -> Callable[[Path], Iterator[None]]:
    def make(tmp: Path) -> Iterator[None]:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).symlink_to(target)
        yield

    return make


DEEP_JSON = "[" * 100_000 + "]" * 100_000
BAD_UTF8 = b"\xff\xfe not utf-8 \xc3\x28"
HUGE_INT = "1" + "0" * 4999


def _no_trades_loaded(runtime_root: Path, output: str) -> None:
    assert "0 rows loaded" in output or "nothing was loaded" in output or "refused" in output


CASES: list[Case] = [
    # --- checkpoint files (Step D --resume on real data) ----------------------------------------
    Case("checkpoint-corrupt-json", RESUME, 4, ["full-enrichment.state.json", "JSON"], {CP: '{"job": "enrichment", "step": "D", "batch_'}, needs_data=True),
    Case("checkpoint-empty-file", RESUME, 4, ["full-enrichment.state.json"], {CP: ""}, needs_data=True),
    Case("checkpoint-not-an-object", RESUME, 4, ["must be a JSON object"], {CP: "[1, 2, 3]"}, needs_data=True),
    Case("checkpoint-wrong-types", RESUME, 4, ["pairs_done"], {CP: json.dumps({"job": "enrichment", "step": "D", "batch_idx": 1, "pairs_done": "lots"})}, needs_data=True),
    Case("checkpoint-negative-count", RESUME, 4, ["pairs_done"], {CP: json.dumps({"job": "enrichment", "step": "D", "batch_idx": 1, "pairs_done": -5})}, needs_data=True),
    Case("checkpoint-beyond-the-work-list", RESUME, 4, ["pairs_done=99999999", "work list has only"], {CP: json.dumps({"job": "enrichment", "step": "D", "batch_idx": 9, "pairs_done": 99999999})}, needs_data=True),
    Case("checkpoint-other-step", RESUME, 4, ["step 'E'"], {CP: json.dumps({"job": "enrichment", "step": "E", "batch_idx": 1, "pairs_done": 3})}, needs_data=True),
    Case("checkpoint-other-job", RESUME, 4, ["belongs to job"], {CP: json.dumps({"job": "pipeline", "step": "D", "batch_idx": 1, "pairs_done": 3})}, needs_data=True),
    Case("checkpoint-inputs-changed", RESUME, 4, ["inputs changed since the checkpoint"], {CP: json.dumps({"job": "enrichment", "step": "D", "batch_idx": 1, "pairs_done": 30, "fingerprint": "0" * 16, "cursor": {"wallet_address": "0x0", "condition_id": "0x0"}})}, needs_data=True),
    Case("checkpoint-runbook-hand-written-loads", RESUME, 0, ["checkpoint has no cursor", "Step D done"], {CP: RUNBOOK_CHECKPOINT}, needs_data=True),
    # --- invalid command lines ------------------------------------------------------------------
    Case("pipeline-window-and-target-date", [*DRY, "--window-days", "3", "--target-date", "2026-12-01"], 2, ["not allowed with argument"]),
    Case("pipeline-bad-target-date", [*DRY, "--target-date", "2026-13-45"], 2, ["2026-13-45"]),
    Case("pipeline-negative-window", [*DRY, "--window-days", "-1"], 2, ["--window-days"]),
    Case("pipeline-zero-batch-size", [*DRY, "--event-batch-size", "0"], 2, ["--event-batch-size"]),
    Case("pipeline-unknown-stage", [*DRY, "--stage", "everything"], 2, ["invalid choice"]),
    Case("enrich-unknown-step", ["enrich", "--step", "Z", "--no-ui"], 4, ["unknown step 'Z'"]),
    Case("enrich-zero-batch-size", ["enrich", "--step", "D", "--batch-size", "0", "--no-ui"], 2, ["--batch-size"]),
    Case("reset-needs-a-mode", ["reset"], 2, ["one of the arguments --hard --market is required"]),
    Case("reset-hard-without-terminal-or-yes", ["reset", "--hard"], 2, ["refusing to reset without confirmation", "--yes", "nothing was changed"]),
    Case("mutations-kill-unknown-id", ["mutations", "--kill", "mutation_1.txt", "--yes"], 4, ["no pending mutation 'mutation_1.txt'"]),
    Case("enrich-zero-mutation-wait", ["enrich", "--step", "D", "--mutation-wait-every", "0", "--no-ui"], 2, ["--mutation-wait-every"]),
    Case("data-load-unknown-kind", ["data", "load", "wallets", "x.csv"], 2, ["invalid choice"]),
    Case("unknown-command", ["frobnicate"], 2, ["invalid choice"]),
    # --- suites, experiments and overrides ------------------------------------------------------
    Case("unknown-suite", [*DRY, "--source", str(SNAPSHOT), "--suite", "claude"], 4, ["claude"]),
    Case("override-unknown-experiment", [*DRY, "--source", str(SNAPSHOT), "--experiment-override", "openai:research:nope.model=x"], 4, ["openai:research:nope"]),
    Case("override-without-equals", [*DRY, "--source", str(SNAPSHOT), "--experiment-override", "openai:research:openai_web_search.model"], 4, ["openai:research:openai_web_search.model"]),
    Case("override-without-key", [*DRY, "--source", str(SNAPSHOT), "--experiment-override", "openai:research:openai_web_search=3"], 4, ["openai:research:openai_web_search=3"]),
    Case("override-file-missing", [*DRY, "--source", str(SNAPSHOT), "--experiment-override-file", "nope.json"], 4, ["nope.json"]),
    Case("override-file-invalid-json", [*DRY, "--source", str(SNAPSHOT), "--experiment-override-file", "o.json"], 4, ["o.json"], {"o.json": "{\"openai:research:openai_web_search\": {"}),
    Case("override-file-not-an-object", [*DRY, "--source", str(SNAPSHOT), "--experiment-override-file", "o.json"], 4, ["o.json"], {"o.json": "[1, 2]"}),
    Case("override-file-unknown-experiment", [*DRY, "--source", str(SNAPSHOT), "--experiment-override-file", "o.json"], 4, ["nope:forecast:x"], {"o.json": json.dumps({"nope:forecast:x": {"model": "m"}})}),
    Case("include-unknown-variant", [*DRY, "--source", str(SNAPSHOT), "--include-forecast", "gpt9000"], 4, ["gpt9000"]),
    # --- Gamma snapshots ------------------------------------------------------------------------
    Case("source-missing-file", [*DRY, "--source", "nope.json"], 4, ["nope.json"]),
    Case("source-not-json", [*DRY, "--source", "s.json"], 4, ["s.json"], {"s.json": "<html>rate limited</html>"}),
    Case("source-not-a-list", [*DRY, "--source", "s.json"], 4, ["s.json"], {"s.json": json.dumps({"markets": "nope"})}),
    Case("source-market-without-id-is-a-failure", [*DRY, "--source", "s.json"], 0, ["market has no id"], {"s.json": _snapshot(_market(), _market(id=None, conditionId="0xnoid"))}),
    Case("source-broken-string-encoded-list", [*DRY, "--source", "s.json"], 0, ["outcomePrices"], {"s.json": _snapshot(_market(), _market(id="77", outcomePrices="[\"0.4\", "))}),
    Case("source-wrong-types", [*DRY, "--source", "s.json"], 0, ["outcomes"], {"s.json": _snapshot(_market(), _market(id="78", outcomes=42))}),
    Case("source-duplicates-are-merged", [*DRY, "--source", "s.json"], 0, ["duplicate"], {"s.json": _snapshot(_market(), _market(), _market())}),
    # --- data files -----------------------------------------------------------------------------
    Case("trades-missing-file", ["data", "load", "trades", "nope.csv"], 4, ["nope.csv"]),
    Case("trades-bad-rows-refused-with-line-numbers", ["data", "load", "trades", "t.csv"], 4, ["line 3", "side"], {"t.csv": TRADES_HEADER + TRADE_OK + "t2,0xw1,m1,0xc1,0,HOLD,0.5,10,5,0,2025-01-01 00:00:00,0xh2\n"}),
    Case("trades-price-out-of-range", ["data", "load", "trades", "t.csv"], 4, ["line 2", "price"], {"t.csv": TRADES_HEADER + "t1,0xw1,m1,0xc1,0,BUY,1.5,10,15,0,2025-01-01 00:00:00,0xh1\n"}),
    Case("trades-empty-file", ["data", "load", "trades", "t.csv"], 4, ["t.csv"], {"t.csv": ""}),
    Case("trades-missing-column", ["data", "load", "trades", "t.csv"], 4, ["wallet_address"], {"t.csv": "trade_id,price\nt1,0.5\n"}),
    Case("markets-malformed-jsonl", ["data", "load", "markets", "m.jsonl"], 4, ["line 2"], {"m.jsonl": json.dumps({"market_id": "m1", "condition_id": "0xc1"}) + "\n{not json\n"}),
    Case("resolutions-none-valid", ["data", "load", "resolutions", "r.json"], 4, ["unknown"], {"r.json": json.dumps({"resolutions": [{"condition_id": "unknown", "market_id": "unknown", "resolved_outcome": None, "payout_yes": None, "payout_no": None, "resolved_at": "2025-01-01T00:00:00Z"}]})}),
    Case("resolutions-unknown-condition-and-bad-sum", ["data", "load", "resolutions", "r.json"], 4, ["unknown condition '0xc1'", "payouts must sum to 1"], {"r.json": json.dumps({"resolutions": [
        {"condition_id": "0xc1", "market_id": "m1", "resolved_outcome": "YES", "payout_yes": 1, "payout_no": 0, "resolved_at": "2025-01-01T00:00:00Z"},
        {"condition_id": "0xc2", "market_id": "m2", "resolved_outcome": "NO", "payout_yes": 0.6, "payout_no": 0.6, "resolved_at": "2025-01-01T00:00:00Z"}]})}),
    # --- loads that changed data silently (issue 16, item 6) -----------------------------------
    Case("trades-repeated-header-column", ["data", "load", "trades", "t.csv"], 4, ["price", "more than once", "nothing was loaded"], {"t.csv": TRADES_HEADER.replace("shares", "price") + TRADE_OK}),
    Case("trades-unknown-column-warned", ["data", "load", "trades", "t.csv"], 0, ["unknown column(s) ignored", "fee (did you mean fee_usd?)"], {"t.csv": TRADES_HEADER.replace("fee_usd", "fee") + TRADE_OK}),
    Case("trades-unknown-column-strict", ["data", "load", "trades", "t.csv", "--strict"], 4, ["fee (did you mean fee_usd?)", "--strict", "nothing was loaded"], {"t.csv": TRADES_HEADER.replace("fee_usd", "fee") + TRADE_OK}),
    Case("markets-unknown-key-strict", ["data", "load", "markets", "m.jsonl", "--strict"], 4, ["questoin (did you mean question?)"], {"m.jsonl": json.dumps({"market_id": "m1", "condition_id": "0xc1", "questoin": "?"}) + "\n"}),
    Case("resolutions-contradictory-payouts", ["data", "load", "resolutions", "r.jsonl"], 4, ["line 1", "contradicts payout_yes/payout_no"], {"r.jsonl": json.dumps({"condition_id": "0xc1", "market_id": "m1", "payouts": [1, 0], "payout_yes": 0, "payout_no": 1, "resolved_at": "2025-01-01T00:00:00Z"}) + "\n"}),
    Case("trades-fullwidth-digits", ["data", "load", "trades", "t.csv"], 4, ["line 3", "price is not a number", "ASCII"], {"t.csv": TRADES_HEADER + TRADE_OK + _trade(price="０.５")}),
    Case("trades-arabic-indic-digits", ["data", "load", "trades", "t.csv"], 4, ["line 3", "shares is not a number"], {"t.csv": TRADES_HEADER + TRADE_OK + _trade(shares="١٠")}),
    Case("trades-underscore-digits", ["data", "load", "trades", "t.csv"], 4, ["line 3", "shares is not a number"], {"t.csv": TRADES_HEADER + TRADE_OK + _trade(shares="1_000")}),
    Case("trades-arabic-indic-timestamp", ["data", "load", "trades", "t.csv"], 4, ["line 3", "timestamp"], {"t.csv": TRADES_HEADER + TRADE_OK + "t2,0xw1,m1,0xc1,0,BUY,0.5,10,5,0,١٧٣٥٦٨٩٦٠٠,0xh2\n"}),
    Case("trades-fee-just-under-1e26", ["data", "load", "trades", "t.csv"], 4, ["line 3", "fee_usd", "out of range"], {"t.csv": TRADES_HEADER + TRADE_OK + _trade(fee="9" * 26)}),
    Case("trades-fee-1e26-with-skip-invalid", ["data", "load", "trades", "t.csv", "--skip-invalid"], 0, ["inserted 1", "line 3", "fee_usd", "out of range"], {"t.csv": TRADES_HEADER + TRADE_OK + _trade(fee="1e26")}),
    Case("trades-usd-value-beyond-its-type", ["data", "load", "trades", "t.csv"], 4, ["line 3", "usd_value", "out of range"], {"t.csv": TRADES_HEADER + TRADE_OK + _trade(usd="1" + "0" * 30)}),
    # --- clear errors, not tracebacks (issue 16, item 7) ----------------------------------------
    Case("trades-csv-field-over-131072-chars", ["data", "load", "trades", "t.csv"], 4, ["line 3", "131,072 characters"], {"t.csv": TRADES_HEADER + TRADE_OK + _trade(tid="t" * 131_073)}),
    Case("trades-csv-invalid-utf8", ["data", "load", "trades", "t.csv"], 4, ["line 3", "not valid UTF-8"], {"t.csv": (TRADES_HEADER + TRADE_OK).encode() + BAD_UTF8 + b"\n"}),
    Case("markets-jsonl-invalid-utf8", ["data", "load", "markets", "m.jsonl"], 4, ["line 1", "not valid UTF-8"], {"m.jsonl": b'{"market_id": "m1\xff", "condition_id": "0xc1"}\n'}),
    Case("resolutions-json-invalid-utf8", ["data", "load", "resolutions", "r.json"], 4, ["r.json", "not valid UTF-8"], {"r.json": b'{"resolutions": [{"condition_id": "\xc3\x28"}]}'}),
    Case("trades-gzip-named-csv", ["data", "load", "trades", "t.csv"], 4, ["gzip-compressed"], {"t.csv": gzip.compress((TRADES_HEADER + TRADE_OK).encode())}),
    Case("markets-json-nested-100000-deep", ["data", "load", "markets", "m.json"], 4, ["m.json", "nested too deeply"], {"m.json": DEEP_JSON}),
    Case("markets-jsonl-line-nested-100000-deep", ["data", "load", "markets", "m.jsonl"], 4, ["line 1", "nested too deeply"], {"m.jsonl": DEEP_JSON + "\n"}),
    Case("trades-single-line-over-16-mib", ["data", "load", "trades", "t.csv"], 4, ["line 2 is longer than 16,777,216 bytes"], {"t.csv": TRADES_HEADER + "x" * (17 * 1024 * 1024)}),
    Case("data-load-a-directory", ["data", "load", "trades", "d.csv"], 4, ["d.csv", "is a directory"], setup=directory("d.csv")),
    Case("data-load-an-unknown-extension", ["data", "load", "trades", "trades.txt"], 4,
         ["trades.txt", "--format csv|jsonl|parquet|json|polymarket"], {"trades.txt": TRADES_HEADER + TRADE_OK}),
    Case("data-load-a-fifo", ["data", "load", "trades", "p.csv"], 4, ["p.csv", "FIFO"], setup=fifo("p.csv")),
    Case("env-file-invalid-utf8", ["config"], 4, [".env", "not valid UTF-8"], {".env": b"BATCH_SIZE=3\nNAME=\xff\n"}),
    Case("env-file-symlinked-to-dev-zero", ["config"], 4, [".env", "is a device"], setup=symlink_to(".env", "/dev/zero")),
    Case("runtime-read-only-doctor", ["doctor"], 1, ["runtime", "FAIL"], setup=read_only_runtime),
    Case("runtime-read-only-gates", ["gates"], 4, ["runtime", "OPSCONSOLE_RUNTIME_DIR"], setup=read_only_runtime),
    Case("runtime-read-only-data-load", ["data", "load", "trades", "t.csv"], 4, ["runtime", "OPSCONSOLE_RUNTIME_DIR"], {"t.csv": TRADES_HEADER + TRADE_OK}, setup=read_only_runtime),
    Case("runtime-read-only-enrich", ["enrich", "--step", "D", "--no-ui"], 4, ["runtime", "OPSCONSOLE_RUNTIME_DIR"], setup=read_only_runtime),
    Case("runtime-read-only-selftest", ["selftest", "--no-ui"], 4, ["runtime", "OPSCONSOLE_RUNTIME_DIR"], setup=read_only_runtime),
    Case("runtime-full-when-the-lock-pid-is-written", ["selftest", "--no-ui"], 5, ["selftest.lock", "No space left on device"], setup=full_runtime),
    Case("runtime-full-chdb-lock", ["gates"], 5, ["clickhouse.lock", "No space left on device"], setup=full_runtime),
    Case("checkpoint-deep-json", RESUME, 4, ["full-enrichment.state.json", "nested too deeply"], {CP: DEEP_JSON}, needs_data=True),
    Case("checkpoint-invalid-utf8", RESUME, 4, ["full-enrichment.state.json", "not valid UTF-8"], {CP: b'{"job": "enrichment\xff"}'}, needs_data=True),
    Case("checkpoint-a-directory", RESUME, 4, ["full-enrichment.state.json", "is a directory"], setup=directory(CP), needs_data=True),
    Case("checkpoint-5000-digit-integer", RESUME, 4, ["full-enrichment.state.json", "digits"], {CP: '{"job": "enrichment", "step": "D", "batch_idx": 1, "pairs_done": ' + HUGE_INT + "}"}, needs_data=True),
    Case("checkpoint-over-4-mib", RESUME, 4, ["full-enrichment.state.json", "larger than 4,194,304 bytes"], {CP: RUNBOOK_CHECKPOINT + " " * (4 * 1024 * 1024)}, needs_data=True),
    Case("env-file-over-4-mib", ["config"], 4, [".env", "larger than 4,194,304 bytes"], {".env": "BATCH_SIZE=3\n" + ("# " + "x" * 1022 + "\n") * 4097}),
    Case("checkpoint-symlinked-to-dev-zero", RESUME, 4, ["full-enrichment.state.json", "is a device"], setup=symlink_to(CP, "/dev/zero"), needs_data=True),
    # --- settings and stores --------------------------------------------------------------------
    Case("setting-not-a-number", ["gates"], 4, ["BATCH_SIZE"], env={"BATCH_SIZE": "lots"}),
    Case("setting-filters-not-json", ["config"], 4, ["INGESTION_FILTERS"], env={"INGESTION_FILTERS": "{tag: 1"}),
    Case("postgres-unreachable", ["db", "migrate"], 5, ["cannot connect to Postgres"], env={"POSTGRES_URL": "postgresql://ops:Canary-PW-1@127.0.0.1:1/x?connect_timeout=2"}),
    Case("clickhouse-unreachable", ["gates"], 5, ["cannot connect to ClickHouse"], env={"CLICKHOUSE_HOST": "127.0.0.1", "CLICKHOUSE_PORT": "1"}),
]


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory, pg_server: str) -> Path:
    """A small demo database (Steps A–E done) that the checkpoint cases resume against.

    The cases share it rather than copy it (chDB's Atomic databases are symlinked inside the data
    directory): the refusals read only, and the one resume that runs rewrites the same P&L."""
    root = tmp_path_factory.mktemp("demo-template")
    out = subprocess.run(
        [*OPSCONSOLE, "demo", "--scale", "small", "--no-ui", "--log-format", "plain"],
        env=subprocess_env(OPSCONSOLE_RUNTIME_DIR=str(root / "runtime"), CLICKHOUSE_PATH=str(root / "ch"), POSTGRES_URL=pg_server),
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return root / "ch"


def test_the_table_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {"OPSCONSOLE_RUNTIME_DIR": str(tmp_path / "runtime"), "COLUMNS": "200", **case.env}
    if case.needs_data:
        env["CLICKHOUSE_PATH"] = str(request.getfixturevalue("demo_template"))
        env["POSTGRES_URL"] = request.getfixturevalue("pg_url")
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    before = {name: (tmp_path / name).read_bytes() for name in case.files}
    undo = case.setup(tmp_path) if case.setup else None
    if undo is not None:
        next(undo)
    try:
        out = subprocess.run([*OPSCONSOLE, *case.args], env=subprocess_env(**env), cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    finally:
        if undo is not None:
            next(undo, None)
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-3000:]
    assert out.returncode == case.code, f"exit {out.returncode}, expected {case.code}:\n{text[-3000:]}"
    for needle in case.expect:
        assert needle in text, f"{needle!r} not in output:\n{text[-3000:]}"
    if case.code != 0:  # refused: the operator's own files are untouched
        for name, original in before.items():
            assert (tmp_path / name).read_bytes() == original, f"{name} was modified"
    if case.check:
        case.check(tmp_path, text)
