"""Canonical market categories: one small, stable vocabulary over the many spellings sources use.

Gamma's `category` is free text ("US-current-affairs", "NBA", "Pop-Culture "), often empty on newer
markets (then the event's category or the first tag is used). Analytics group by the canonical name.
"""

from __future__ import annotations

import re

OTHER = "Other"

# lower-case, punctuation-free spelling -> canonical name
_SYNONYMS: dict[str, str] = {
    "politics": "Politics", "us politics": "Politics", "us current affairs": "Politics",
    "elections": "Politics", "election": "Politics", "us elections": "Politics", "global elections": "Politics",
    "geopolitics": "Geopolitics", "world": "Geopolitics", "global politics": "Geopolitics",
    "world affairs": "Geopolitics", "middle east": "Geopolitics", "ukraine": "Geopolitics",
    "sports": "Sports", "sport": "Sports", "nba": "Sports", "nfl": "Sports", "mlb": "Sports", "nhl": "Sports",
    "soccer": "Sports", "football": "Sports", "tennis": "Sports", "esports": "Sports", "chess": "Sports",
    "crypto": "Crypto", "cryptocurrency": "Crypto", "bitcoin": "Crypto", "ethereum": "Crypto", "solana": "Crypto",
    "defi": "Crypto", "nft": "Crypto", "nfts": "Crypto",
    "business": "Economy", "economics": "Economy", "economy": "Economy", "finance": "Economy",
    "stocks": "Economy", "fed": "Economy", "inflation": "Economy",
    "pop culture": "Culture", "culture": "Culture", "entertainment": "Culture", "movies": "Culture",
    "music": "Culture", "celebrities": "Culture", "awards": "Culture", "tv": "Culture",
    "science": "Science & Tech", "tech": "Science & Tech", "technology": "Science & Tech", "ai": "Science & Tech",
    "space": "Science & Tech", "coronavirus": "Science & Tech", "covid": "Science & Tech",
    "weather": "Weather", "climate": "Weather",
}

CANONICAL = sorted(set(_SYNONYMS.values()) | {OTHER})


def canonicalize_category(raw: str | None) -> str:
    """Map a source category to the canonical vocabulary; unknown names keep a tidy Title Case."""
    if raw is None:
        return OTHER
    key = re.sub(r"[^a-z0-9&]+", " ", raw.lower()).strip()
    if not key:
        return OTHER
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    if raw.strip() in CANONICAL:
        return raw.strip()
    return " ".join(w.capitalize() for w in key.split())[:64]
