"""Offline toy worlds with oracles: prompts, demonstrations, a graded ``score(prompt, response)`` and raters;
shapes pictures (vision-language) and an item catalog with users (recommendation).

Each world is imported on first use (``from prefkit.worlds import StringWorld`` loads only ``strings.py``), so a
notebook's record of the modules it used, and with it ``make reproduce``'s run key, names only the worlds it ran.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE = {
    "LETTERS": "strings",
    "OPS": "strings",
    "VOCAB": "strings",
    "JudgeStringWorld": "strings",
    "StringWorld": "strings",
    "apply_op": "strings",
    "levenshtein": "strings",
    "make_tokenizer": "strings",
    "word_tokenizer": "strings",
    "CatalogWorld": "catalog",
    "RaterGroups": "raters",
    "SentimentWorld": "sentiment",
    "ShapesWorld": "shapes",
}
__all__ = list(_MODULE)


def __getattr__(name: str) -> Any:
    if name not in _MODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE])
