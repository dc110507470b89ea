"""Normalization of Gamma markets and validation of forecast outputs."""

from __future__ import annotations

import json

import pytest

from engine.pipeline.forecast import StrategyError, baseline_forecast, validate_forecast
from engine.pipeline.normalize import NormalizationError, group_by_event, normalize_market
from tests.pipeline.fakes import gamma_market


def test_string_encoded_fields_are_parsed():
    m = normalize_market(gamma_market("5", "Q?", ("E5", "Five"), yes=0.25))
    assert [(c.outcome, c.price, c.token_id) for c in m.contracts] == [("Yes", 0.25, "51"), ("No", 0.75, "52")]
    assert m.event_id == "E5" and m.event_title == "Five" and m.volume == 1234.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outcomes": "not json"}, "outcomes is not valid JSON"),
        ({"outcomes": None}, "outcomes is missing"),
        ({"outcomes": "[]"}, "outcomes is empty"),
        ({"outcomePrices": '["0.5"]'}, "outcomePrices has 1 entries for 2 outcomes"),
        ({"outcomePrices": '["1.5", "0.2"]'}, r"outcomePrices\[0\] = '1.5' is not a price"),
        ({"clobTokenIds": '["1"]'}, "clobTokenIds has 1 entries"),
        ({"question": ""}, "question is missing"),
    ],
)
def test_bad_markets_raise(change, message):
    raw = gamma_market("5", "Q?", None)
    raw.update(change)
    with pytest.raises(NormalizationError, match=message):
        normalize_market(raw)


def test_grouping_by_first_event_else_market_only():
    ms = [normalize_market(gamma_market("2", "A?", ("E1", "One"))), normalize_market(gamma_market("9", "B?", None)),
          normalize_market(gamma_market("1", "C?", ("E1", "One")))]
    groups = group_by_event(ms)
    assert [(g.event_key, g.market_ids) for g in groups] == [("E1", ["2", "1"]), ("market:9", ["9"])]


def _group():
    return group_by_event([normalize_market(gamma_market("1", "A?", ("E", "E")))])[0]


def test_forecast_validation_normalizes_and_rejects():
    g = _group()
    ok = {"forecasts": [{"market_id": "1", "probabilities": [{"outcome": "Yes", "probability": 0.3},
                                                             {"outcome": "No", "probability": 0.3}]}], "rationale": ""}
    probs, _ = validate_forecast(ok, g)
    assert probs == {"1": {"Yes": 0.5, "No": 0.5}}
    bad_cases = [
        ({"forecasts": [{"market_id": "1", "probabilities": [{"outcome": "Yes", "probability": -0.1},
                                                             {"outcome": "No", "probability": 1}]}]}, "outside"),
        ({"forecasts": [{"market_id": "1", "probabilities": [{"outcome": "Yes", "probability": 0},
                                                             {"outcome": "No", "probability": 0}]}]}, "sum to 0"),
        ({"forecasts": [{"market_id": "1", "probabilities": [{"outcome": "Yes", "probability": 1}]}]}, "no probability for"),
        ({"forecasts": [{"market_id": "1", "probabilities": [{"outcome": "Maybe", "probability": 1}]}]}, "unknown outcome"),
        ({"forecasts": []}, "no forecast for market"),
        ({"forecasts": [{"market_id": "2", "probabilities": []}]}, "unknown market"),
        ({"prob": 0.5}, "does not match the forecast schema"),
    ]
    for data, message in bad_cases:
        with pytest.raises(StrategyError, match=message):
            validate_forecast(data, g)


def test_baseline_uses_prices_normalized():
    raw = gamma_market("1", "A?", None)
    raw["outcomePrices"] = json.dumps(["0.52", "0.50"])
    g = group_by_event([normalize_market(raw)])[0]
    out = baseline_forecast(g)
    assert out.llm_calls == 0 and abs(sum(out.probabilities["1"].values()) - 1) < 1e-12
