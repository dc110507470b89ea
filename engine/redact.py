"""Secret redaction applied to every text that leaves the process (logs, dumps, summaries, UI).

Secrets are registered when settings load; on top of exact values, URL credentials and the usual
API-key shapes are masked so that a secret arriving by another route is still hidden.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_by_length: tuple[str, ...] = ()  # longest first (a secret containing another is masked whole)

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,})")
_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd|pwd)=([^\s&;]+)")


def register_secret(value: str | None) -> None:
    # Short values would mask ordinary words; a real secret is never this short.
    global _by_length
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)
            _by_length = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    if not text:
        return text
    for secret in _by_length:  # a tuple swapped whole on registration: safe to read without the lock
        if secret in text:
            text = text.replace(secret, MASK)
    # Each pattern runs only when its literal part is present: the console redacts every log line,
    # and most lines hold none of these (substring tests cost a fraction of a regex pass).
    if "://" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    if "sk-" in text or "AIza" in text:
        text = _KEY_SHAPES.sub(MASK, text)
    if "=" in text:
        text = _PASSWORD_PARAM.sub(lambda m: f"{m.group(1)}={MASK}", text)
    return text


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure (for dumps and summaries)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_obj(v) for v in value]
    return value
