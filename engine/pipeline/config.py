"""What the operator asked a pipeline run to do, checked once and frozen.

`PipelineConfig.build` is the only place options, override files, inline overrides and the suite
selection are validated: it runs when a job object is made, before any network or database work,
so a bad override exits 4 with a clear message. Nothing here changes while a run goes on; the
live overrides an operator edits mid-run are layered on top per event (`configs_with`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, field_validator

from engine.errors import BadInput
from engine.pipeline.experiments import (
    Registry,
    Selection,
    default_registry,
    effective_configs,
    experiment_hashes,
    select,
    suite_availability,
)
from engine.pipeline.options import PipelineOptions
from engine.pipeline.overrides import OverrideSet, build_override_set
from engine.settings import Settings

Configs = dict[str, dict[str, Any]]


class PipelineLive(BaseModel):
    """Live settings: overrides edited while running apply to events not yet started."""

    experiment_overrides: list[str] = []

    @field_validator("experiment_overrides")
    @classmethod
    def _valid(cls, value: list[str]) -> list[str]:
        try:
            effective_configs(default_registry(), OverrideSet().with_inline(value))
        except BadInput as exc:
            raise ValueError(str(exc)) from None
        return value


@dataclass(frozen=True)
class PipelineConfig:
    options: PipelineOptions  # a private copy: the caller may reuse or change its own object
    registry: Registry
    base_overrides: OverrideSet  # the override files; inline specs are layered per event
    start_configs: Configs  # effective configs as the run starts (files + inline flags)

    @classmethod
    def build(cls, options: PipelineOptions, registry: Registry | None = None) -> PipelineConfig:
        """Everything an operator can get wrong is checked here (BadInput), before any work."""
        options.validate()
        options = copy.deepcopy(options)
        registry = registry or default_registry()
        base = build_override_set(options.override_files, [])
        start = effective_configs(registry, base.with_inline(options.experiment_overrides))
        # Unknown suites or variants fail now; which suites have their keys is decided per run.
        select(registry, suites=options.suites, stage=options.stage,
               include_research=options.include_research, include_forecast=options.include_forecast)
        return cls(options, registry, base, start)

    def live_settings(self) -> PipelineLive:
        return PipelineLive(experiment_overrides=list(self.options.experiment_overrides))

    def select_available(self, settings: Settings) -> Selection:
        """The selection for this machine: suites whose keys are missing are skipped (with reasons)."""
        o = self.options
        return select(self.registry, suites=o.suites, stage=o.stage, include_research=o.include_research,
                      include_forecast=o.include_forecast, available=suite_availability(self.registry, settings))

    def configs_with(self, inline: list[str]) -> Configs:
        """Override files + these inline specs (raises BadInput when the specs are wrong)."""
        return effective_configs(self.registry, self.base_overrides.with_inline(inline))

    def hashes(self, configs: Configs) -> dict[str, str]:
        return experiment_hashes(self.registry, configs)

    def event_batch_size(self, settings: Settings) -> int:
        """How many events may be in flight at once."""
        return self.options.event_batch_size or settings.pipeline_event_batch_size

    def options_record(self, selection: Selection, window_desc: dict[str, str | None], settings: Settings) -> dict[str, Any]:
        """What processing_runs.options records about this run."""
        o = self.options
        return {
            "suites": selection.suites, "stage": o.stage, "include_research": o.include_research,
            "include_forecast": o.include_forecast, "experiment_overrides": o.experiment_overrides,
            "override_files": [str(p) for p in o.override_files], "limit": o.limit,
            "source": str(o.source) if o.source else None,
            "event_batch_size": self.event_batch_size(settings),
            "window": window_desc, "skipped_suites": selection.skipped_suites,
        }
