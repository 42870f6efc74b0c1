"""Offline toy worlds with oracles: prompts, demonstrations, a graded ``score(prompt, response)`` and raters."""

from .raters import RaterGroups
from .sentiment import SentimentWorld
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
    "RaterGroups",
    "SentimentWorld",
]
