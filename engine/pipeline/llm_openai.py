"""OpenAI suite strategies through the official SDK's Responses API.

Research: one `responses.create` with the web search tool. Forecast: one `responses.create` with a
strict JSON-schema `text.format`. The SDK does its own retries (429/5xx, honouring Retry-After) up to
the experiment's `max_retries`; what is left after that is this strategy's failure, nothing more.
"""

from __future__ import annotations

from typing import Any

import openai
from openai import AsyncOpenAI

from engine.pipeline.forecast import (
    FORECAST_INSTRUCTIONS,
    RESEARCH_INSTRUCTIONS,
    StrategyError,
    StrategyOutput,
    cost,
    forecast_prompt,
    forecast_schema,
    parse_forecast_json,
    research_prompt,
)
from engine.pipeline.normalize import EventGroup
from engine.redact import redact


class OpenAIProvider:
    def __init__(self, api_key: str, base_url: str | None) -> None:
        self.client = AsyncOpenAI(api_key=api_key, base_url=base_url or None)
        # One derived client per (timeout, retries): `with_options` builds a new client object, and
        # doing that on every call was measurable CPU with dozens of calls in flight. They all share
        # the base client's connection pool.
        self._variants: dict[tuple[float, int], AsyncOpenAI] = {}
        # The SDK imports the Responses resource on first use (~0.4 s); do it here, which the job
        # runs in a worker thread while markets are fetched.
        _ = self.client.responses

    async def aclose(self) -> None:
        await self.client.close()

    def _client(self, cfg: dict[str, Any]) -> AsyncOpenAI:
        key = (float(cfg["timeout_s"]), int(cfg["max_retries"]))
        if key not in self._variants:
            self._variants[key] = self.client.with_options(timeout=key[0], max_retries=key[1])
        return self._variants[key]

    @staticmethod
    def _common(cfg: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": cfg["model"]}
        params = cfg.get("prompt_params") or {}
        if params.get("max_tokens") is not None:
            kwargs["max_output_tokens"] = params["max_tokens"]
        if params.get("temperature") is not None:
            kwargs["temperature"] = params["temperature"]
        if params.get("top_p") is not None:
            kwargs["top_p"] = params["top_p"]
        if cfg.get("reasoning_effort"):
            kwargs["reasoning"] = {"effort": cfg["reasoning_effort"]}
        return kwargs

    async def _call(self, cfg: dict[str, Any], kwargs: dict[str, Any]) -> Any:
        try:
            return await self._client(cfg).responses.create(**kwargs)
        except openai.APIStatusError as exc:
            retriable = exc.status_code == 429 or exc.status_code >= 500 or exc.status_code == 408
            raise StrategyError(f"OpenAI HTTP {exc.status_code}: {redact(str(exc.message))[:300]}", retriable) from None
        except openai.APITimeoutError:
            raise StrategyError(f"OpenAI request timed out after {cfg['timeout_s']}s") from None
        except openai.APIConnectionError as exc:
            raise StrategyError(f"OpenAI connection error: {redact(str(exc))[:200]}") from None
        except openai.APIResponseValidationError as exc:
            raise StrategyError(f"OpenAI response could not be parsed: {redact(str(exc))[:200]}") from None
        except openai.OpenAIError as exc:  # e.g. a body that is not JSON at all
            raise StrategyError(f"OpenAI error: {type(exc).__name__}: {redact(str(exc))[:200]}") from None

    @staticmethod
    def _check(resp: Any) -> None:
        for item in getattr(resp, "output", None) or []:
            for part in getattr(item, "content", None) or []:
                if getattr(part, "type", "") == "refusal":
                    raise StrategyError(f"model refused: {str(getattr(part, 'refusal', ''))[:200]}", retriable=False)
        status = getattr(resp, "status", None)
        if status == "incomplete":
            details = getattr(resp, "incomplete_details", None)
            reason = getattr(details, "reason", None) or "unknown"
            raise StrategyError(f"model output truncated (incomplete: {reason})")
        if status == "failed":
            err = getattr(resp, "error", None)
            raise StrategyError(f"model response failed: {getattr(err, 'message', err)}")

    def _output(self, cfg: dict[str, Any], kwargs: dict[str, Any], resp: Any, payload: dict[str, Any]) -> StrategyOutput:
        usage = getattr(resp, "usage", None)
        tin = int(getattr(usage, "input_tokens", 0) or 0)
        tout = int(getattr(usage, "output_tokens", 0) or 0)
        try:
            dumped = resp.model_dump(mode="json", exclude_none=True)
        except Exception:  # a response we could not model fully is still worth dumping as text
            dumped = {"raw": str(resp)}
        return StrategyOutput(
            payload=payload, model=cfg["model"], tokens_in=tin, tokens_out=tout,
            cost_usd=cost(tin, tout, cfg.get("pricing") or {}), llm_calls=1, request=kwargs, response=dumped,
        )

    async def research(self, cfg: dict[str, Any], group: EventGroup) -> StrategyOutput:
        kwargs = self._common(cfg)
        kwargs["instructions"] = cfg.get("instructions") or RESEARCH_INSTRUCTIONS
        kwargs["input"] = research_prompt(group)
        if cfg.get("web_search", True):
            tool: dict[str, Any] = {"type": cfg.get("web_search_tool", "web_search")}
            if cfg.get("search_context_size"):
                tool["search_context_size"] = cfg["search_context_size"]
            kwargs["tools"] = [tool]
        resp = await self._call(cfg, kwargs)
        self._check(resp)
        text = getattr(resp, "output_text", "") or ""
        if not text.strip():
            raise StrategyError("research returned no text")
        sources = []
        for item in getattr(resp, "output", None) or []:
            for part in getattr(item, "content", None) or []:
                for ann in getattr(part, "annotations", None) or []:
                    url = getattr(ann, "url", None)
                    if url:
                        sources.append({"url": url, "title": getattr(ann, "title", None)})
        return self._output(cfg, kwargs, resp, {"text": text, "sources": sources})

    async def forecast(self, cfg: dict[str, Any], group: EventGroup, research: dict[str, dict[str, Any]]) -> StrategyOutput:
        kwargs = self._common(cfg)
        kwargs["instructions"] = cfg.get("instructions") or FORECAST_INSTRUCTIONS
        kwargs["input"] = forecast_prompt(group, research)
        kwargs["text"] = {"format": {"type": "json_schema", "name": "forecast", "schema": forecast_schema(group), "strict": True}}
        resp = await self._call(cfg, kwargs)
        self._check(resp)
        probs, rationale = parse_forecast_json(getattr(resp, "output_text", None), group)
        out = self._output(cfg, kwargs, resp, {"rationale": rationale})
        out.probabilities = probs
        return out
