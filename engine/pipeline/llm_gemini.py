"""Gemini suite strategies through the official google-genai SDK.

Research: `generate_content` with the Google Search grounding tool. Forecast: `generate_content` with
`response_mime_type=application/json` and a JSON schema (Gemini does not combine search grounding
with a response schema, hence two calls). GEMINI_BASE_URL reaches another endpoint via
`http_options.base_url`.
"""

from __future__ import annotations

from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

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

_REFUSALS = {"SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"}


class GeminiProvider:
    def __init__(self, api_key: str, base_url: str | None) -> None:
        self.api_key = api_key
        self.base_url = base_url
        self._clients: dict[tuple[float, int], genai.Client] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            try:
                await client.aio.aclose()
            except Exception:  # closing is best effort; the process is ending this run anyway
                pass
        self._clients.clear()

    def _client(self, cfg: dict[str, Any]) -> genai.Client:
        key = (float(cfg["timeout_s"]), int(cfg["max_retries"]))
        if key not in self._clients:
            options: dict[str, Any] = {
                "timeout": int(key[0] * 1000),
                "retry_options": types.HttpRetryOptions(attempts=key[1] + 1, initial_delay=0.5, max_delay=10.0),
            }
            if self.base_url:
                options["base_url"] = self.base_url
            self._clients[key] = genai.Client(api_key=self.api_key, http_options=types.HttpOptions(**options))
        return self._clients[key]

    @staticmethod
    def _gen_config(cfg: dict[str, Any], instructions: str) -> dict[str, Any]:
        out: dict[str, Any] = {"system_instruction": cfg.get("instructions") or instructions}
        params = cfg.get("prompt_params") or {}
        if params.get("max_tokens") is not None:
            out["max_output_tokens"] = params["max_tokens"]
        if params.get("temperature") is not None:
            out["temperature"] = params["temperature"]
        if params.get("top_p") is not None:
            out["top_p"] = params["top_p"]
        return out

    async def _call(self, cfg: dict[str, Any], prompt: str, config: dict[str, Any]) -> Any:
        try:
            return await self._client(cfg).aio.models.generate_content(
                model=cfg["model"], contents=prompt, config=types.GenerateContentConfig(**config)
            )
        except genai_errors.APIError as exc:
            code = int(getattr(exc, "code", 0) or 0)
            retriable = code in (408, 429) or code >= 500 or code == 0
            raise StrategyError(f"Gemini HTTP {code}: {redact(str(getattr(exc, 'message', exc)))[:300]}", retriable) from None
        except Exception as exc:  # transport errors and unparsable bodies surface as many types
            raise StrategyError(f"Gemini error: {type(exc).__name__}: {redact(str(exc))[:200]}") from None

    @staticmethod
    def _check(resp: Any) -> Any:
        feedback = getattr(resp, "prompt_feedback", None)
        if feedback is not None and getattr(feedback, "block_reason", None):
            raise StrategyError(f"model refused: prompt blocked ({feedback.block_reason})", retriable=False)
        candidates = getattr(resp, "candidates", None) or []
        if not candidates:
            raise StrategyError("model returned no candidates")
        cand = candidates[0]
        reason = str(getattr(cand, "finish_reason", "") or "").split(".")[-1]
        if reason in _REFUSALS:
            raise StrategyError(f"model refused (finish_reason {reason})", retriable=False)
        if reason == "MAX_TOKENS":
            raise StrategyError("model output truncated (finish_reason MAX_TOKENS)")
        return cand

    @staticmethod
    def _text(resp: Any) -> str:
        parts = []
        for cand in (getattr(resp, "candidates", None) or [])[:1]:
            content = getattr(cand, "content", None)
            for part in getattr(content, "parts", None) or []:
                if getattr(part, "text", None) and not getattr(part, "thought", False):
                    parts.append(part.text)
        return "".join(parts)

    def _output(self, cfg: dict[str, Any], request: dict[str, Any], resp: Any, payload: dict[str, Any]) -> StrategyOutput:
        usage = getattr(resp, "usage_metadata", None)
        tin = int(getattr(usage, "prompt_token_count", 0) or 0)
        tout = int(getattr(usage, "candidates_token_count", 0) or 0) + int(getattr(usage, "thoughts_token_count", 0) or 0)
        try:
            dumped = resp.model_dump(mode="json", exclude_none=True)
        except Exception:
            dumped = {"raw": str(resp)}
        return StrategyOutput(payload=payload, model=cfg["model"], tokens_in=tin, tokens_out=tout,
                              cost_usd=cost(tin, tout, cfg.get("pricing") or {}), llm_calls=1,
                              request=request, response=dumped)

    async def research(self, cfg: dict[str, Any], group: EventGroup) -> StrategyOutput:
        config = self._gen_config(cfg, RESEARCH_INSTRUCTIONS)
        if cfg.get("google_search", True):
            config["tools"] = [types.Tool(google_search=types.GoogleSearch())]
        prompt = research_prompt(group)
        request = {"model": cfg["model"], "contents": prompt,
                   "config": {k: v for k, v in config.items() if k != "tools"},
                   "tools": ["google_search"] if "tools" in config else []}
        resp = await self._call(cfg, prompt, config)
        cand = self._check(resp)
        text = self._text(resp)
        if not text.strip():
            raise StrategyError("research returned no text")
        sources = []
        grounding = getattr(cand, "grounding_metadata", None)
        for chunk in getattr(grounding, "grounding_chunks", None) or []:
            web = getattr(chunk, "web", None)
            if web is not None and getattr(web, "uri", None):
                sources.append({"url": web.uri, "title": getattr(web, "title", None)})
        return self._output(cfg, request, resp, {"text": text, "sources": sources})

    async def forecast(self, cfg: dict[str, Any], group: EventGroup, research: dict[str, dict[str, Any]]) -> StrategyOutput:
        config = self._gen_config(cfg, FORECAST_INSTRUCTIONS)
        config["response_mime_type"] = "application/json"
        config["response_json_schema"] = forecast_schema(group)
        prompt = forecast_prompt(group, research)
        request = {"model": cfg["model"], "contents": prompt, "config": config}
        resp = await self._call(cfg, prompt, config)
        self._check(resp)
        probs, rationale = parse_forecast_json(self._text(resp), group)
        out = self._output(cfg, request, resp, {"rationale": rationale})
        out.probabilities = probs
        return out
