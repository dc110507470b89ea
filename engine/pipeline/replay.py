"""`opsconsole replay`: persist a run's debug dumps without any LLM call.

For a run that died after its LLM calls but before (some of) its database writes. Each dump holds
the normalized event and every experiment's outcome; successful ones are inserted on their natural
keys, so replaying twice (or replaying what the run did manage to store) writes nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import BadInput
from engine.pipeline.dumps import read_dumps, safe_name
from engine.pipeline.forecast import StrategyError, normalize_probabilities
from engine.pipeline.normalize import EventGroup
from engine.settings import Settings


@dataclass
class ReplayReport:
    run_id: str
    run_dir: str
    dry_run: bool
    files: int = 0
    events: int = 0
    research_inserted: int = 0
    research_present: int = 0
    forecasts_inserted: int = 0
    forecasts_present: int = 0
    not_ok: int = 0  # failed/skipped experiments in the dumps: nothing to persist
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def text(self) -> str:
        verb = "would insert" if self.dry_run else "inserted"
        lines = [
            f"Replay of run {self.run_id} from {self.run_dir}" + (" (dry run: database untouched)" if self.dry_run else ""),
            f"  dump files: {self.files}   events: {self.events}",
            f"  research artifacts: {verb} {self.research_inserted}, already stored {self.research_present}",
            f"  forecast results:   {verb} {self.forecasts_inserted}, already stored {self.forecasts_present}",
            f"  failed/skipped experiments in dumps (nothing to persist): {self.not_ok}",
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def _check_experiment(name: str, exp: dict[str, Any], group: EventGroup) -> None:
    for key in ("stage", "variant", "config", "config_hash", "payload"):
        if key not in exp:
            raise BadInput(f"{name}: missing {key!r}")
    if name.count(":") != 2:
        raise BadInput(f"{name}: not an experiment name")
    if exp["stage"] == "forecast":
        probs = exp.get("probabilities")
        if not isinstance(probs, dict) or set(probs) != set(group.market_ids):
            raise BadInput(f"{name}: probabilities do not cover the event's markets")
        for mid, per in probs.items():
            if not isinstance(per, dict) or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in per.values()):
                raise BadInput(f"{name}: market {mid}: probabilities must be numbers in [0, 1]")
            try:
                normalize_probabilities(per, mid)
            except StrategyError as exc:
                raise BadInput(f"{name}: {exc.reason}") from None


async def replay_run(settings: Settings, run_id: str, dump_dir: Path | None = None, dry_run: bool = False) -> ReplayReport:
    root = Path(dump_dir).expanduser().resolve() if dump_dir else settings.debug_dump_dir
    run_dir = root / safe_name(run_id)
    if not run_dir.is_dir():
        raise BadInput(f"no debug dumps for run {run_id!r} in {root}", hint="pass --dump-dir where the run wrote them")
    report = ReplayReport(run_id, str(run_dir), dry_run)
    docs: list[tuple[Path, EventGroup, dict[str, Any]]] = []
    for path, doc in read_dumps(run_dir):
        report.files += 1
        try:
            if "_error" in doc:
                raise BadInput(doc["_error"])
            if doc.get("run_id") != run_id:
                raise BadInput(f"belongs to run {doc.get('run_id')!r}")
            group = EventGroup.from_dict(doc["event"])
            experiments = doc.get("experiments") or {}
            for name, exp in experiments.items():
                if exp.get("status") == "ok":
                    _check_experiment(name, exp, group)
        except (BadInput, KeyError, TypeError, ValueError) as exc:
            # One bad file is reported and left out; the others are still replayed.
            report.problems.append(f"{path.name} ({path.parent.name}): {exc}")
            continue
        docs.append((path, group, experiments))
    report.events = len({g.event_key for _, g, _ in docs})

    if dry_run:
        for _, _, experiments in docs:
            for exp in experiments.values():
                if exp.get("status") != "ok":
                    report.not_ok += 1
                elif exp["stage"] == "research":
                    report.research_inserted += 1
                else:
                    report.forecasts_inserted += 1
        return report

    from engine.pipeline.job import git_sha
    from engine.pipeline.repository import PipelineRepository
    from engine.stores.postgres import Postgres

    async with Postgres(settings) as pg:
        repo = PipelineRepository(pg)
        await repo.migrate()
        await repo.ensure_replay_run(run_id, git_sha(), settings.environment)
        saved_events: set[str] = set()
        for _, group, experiments in docs:
            if group.event_key not in saved_events:
                await repo.save_event(group, run_id)
                saved_events.add(group.event_key)
            # research first: forecasts reference it by key
            ordered = sorted(experiments.items(), key=lambda kv: 0 if kv[1].get("stage") == "research" else 1)
            for name, exp in ordered:
                if exp.get("status") != "ok":
                    report.not_ok += 1
                    continue
                suite, stage, variant = name.split(":")
                usage = exp.get("usage") or {}
                row = {"event_key": group.event_key, "name": name, "suite": suite, "stage": stage, "variant": variant,
                       "config_hash": exp["config_hash"], "config": exp["config"], "payload": exp["payload"],
                       "probabilities": exp.get("probabilities"), "research_keys": exp.get("research_keys") or [],
                       "model": exp.get("model"), "tokens_in": int(usage.get("tokens_in", 0)),
                       "tokens_out": int(usage.get("tokens_out", 0)), "cost_usd": float(usage.get("cost_usd", 0.0)),
                       "run_id": run_id}
                if stage == "research":
                    if await repo.save_artifact(row):
                        report.research_inserted += 1
                    else:
                        report.research_present += 1
                else:
                    if await repo.save_result(row):
                        report.forecasts_inserted += 1
                    else:
                        report.forecasts_present += 1
    return report
