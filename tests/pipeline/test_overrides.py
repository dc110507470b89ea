"""Overrides: typed values, precedence, and every way they can be wrong."""

from __future__ import annotations

import json

import pytest

from engine.errors import BadInput
from engine.pipeline.experiments import default_registry, effective_configs, select
from engine.pipeline.overrides import build_override_set, parse_spec, parse_value

RESEARCH = "openai:research:openai_web_search"


def test_values_are_typed():
    assert parse_value("true") is True and parse_value("false") is False and parse_value("null") is None
    assert parse_value("500") == 500 and parse_value("0.5") == 0.5
    assert parse_value('"123"') == "123" and parse_value("'quoted'") == "quoted"
    assert parse_value("gpt-4-turbo") == "gpt-4-turbo"
    assert parse_value('["a", 1]') == ["a", 1] and parse_value("[a,2,true]") == ["a", 2, True]
    assert parse_value("[]") == []


def test_spec_syntax_errors_name_the_problem():
    assert parse_spec(f"{RESEARCH}.prompt_params.max_tokens=500").path == ("prompt_params", "max_tokens")
    with pytest.raises(BadInput, match="no '=' found"):
        parse_spec(f"{RESEARCH}.model")
    with pytest.raises(BadInput, match="no key after"):
        parse_spec(f"{RESEARCH}=x")
    with pytest.raises(BadInput, match="suite:stage:variant"):
        parse_spec("openai.model=x")
    with pytest.raises(BadInput, match="empty key"):
        parse_spec(f"{RESEARCH}.prompt_params..x=1")


def test_precedence_defaults_then_files_in_order_then_inline(tmp_path):
    f1, f2 = tmp_path / "a.json", tmp_path / "b.json"
    f1.write_text(json.dumps({RESEARCH: {"model": "from-file-1", "prompt_params": {"temperature": 0.5, "max_tokens": 10}}}))
    f2.write_text(json.dumps({RESEARCH: {"model": "from-file-2", "prompt_params": {"temperature": 0.7}}}))
    reg = default_registry()
    cfg = effective_configs(reg, build_override_set([f1, f2], []))[RESEARCH]
    assert cfg["model"] == "from-file-2"
    assert cfg["prompt_params"] == {"max_tokens": 10, "temperature": 0.7, "top_p": None}  # deep-merged
    cfg = effective_configs(reg, build_override_set([f1, f2], [f"{RESEARCH}.model=inline", f"{RESEARCH}.prompt_params.max_tokens=500"]))[RESEARCH]
    assert cfg["model"] == "inline" and cfg["prompt_params"]["max_tokens"] == 500 and cfg["prompt_params"]["temperature"] == 0.7
    untouched = effective_configs(reg, build_override_set([], []))
    assert untouched[RESEARCH]["model"] == "gpt-5-mini"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("openai:research:nope.model=x", "unknown experiment 'openai:research:nope'"),
        ("openai:forecast:openai_web_search.model=x", "did you mean openai:research:openai_web_search"),
        (f"{RESEARCH}.modle=x", "modle: unknown key"),
        (f"{RESEARCH}.prompt_params.max_tokens=-3", "max_tokens: Input should be greater than or equal to 1"),
        (f"{RESEARCH}.web_search=maybe", "web_search: Input should be a valid boolean"),
        (f"{RESEARCH}.model.name=x", "not an object"),
    ],
)
def test_override_errors(spec, message):
    with pytest.raises(BadInput, match=message):
        effective_configs(default_registry(), build_override_set([], [spec]))


def test_override_file_errors(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(BadInput, match="cannot read"):
        build_override_set([missing], [])
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(BadInput, match="bad.json: invalid JSON"):
        build_override_set([bad], [])
    bad.write_text("[1]")
    with pytest.raises(BadInput, match="expected a JSON object"):
        build_override_set([bad], [])
    bad.write_text(json.dumps({"gemini:forecast:unknown": {"model": "x"}}))
    with pytest.raises(BadInput, match="unknown experiment 'gemini:forecast:unknown'"):
        effective_configs(default_registry(), build_override_set([bad], []))


def test_selection_filters():
    reg = default_registry()
    names = lambda sel: [e.name for e in sel.experiments]  # noqa: E731
    assert names(select(reg, stage="research")) == ["gemini:research:gemini_grounded", "openai:research:openai_web_search"]
    # a forecast filter pulls in only the research that forecast needs
    assert names(select(reg, include_forecast=["gpt5"])) == ["openai:research:openai_web_search", "openai:forecast:gpt5"]
    assert names(select(reg, include_forecast=["openai:gpt5,baseline:market_prices"])) == [
        "openai:research:openai_web_search", "baseline:forecast:market_prices", "openai:forecast:gpt5"]
    assert names(select(reg, suites=["baseline"])) == ["baseline:forecast:market_prices"]
    sel = select(reg, available={"openai": "OPENAI_API_KEY is not set", "gemini": None, "baseline": None})
    assert sel.skipped_suites == {"openai": "OPENAI_API_KEY is not set"}
    assert not any(e.suite == "openai" for e in sel.experiments)
    with pytest.raises(BadInput, match="unknown suite"):
        select(reg, suites=["anthropic"])
    with pytest.raises(BadInput, match="--include-forecast 'gpt9' matches no forecast variant"):
        select(reg, include_forecast=["gpt9"])
    with pytest.raises(BadInput, match="--include-research 'gpt5' matches no research variant"):
        select(reg, include_research=["gpt5"])


def test_suite_files_are_validated(tmp_path):
    from engine.pipeline.experiments import load_registry

    (tmp_path / "x.toml").write_text('suite = "x"\n[[experiments]]\nstage = "forecast"\nvariant = "v"\nkind = "teleport"\n')
    with pytest.raises(BadInput, match="unknown strategy kind 'teleport'"):
        load_registry(tmp_path)
    (tmp_path / "x.toml").write_text(
        'suite = "x"\n[[experiments]]\nstage = "forecast"\nvariant = "v"\nkind = "openai_forecast"\n'
        'requires = ["x:research:missing"]\n[experiments.config]\nmodel = "m"\n')
    with pytest.raises(BadInput, match="requires unknown experiment"):
        load_registry(tmp_path)
    (tmp_path / "x.toml").write_text(
        'suite = "x"\n[[experiments]]\nstage = "forecast"\nvariant = "v"\nkind = "openai_forecast"\n')
    with pytest.raises(BadInput, match="model: Field required"):
        load_registry(tmp_path)
