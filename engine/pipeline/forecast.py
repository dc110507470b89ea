"""Forecast outputs: the JSON schema asked of models, prompts, and validation + normalization.

A forecast is `{market_id: {outcome: probability}}`. Every probability must be a finite number in
[0, 1]; each market's probabilities are then normalized to sum to 1 (a model's 0.6/0.5 becomes
0.545/0.455). A market missing from the answer, unknown outcomes, or all-zero probabilities make
the whole output invalid: half a forecast is not stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from engine.pipeline.normalize import EventGroup

MARKETS_MARKER = "MARKETS_JSON:"


class StrategyError(Exception):
    """One strategy failed for one event. Only it and what depends on it are affected."""

    def __init__(self, reason: str, retriable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable


@dataclass
class StrategyOutput:
    payload: dict[str, Any]
    probabilities: dict[str, dict[str, float]] | None = None
    model: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    llm_calls: int = 0
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)


class _OutcomeProb(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str
    probability: float


class _MarketForecast(BaseModel):
    model_config = ConfigDict(extra="forbid")
    market_id: str
    probabilities: list[_OutcomeProb]


class _ForecastAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    forecasts: list[_MarketForecast]
    rationale: str = ""


def forecast_schema(group: EventGroup) -> dict[str, Any]:
    """Strict JSON schema (OpenAI structured outputs rules: every property required, no extras)."""
    return {
        "type": "object",
        "properties": {
            "forecasts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "market_id": {"type": "string", "enum": group.market_ids},
                        "probabilities": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"outcome": {"type": "string"}, "probability": {"type": "number"}},
                                "required": ["outcome", "probability"],
                                "additionalProperties": False,
                            },
                        },
                    },
                    "required": ["market_id", "probabilities"],
                    "additionalProperties": False,
                },
            },
            "rationale": {"type": "string"},
        },
        "required": ["forecasts", "rationale"],
        "additionalProperties": False,
    }


def markets_block(group: EventGroup) -> str:
    items = [
        {
            "market_id": m.market_id,
            "question": m.question,
            "end_date": m.end_date,
            "outcomes": [c.outcome for c in m.contracts],
            "market_prices": [c.price for c in m.contracts],
        }
        for m in group.markets
    ]
    return f"{MARKETS_MARKER} {json.dumps(items, separators=(',', ':'))}"


RESEARCH_INSTRUCTIONS = (
    "You are a research analyst for prediction markets. Search the web for the latest facts that bear "
    "on how the markets below will resolve. Report concise findings with dates and cite sources."
)
FORECAST_INSTRUCTIONS = (
    "You are a calibrated forecaster. Using the research notes, give a probability for every outcome "
    "of every market below. Probabilities are numbers between 0 and 1 and each market's sum to 1. "
    "Answer only with JSON matching the schema."
)


def research_prompt(group: EventGroup) -> str:
    return f"Event: {group.title}\n{markets_block(group)}\nResearch what will decide these markets."


def forecast_prompt(group: EventGroup, research: dict[str, dict[str, Any]]) -> str:
    notes = "\n\n".join(f"[{name}]\n{payload.get('text', '')}" for name, payload in sorted(research.items()))
    return (
        f"Event: {group.title}\n{markets_block(group)}\n\nResearch notes:\n{notes or '(none)'}\n\n"
        "Return forecasts for every market_id listed."
    )


def parse_forecast_json(text: str | None, group: EventGroup) -> tuple[dict[str, dict[str, float]], str]:
    if text is None or not text.strip():
        raise StrategyError("model returned no output text")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StrategyError(f"model output is not valid JSON (truncated?): {exc.msg} at char {exc.pos}") from None
    return validate_forecast(data, group)


def validate_forecast(data: Any, group: EventGroup) -> tuple[dict[str, dict[str, float]], str]:
    try:
        answer = _ForecastAnswer.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise StrategyError(f"model output does not match the forecast schema: {where}: {first['msg']}") from None
    wanted = {m.market_id: m for m in group.markets}
    out: dict[str, dict[str, float]] = {}
    for fc in answer.forecasts:
        if fc.market_id not in wanted:
            raise StrategyError(f"model output names unknown market {fc.market_id!r}")
        if fc.market_id in out:
            raise StrategyError(f"model output lists market {fc.market_id} twice")
        outcomes = [c.outcome for c in wanted[fc.market_id].contracts]
        probs: dict[str, float] = {}
        for op in fc.probabilities:
            if op.outcome not in outcomes:
                raise StrategyError(f"market {fc.market_id}: unknown outcome {op.outcome!r} (expected {outcomes})")
            p = op.probability
            if not math.isfinite(p) or p < 0.0 or p > 1.0:
                raise StrategyError(f"market {fc.market_id}: probability {p!r} for {op.outcome!r} is outside [0, 1]")
            probs[op.outcome] = p
        missing = [o for o in outcomes if o not in probs]
        if missing:
            raise StrategyError(f"market {fc.market_id}: no probability for {missing}")
        out[fc.market_id] = normalize_probabilities(probs, fc.market_id)
    absent = [mid for mid in wanted if mid not in out]
    if absent:
        raise StrategyError(f"model output has no forecast for market(s) {', '.join(absent)}")
    return out, answer.rationale


def normalize_probabilities(probs: dict[str, float], market_id: str) -> dict[str, float]:
    total = sum(probs.values())
    if total <= 0:
        raise StrategyError(f"market {market_id}: probabilities sum to 0")
    return {k: v / total for k, v in probs.items()}


def baseline_forecast(group: EventGroup) -> StrategyOutput:
    """Market prices as the forecast: the benchmark every LLM variant is measured against."""
    out: dict[str, dict[str, float]] = {}
    for m in group.markets:
        prices = {c.outcome: c.price for c in m.contracts}
        if any(p is None for p in prices.values()):
            raise StrategyError(f"market {m.market_id}: no outcomePrices, nothing to use as the baseline", retriable=False)
        out[m.market_id] = normalize_probabilities({k: float(v) for k, v in prices.items() if v is not None}, m.market_id)
    return StrategyOutput(payload={"source": "outcomePrices"}, probabilities=out)


def cost(tokens_in: int, tokens_out: int, pricing: dict[str, Any]) -> float:
    return tokens_in * float(pricing.get("input_per_1m", 0)) / 1e6 + tokens_out * float(pricing.get("output_per_1m", 0)) / 1e6
