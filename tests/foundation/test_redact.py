from __future__ import annotations

from engine.redact import redact, redact_obj, register_secret


def test_registered_values_and_known_shapes_are_masked() -> None:
    register_secret("tok-very-secret-value")
    text = (
        "key=tok-very-secret-value url=postgresql://user:hunter2@db:5432/x "
        "openai sk-abcdefghijklmnop gemini AIzaSyA1234567890abcdefghijklmnop password=letmein"
    )
    out = redact(text)
    for secret in ("tok-very-secret-value", "hunter2", "sk-abcdefghijklmnop", "AIzaSyA1234567890abcdefghijklmnop", "letmein"):
        assert secret not in out
    assert "postgresql://user:***@db:5432/x" in out


def test_nested_structures_are_redacted() -> None:
    register_secret("nested-secret-42")
    assert redact_obj({"a": ["x nested-secret-42 y", {"b": "nested-secret-42"}], "n": 3}) == {
        "a": ["x *** y", {"b": "***"}],
        "n": 3,
    }


def test_ordinary_text_is_untouched() -> None:
    assert redact("batch 12 of 457 written, 300 pairs") == "batch 12 of 457 written, 300 pairs"
