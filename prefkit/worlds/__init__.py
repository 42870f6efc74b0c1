"""Offline toy worlds with oracles: prompts, demonstrations, a graded ``score(prompt, response)`` and raters;
shapes pictures (vision-language) and an item catalog with users (recommendation)."""

from .catalog import CatalogWorld
from .raters import RaterGroups
from .sentiment import SentimentWorld
from .shapes import ShapesWorld
from .strings import (
    LETTERS,
    OPS,
    VOCAB,
    JudgeStringWorld,
    StringWorld,
    apply_op,
    levenshtein,
    make_tokenizer,
    word_tokenizer,
)

__all__ = [
    "LETTERS",
    "OPS",
    "VOCAB",
    "JudgeStringWorld",
    "StringWorld",
    "apply_op",
    "levenshtein",
    "make_tokenizer",
    "word_tokenizer",
    "CatalogWorld",
    "RaterGroups",
    "SentimentWorld",
    "ShapesWorld",
]
