"""Suites and experiments: loaded from the declarative files in engine/pipeline/suites/*.toml.

Adding a suite is one small TOML file naming strategy kinds (see `CONFIG_MODELS`). Experiment names
are `suite:stage:variant`. Configs are validated with a pydantic model per kind (unknown keys are
errors) after overrides are applied, so a typo in an override fails before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import BadInput
from engine.pipeline.overrides import OverrideSet

SUITES_DIR = Path(__file__).parent / "suites"
STAGES = ("research", "forecast")
_NAME_PART = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# --- config models per strategy kind ---------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptParams(_Strict):
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)


class Pricing(_Strict):
    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)


class LlmConfig(_Strict):
    model: str = Field(min_length=1)
    prompt_params: PromptParams = PromptParams()
    instructions: str | None = None  # replaces the built-in system prompt when set
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    pricing: Pricing = Pricing()


class OpenAIResearchConfig(LlmConfig):
    web_search: bool = True
    web_search_tool: Literal["web_search", "web_search_preview"] = "web_search"
    search_context_size: Literal["low", "medium", "high"] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class OpenAIForecastConfig(LlmConfig):
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class GeminiResearchConfig(LlmConfig):
    google_search: bool = True


class GeminiForecastConfig(LlmConfig):
    pass


class MarketPricesConfig(_Strict):
    pass


CONFIG_MODELS: dict[str, type[BaseModel]] = {
    "market_prices": MarketPricesConfig,
    "openai_research": OpenAIResearchConfig,
    "openai_forecast": OpenAIForecastConfig,
    "gemini_research": GeminiResearchConfig,
    "gemini_forecast": GeminiForecastConfig,
}
# Keys that change how a call is made, not what it produces: left out of the result's identity so
# raising a timeout does not pay for the same work again.
OPERATIONAL_KEYS = {"timeout_s", "max_retries", "pricing"}


@dataclass(frozen=True)
class Experiment:
    suite: str
    stage: str
    variant: str
    kind: str
    defaults: dict[str, Any]
    requires: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.suite}:{self.stage}:{self.variant}"

    @property
    def uses_llm(self) -> bool:
        return self.kind != "market_prices"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    experiments: tuple[Experiment, ...]
    requires_key: str | None = None  # Settings field that must be set
    key_env: str | None = None
    path: str = ""


class SuiteFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    class ExperimentEntry(BaseModel):
        model_config = ConfigDict(extra="forbid")
        stage: Literal["research", "forecast"]
        variant: str
        kind: str
        requires: list[str] = []
        config: dict[str, Any] = {}

    suite: str
    description: str = ""
    requires_key: str | None = None
    key_env: str | None = None
    experiments: list[ExperimentEntry]


def load_suite_file(path: Path) -> Suite:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        parsed = SuiteFile.model_validate(raw)
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise BadInput(f"suite file {path}: {exc}") from None
    if not _NAME_PART.match(parsed.suite):
        raise BadInput(f"suite file {path}: bad suite name {parsed.suite!r}")
    experiments = []
    for entry in parsed.experiments:
        if not _NAME_PART.match(entry.variant):
            raise BadInput(f"suite file {path}: bad variant name {entry.variant!r} (no dots or colons)")
        if entry.kind not in CONFIG_MODELS:
            raise BadInput(f"suite file {path}: unknown strategy kind {entry.kind!r}")
        experiments.append(
            Experiment(parsed.suite, entry.stage, entry.variant, entry.kind, entry.config, tuple(entry.requires))
        )
    suite = Suite(parsed.suite, parsed.description, tuple(experiments), parsed.requires_key, parsed.key_env, str(path))
    for exp in experiments:
        validate_config(exp, exp.defaults)
    return suite


@dataclass(frozen=True)
class Registry:
    suites: dict[str, Suite]

    @property
    def experiments(self) -> dict[str, Experiment]:
        return {e.name: e for s in self.suites.values() for e in s.experiments}


def load_registry(directory: Path = SUITES_DIR) -> Registry:
    suites: dict[str, Suite] = {}
    for path in sorted(directory.glob("*.toml")):
        suite = load_suite_file(path)
        if suite.name in suites:
            raise BadInput(f"suite {suite.name!r} is defined twice ({suites[suite.name].path}, {path})")
        suites[suite.name] = suite
    reg = Registry(suites)
    names = reg.experiments
    for exp in names.values():
        for dep in exp.requires:
            if dep not in names:
                raise BadInput(f"experiment {exp.name} requires unknown experiment {dep}")
            if names[dep].stage != "research":
                raise BadInput(f"experiment {exp.name} may only require research experiments, not {dep}")
    return reg


@lru_cache(maxsize=1)
def default_registry() -> Registry:
    return load_registry()


def validate_config(exp: Experiment, config: dict[str, Any]) -> dict[str, Any]:
    model = CONFIG_MODELS[exp.kind]
    try:
        return model.model_validate(config).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: "
            + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
            for err in exc.errors()
        )
        raise BadInput(f"experiment {exp.name}: invalid config: {problems}") from None


def check_override_names(registry: Registry, overrides: OverrideSet) -> None:
    known = registry.experiments
    for name in sorted(overrides.experiments()):
        if name not in known:
            close = [k for k in known if k.split(":")[-1] == name.split(":")[-1]]
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BadInput(
                f"experiment override names unknown experiment {name!r}{hint}; "
                "see `opsconsole pipeline --list-experiments`"
            )


def effective_configs(registry: Registry, overrides: OverrideSet) -> dict[str, dict[str, Any]]:
    """Validated config of every experiment after overrides; raises BadInput on any problem."""
    check_override_names(registry, overrides)
    return {name: validate_config(exp, overrides.apply(name, exp.defaults)) for name, exp in registry.experiments.items()}


def config_hash(config: dict[str, Any], dep_hashes: list[str] | tuple[str, ...] = ()) -> str:
    """Identity of a result: its config minus operational keys, plus the research it builds on."""
    ident = {k: v for k, v in config.items() if k not in OPERATIONAL_KEYS}
    blob = json.dumps({"config": ident, "deps": list(dep_hashes)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def experiment_hashes(registry: Registry, configs: dict[str, dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    exps = registry.experiments
    for name in sorted(exps, key=lambda n: 0 if exps[n].stage == "research" else 1):
        out[name] = config_hash(configs[name], [out[d] for d in exps[name].requires])
    return out


# --- selection ---------------------------------------------------------------------------------------
@dataclass
class Selection:
    experiments: list[Experiment]  # runnable, research first
    skipped_suites: dict[str, str] = field(default_factory=dict)  # suite -> reason
    suites: list[str] = field(default_factory=list)  # selected suites (incl. skipped ones)
    chosen: list[Experiment] = field(default_factory=list)  # picked by the filters, keys or not


def _split_tokens(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(t.strip() for t in value.split(",") if t.strip())
    return out


def _matches(exp: Experiment, token: str) -> bool:
    return token in (exp.variant, f"{exp.suite}:{exp.variant}", exp.name)


def select(
    registry: Registry,
    *,
    suites: list[str] | None = None,
    stage: str = "both",
    include_research: list[str] | None = None,
    include_forecast: list[str] | None = None,
    available: dict[str, str | None] | None = None,
) -> Selection:
    """Which experiments run. `available` maps suite -> reason it cannot run (None = can run)."""
    if stage not in ("research", "forecast", "both"):
        raise BadInput(f"--stage must be research, forecast or both, not {stage!r}")
    chosen = list(dict.fromkeys(suites or registry.suites))
    unknown = [s for s in chosen if s not in registry.suites]
    if unknown:
        raise BadInput(f"unknown suite(s): {', '.join(unknown)}; known: {', '.join(registry.suites)}")
    pool = [e for s in chosen for e in registry.suites[s].experiments]
    filters = {"research": _split_tokens(include_research), "forecast": _split_tokens(include_forecast)}
    for st, tokens in filters.items():
        for token in tokens:
            if not any(e.stage == st and _matches(e, token) for e in pool):
                known = ", ".join(f"{e.suite}:{e.variant}" for e in pool if e.stage == st) or "none"
                raise BadInput(f"--include-{st} {token!r} matches no {st} variant of the selected suites (known: {known})")
    picked: list[Experiment] = []
    for e in pool:
        if stage != "both" and e.stage != stage:
            continue
        tokens = filters[e.stage]
        if tokens and not any(_matches(e, t) for t in tokens):
            continue
        picked.append(e)
    if stage == "both" and filters["forecast"] and not filters["research"]:
        # Only the research the chosen forecasts build on: nothing else would use it.
        needed = {d for e in picked if e.stage == "forecast" for d in e.requires}
        picked = [e for e in picked if e.stage == "forecast" or e.name in needed]
    skipped: dict[str, str] = {}
    for s in chosen:
        reason = (available or {}).get(s)
        if reason:
            skipped[s] = reason
    picked.sort(key=lambda e: (0 if e.stage == "research" else 1, chosen.index(e.suite)))
    runnable = [e for e in picked if e.suite not in skipped]
    return Selection(runnable, skipped, chosen, picked)


def suite_availability(registry: Registry, settings: Any) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for suite in registry.suites.values():
        if suite.requires_key and getattr(settings, suite.requires_key, None) is None:
            out[suite.name] = f"{suite.key_env or suite.requires_key.upper()} is not set"
        else:
            out[suite.name] = None
    return out


def manifest(registry: Registry, selection: Selection, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    hashes = experiment_hashes(registry, configs)
    selected = {e.name for e in selection.chosen}
    runnable = {e.name for e in selection.experiments}
    suites = []
    for name in selection.suites:
        suite = registry.suites[name]
        suites.append({
            "suite": name,
            "description": suite.description,
            "requires": suite.key_env,
            "skipped_reason": selection.skipped_suites.get(name),
            "experiments": [
                {
                    "name": e.name, "stage": e.stage, "variant": e.variant, "kind": e.kind,
                    "requires": list(e.requires), "selected": e.name in selected, "will_run": e.name in runnable,
                    "config": configs[e.name], "config_hash": hashes[e.name],
                }
                for e in suite.experiments
            ],
        })
    return {"suites": suites, "selected": [e.name for e in selection.chosen],
            "will_run": [e.name for e in selection.experiments]}
