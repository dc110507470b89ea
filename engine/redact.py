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

# `scheme://user:` — the password runs from here to the LAST `@` (see _mask_url_passwords).
_URL_USER = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):")
_PORT_NOT_PASSWORD = re.compile(r"\d{1,5}(?:[/?#]\S*)?")  # host:8000/path: a port, when no @ follows in the token
_URL_DELIMITERS = re.compile(r"[/?#@:\s]+")
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_-]{8,}|AIza[0-9A-Za-z_-]{20,})")
_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd|pwd)=([^\s&;]+)")


def register_secret(value: str | None) -> None:
    # Short values would mask ordinary words; a real secret is never this short.
    global _by_length
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)
            _by_length = tuple(sorted(_secrets, key=len, reverse=True))


def url_password(url: str) -> str | None:
    """The password a raw URL holds: everything between `scheme://user:` and the last `@`.

    Not urlsplit's reading: an unencoded `/ ? # @` or space in a password makes urlsplit (and
    libpq) cut it short, and the rest would then be shown as host, path or query."""
    url = url.strip()
    m = _URL_USER.match(url)
    if m is None:
        return None
    rest = url[m.end():]
    at = rest.rfind("@")
    return rest[:at] if at > 0 else None


def url_secrets(url: str) -> list[str]:
    """What to register for a DSN: the raw password, its percent-decoded form, and the pieces a
    parser may print on their own when it splits an unencoded password at a delimiter."""
    from urllib.parse import unquote

    password = url_password(url)
    if not password:
        return []
    out = [password, unquote(password)]
    out += [part for part in _URL_DELIMITERS.split(password) if part]
    out += [part for part in re.split(r"[/?#@:]+", password) if part]  # pieces keeping their spaces
    return list(dict.fromkeys(out))


def _mask_url_passwords(text: str) -> str:
    """Mask `scheme://user:<password>@` where the password ends at the last `@` on its line (before
    any next URL): an unencoded password may hold `/ ? # @ :` and spaces. Over-masking a line
    beats printing a password; `host:port/path` is left alone."""
    out: list[str] = []
    pos = 0
    while (m := _URL_USER.search(text, pos)) is not None:
        start = m.end()
        line_end = text.find("\n", start)
        line_end = len(text) if line_end < 0 else line_end
        nxt = _URL_USER.search(text, start, line_end)
        limit = nxt.start() if nxt is not None else line_end
        at = text.rfind("@", start, limit)
        token = text[start:limit].split(maxsplit=1)[0] if text[start:limit].strip() else ""
        if at <= start or ("@" not in token and _PORT_NOT_PASSWORD.fullmatch(token)):
            out.append(text[pos:start])
            pos = start
            continue
        out.append(f"{text[pos:m.start()]}{m['scheme']}{m['user']}:{MASK}")
        pos = at
    out.append(text[pos:])
    return "".join(out)


def redact(text: str) -> str:
    if not text:
        return text
    for secret in _by_length:  # a tuple swapped whole on registration: safe to read without the lock
        if secret in text:
            text = text.replace(secret, MASK)
    # Each pattern runs only when its literal part is present: the console redacts every log line,
    # and most lines hold none of these (substring tests cost a fraction of a regex pass).
    if "://" in text:
        text = _mask_url_passwords(text)
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
