"""The resolution rule and the metric edges, on their own."""

from __future__ import annotations

import json
import math

import pytest

from engine.enrichment.gamma import GammaMarket
from engine.scoring.metrics import calibration, log_loss, paired_bootstrap
from engine.scoring.resolution import NotResolved, Resolution, resolution_of
from tests.scoring.gamma_closed import closed_market, open_market


def market(yes: str, no: str, **extra: object) -> GammaMarket:
    raw = closed_market("7", yes, no)
    raw.update(extra)
    return GammaMarket.from_api(raw)


@pytest.mark.parametrize(("prices", "y"), [(("1", "0"), 1), (("0", "1"), 0), (("0.5", "0.5"), None)])
def test_final_payouts(prices: tuple[str, str], y: int | None) -> None:
    res = resolution_of(market(*prices), "gamma")
    assert isinstance(res, Resolution) and res.y == y
    assert res.closed_at is not None and res.closed_at.isoformat() == "2026-11-30T12:00:00+00:00"


def test_uma_status_is_ignored() -> None:
    # "disputed" in the fixture, "proposed" here: neither matters, only closed + final prices do.
    assert isinstance(resolution_of(market("1", "0", umaResolutionStatus="proposed"), "gamma"), Resolution)


@pytest.mark.parametrize(("prices", "pending", "why"), [
    (("0.97", "0.03"), True, "not final"),
    (("1", "1"), True, "not payouts"),
    (("-0.5", "1.5"), True, "not payouts"),
])
def test_not_resolved(prices: tuple[str, str], pending: bool, why: str) -> None:
    res = resolution_of(market(*prices), "gamma")
    assert isinstance(res, NotResolved) and res.pending is pending and why in res.reason


def test_open_and_non_binary() -> None:
    res = resolution_of(GammaMarket.from_api(open_market("8")), "gamma")
    assert isinstance(res, NotResolved) and res.pending
    three = market("1", "0", outcomes=json.dumps(["A", "B", "C"]), outcomePrices=json.dumps(["1", "0", "0"]))
    res = resolution_of(three, "gamma")
    assert isinstance(res, NotResolved) and not res.pending


def test_log_loss_is_clipped() -> None:
    assert log_loss(0.0, 1) == pytest.approx(-math.log(1e-6))
    assert log_loss(1.0, 0) == pytest.approx(-math.log(1e-6))
    assert log_loss(1.0, 1) == pytest.approx(-math.log(1 - 1e-6))


def test_calibration_edges() -> None:
    cal = calibration([(0.0, 0), (0.1, 1), (0.999, 1), (1.0, 0)])
    assert [b["count"] for b in cal] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert cal[9]["mean_forecast"] == pytest.approx(0.9995) and cal[9]["observed"] == 0.5


def test_bootstrap_is_seeded() -> None:
    v = [((i * 37) % 100) / 400 for i in range(60)]
    b = [((i * 53) % 100) / 300 for i in range(60)]
    assert paired_bootstrap(v, b, seed=1) == paired_bootstrap(v, b, seed=1)
    assert paired_bootstrap(v, b, seed=1) != paired_bootstrap(v, b, seed=2)
    bss, _ = paired_bootstrap([0.1], [0.0])
    assert bss is None  # a zero baseline Brier leaves BSS undefined
