"""Self-supervised preference degree: the auxiliary task of Self-supervised Preference Optimization (Li, Huang, Zhang,
Xu, Chen, Song, Shi, Wang, Xu 2024, EMNLP Findings, arXiv:2409.17791).

The key content of a response (its top RAKE keyphrases, :mod:`prefkit.rake`) is altered in different amounts, which
makes variants whose preference *degree* is known without any rater: degree 0 keeps the response, degree C - 1
alters all of its key content. A head on the policy's hidden states classifies the degree, and its cross-entropy is
added to the alignment loss with weight λ:

    L = L_align + λ L_degree,   L_degree = CE(head(h(x, ỹ)), d(ỹ))

Here key words are *replaced* by other words of the responses' vocabulary rather than deleted, so the variant's
length does not give its degree away (the paper removes them; see the notebook). The variants come from the
responses alone: RAKE never sees an oracle or a label.

Use: ``task = DegreeTask(DegreeHead(hidden, C), tokenizer, lam)``; rows from :func:`add_degree_variants`;
``StepBatches(rows, ..., extra=task.batch)`` and ``train(policy, task.objective(loss_fn), ...)``
(or ``prefkit.toy.run_arm(..., aux=task)``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .logps import encode
from .rake import ENGLISH_STOPWORDS, PUNCTUATION, candidate_phrases, key_spans

Tensor = torch.Tensor


@dataclass
class DegreeConfig:
    n_degrees: int = 4  # C degree classes: none, a third, two thirds, all of the key content altered (our choice)
    lam: float = 0.1  # λ, the weight of L_degree (our toy default; tune per model)
    key_fraction: float = 1 / 3  # key content = top RAKE phrases covering a third of the content words (RAKE's T)


def degree_variant(
    text: str,
    degree: int,
    n_degrees: int,
    rng: random.Random,
    vocabulary: Sequence[str],
    key_fraction: float = 1 / 3,
    stopwords: Collection[str] = ENGLISH_STOPWORDS,
    delimiters: Collection[str] = PUNCTUATION,
) -> str:
    """``text`` with round(degree / (C - 1) · |key words|) of its key words (a random subset) replaced by other words
    drawn from ``vocabulary``; everything else, spacing and punctuation included, is kept."""
    if not 0 <= degree < n_degrees:
        raise ValueError(f"degree must lie in [0, {n_degrees}), got {degree}")
    spans = key_spans(text, key_fraction, stopwords, delimiters)
    picked = sorted(rng.sample(spans, round(degree / (n_degrees - 1) * len(spans))))
    out, last = [], 0
    for s, e in picked:
        word = text[s:e].lower()
        others = [v for v in vocabulary if v != word]
        if not others:
            raise ValueError(f"the replacement vocabulary has no word other than {word!r}")
        out += [text[last:s], rng.choice(others)]
        last = e
    return "".join(out) + text[last:]


def response_vocabulary(
    rows: Sequence[dict],
    fields: Sequence[str] = ("chosen", "rejected"),
    stopwords: Collection[str] = ENGLISH_STOPWORDS,
    delimiters: Collection[str] = PUNCTUATION,
) -> list[str]:
    """The content words (lower-cased, sorted) of the responses in ``rows``: the words replacements are drawn from."""
    return sorted(
        {w for r in rows for f in fields for ph in candidate_phrases(r[f], stopwords, delimiters) for w, *_ in ph}
    )


def add_degree_variants(
    rows: Sequence[dict],
    config: DegreeConfig,
    seed: int = 0,
    vocabulary: Sequence[str] | None = None,
    fields: Sequence[str] = ("chosen", "rejected"),
    shuffle_labels: bool = False,
    no_content: str = "error",
    stopwords: Collection[str] = ENGLISH_STOPWORDS,
    delimiters: Collection[str] = PUNCTUATION,
) -> list[dict]:
    """Copies of preference ``rows`` with one variant of each response in ``fields`` at a uniformly drawn degree:
    ``degree_texts`` and ``degree_labels`` (lists aligned with ``fields``).

    ``shuffle_labels=True`` permutes the labels across the whole data set (the texts stay): the control that keeps the
    head, the extra forward and the label distribution but removes the information. A response with no content word
    to alter (an empty response, say) raises, naming the row and field; with ``no_content="skip"`` it gets no
    variant (sampled responses can be empty) and the row's ``degree_skipped`` lists its field.
    """
    if no_content not in ("error", "skip"):
        raise ValueError(f"no_content must be 'error' or 'skip', got {no_content!r}")
    rng = random.Random(f"degree-{seed}")
    vocab = list(vocabulary) if vocabulary is not None else response_vocabulary(rows, fields, stopwords, delimiters)
    out = []
    for i, r in enumerate(rows):
        texts, labels, skipped = [], [], []
        for f in fields:
            if not key_spans(r[f], config.key_fraction, stopwords, delimiters):
                if no_content == "skip":
                    skipped.append(f)
                    continue
                raise ValueError(f"row {i}, field {f!r}: no content word to alter in {r[f]!r}")
            d = rng.randrange(config.n_degrees)
            texts.append(
                degree_variant(r[f], d, config.n_degrees, rng, vocab, config.key_fraction, stopwords, delimiters)
            )
            labels.append(d)
        out.append({**r, "degree_texts": texts, "degree_labels": labels, "degree_skipped": skipped})
    if shuffle_labels:
        flat = [d for r in out for d in r["degree_labels"]]
        rng.shuffle(flat)
        it = iter(flat)
        out = [{**r, "degree_labels": [next(it) for _ in r["degree_labels"]]} for r in out]
    return out


class DegreeHead(torch.nn.Module):
    """Degree classifier on the policy's last hidden states, mean-pooled over the response tokens."""

    def __init__(self, hidden_size: int, n_degrees: int):
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, n_degrees)

    def forward(self, hidden: Tensor, mask: Tensor) -> Tensor:  # (N, T, H), (N, T) -> (N, C)
        m = mask.to(hidden.dtype)[..., None]  # (N, T, 1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)  # (N, H)
        return self.proj(pooled.to(self.proj.weight.dtype))


class DegreeTask:
    """The degree loss as an add-on to any preference objective: :meth:`batch` encodes the variants of the rows in a
    batch (for ``StepBatches(extra=...)``), :meth:`objective` adds λ · L_degree to a ``loss_fn(policy, batch)``."""

    def __init__(self, head: DegreeHead, tokenizer, lam: float):
        self.head, self.tok, self.lam = head, tokenizer, float(lam)

    def batch(self, rows: Sequence[dict]) -> dict[str, Tensor]:
        prompts = [r["prompt"] for r in rows for _ in r["degree_texts"]]
        b = encode(self.tok, prompts, [t for r in rows for t in r["degree_texts"]])
        return {
            "degree_input_ids": b["input_ids"],
            "degree_attention_mask": b["attention_mask"],
            "degree_response_mask": b["response_mask"],
            "degree_labels": torch.tensor([d for r in rows for d in r["degree_labels"]]),
        }

    def logits(self, policy, batch: dict[str, Tensor]) -> Tensor:
        """(N, C) degree logits of the batch's variants under ``policy``."""
        device = next(policy.parameters()).device
        hidden = policy.get_decoder()(
            input_ids=batch["degree_input_ids"].to(device),
            attention_mask=batch["degree_attention_mask"].to(device),
            use_cache=False,
        ).last_hidden_state  # (N, T, H)
        return self.head(hidden, batch["degree_response_mask"].to(device))

    @torch.no_grad()
    def accuracy(self, policy, rows: Sequence[dict], batch_size: int = 256) -> float:
        """Degree accuracy of the head on the variants of ``rows`` (from :func:`add_degree_variants`)."""
        right, total = 0, 0
        for s in range(0, len(rows), batch_size):
            batch = self.batch(rows[s : s + batch_size])
            pred = self.logits(policy, batch).argmax(-1).cpu()
            right += int((pred == batch["degree_labels"]).sum())
            total += len(pred)
        return right / max(1, total)

    def objective(self, loss_fn: Callable) -> Callable:
        """``loss_fn`` + λ · CE(degree logits, degree labels); the head's parameters train with the policy's."""

        def fn(policy, batch):
            loss, metrics = loss_fn(policy, batch)
            logits = self.logits(policy, batch)
            labels = batch["degree_labels"].to(logits.device)
            ce = F.cross_entropy(logits, labels)  # L_degree
            metrics.update(
                {"degree/loss": ce.item(), "degree/accuracy": (logits.argmax(-1) == labels).float().mean().item()}
            )
            return loss + self.lam * ce, metrics  # L = L_align + λ L_degree

        fn.modules = (self.head,)
        if hasattr(loss_fn, "initial_loss"):
            fn.initial_loss = loss_fn.initial_loss
        return fn
