"""Offline toy worlds with oracles: prompts, demonstrations, a graded ``score(prompt, response)`` and raters."""

from .strings import LETTERS, OPS, VOCAB, StringWorld, apply_op, levenshtein, make_tokenizer, word_tokenizer

__all__ = ["LETTERS", "OPS", "VOCAB", "StringWorld", "apply_op", "levenshtein", "make_tokenizer", "word_tokenizer"]
