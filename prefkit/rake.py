"""RAKE, Rapid Automatic Keyword Extraction (Rose, Engel, Cramer, Cowley 2010, "Automatic keyword extraction from
individual documents"): the key-content extractor that Self-supervised Preference Optimization (Li et al. 2024,
arXiv:2409.17791) uses to make response variants of known preference degree.

1. Split the text into words; stopwords and punctuation are phrase delimiters, so the *candidate keyphrases* are the
   maximal runs of content words.
2. Score each word by deg(w) / freq(w): freq(w) counts its occurrences, deg(w) sums the lengths of the candidate
   phrases it occurs in (its co-occurrences, itself included). Words that occur mostly inside long phrases score high.
3. A phrase scores the sum of its word scores; phrases are ranked by score.

Pure Python, no external data: the English stopword list below is short on purpose (function words only); pass your
own for another language or domain.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass

ENGLISH_STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be because been before being below between both but
    by can could did do does doing down during each few for from further had has have having he her here hers herself
    him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours out over own same she should so some such than that the their theirs them then there these they
    this those through to too under until up very was we were what when where which while who whom why will with would
    you your yours""".split()
)
PUNCTUATION = frozenset(".,;:!?()[]{}\"'`|-")  # tokens that end a phrase
_TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


@dataclass(frozen=True)
class Keyphrase:
    text: str  # the phrase as first written (lower-cased words joined by spaces)
    score: float  # sum of deg(w) / freq(w) over its words
    spans: tuple[tuple[int, int], ...]  # character spans of its words, every occurrence, in text order


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Words and punctuation marks with their character spans: ``"Hi, you"`` -> ``[("Hi", 0, 2), (",", 2, 3),
    ("you", 4, 7)]``."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def candidate_phrases(
    text: str, stopwords: Collection[str] = ENGLISH_STOPWORDS, delimiters: Collection[str] = PUNCTUATION
) -> list[list[tuple[str, int, int]]]:
    """Maximal runs of words that are neither stopwords nor delimiters (compared lower-cased), each a list of
    (word, start, end)."""
    phrases, run = [], []
    for tok in tokens(text):
        w = tok[0].lower()
        if w in stopwords or w in delimiters:
            if run:
                phrases.append(run)
            run = []
        else:
            run.append((w, tok[1], tok[2]))
    if run:
        phrases.append(run)
    return phrases


def rake(
    text: str, stopwords: Collection[str] = ENGLISH_STOPWORDS, delimiters: Collection[str] = PUNCTUATION
) -> list[Keyphrase]:
    """Candidate keyphrases of ``text`` ranked by RAKE score (highest first; ties keep text order). A phrase that
    occurs several times is one :class:`Keyphrase` whose ``spans`` cover every occurrence."""
    phrases = candidate_phrases(text, stopwords, delimiters)
    freq: dict[str, int] = defaultdict(int)
    deg: dict[str, int] = defaultdict(int)
    for ph in phrases:
        for w, _, _ in ph:
            freq[w] += 1
            deg[w] += len(ph)  # co-occurrences within the phrase, the word itself included
    word_score = {w: deg[w] / freq[w] for w in freq}
    merged: dict[str, list[tuple[int, int]]] = {}
    for ph in phrases:
        merged.setdefault(" ".join(w for w, _, _ in ph), []).extend((s, e) for _, s, e in ph)
    ranked = [Keyphrase(key, sum(word_score[w] for w in key.split()), tuple(spans)) for key, spans in merged.items()]
    return sorted(ranked, key=lambda k: -k.score)  # sorted() is stable: ties stay in text order


def key_spans(
    text: str,
    fraction: float = 1 / 3,
    stopwords: Collection[str] = ENGLISH_STOPWORDS,
    delimiters: Collection[str] = PUNCTUATION,
) -> list[tuple[int, int]]:
    """Character spans of the *key content*: the words of the top-ranked phrases, taken in rank order until they cover
    at least ``fraction`` of the text's content words (RAKE's paper keeps the top third of the words). Sorted by
    position; empty when the text has no content word."""
    n_words = sum(len(ph) for ph in candidate_phrases(text, stopwords, delimiters))
    spans: list[tuple[int, int]] = []
    for phrase in rake(text, stopwords, delimiters):
        if len(spans) >= fraction * n_words:
            break
        spans.extend(phrase.spans)
    return sorted(spans)
