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

``DegreeHead(paired=True)`` (our choice, not the paper's) also shows the head the response the variant was made
from: it classifies the difference of the two pooled states, δ = h̄(x, ỹ) - h̄(x, y), through the features
[δ, |δ|]. A variant alone leaves the degree unknowable whenever the original was itself imperfect (how many of a
sampled answer's letters were replaced cannot be read off an answer that was wrong to begin with); given the pair,
degree 0 is δ = 0 exactly, and more replaced words give a larger |δ|. The original's forward runs without
gradient (it is the anchor the variant is measured from), so the degree loss reaches the policy through the
variant, as with the unpaired head.

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
    ``degree_texts``, ``degree_labels`` and ``degree_sources`` (the field each variant was made from), aligned lists.

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
        sources = [f for f in fields if f not in skipped]  # the field each variant was made from, aligned with texts
        out.append({**r, "degree_texts": texts, "degree_labels": labels, "degree_skipped": skipped,
                    "degree_sources": sources})  # fmt: skip
    if shuffle_labels:
        flat = [d for r in out for d in r["degree_labels"]]
        rng.shuffle(flat)
        it = iter(flat)
        out = [{**r, "degree_labels": [next(it) for _ in r["degree_labels"]]} for r in out]
    return out


class DegreeHead(torch.nn.Module):
    """Degree classifier on the policy's last hidden states, mean-pooled over the response tokens.

    ``paired=False``: logits = W h̄(x, ỹ) from the variant alone. ``paired=True``: logits = W [δ, |δ|] with
    δ = h̄(x, ỹ) - h̄(x, y), the variant against the response it was made from (see the module docstring).
    The weights start at zero, so L_degree starts at exactly ln C whatever the states. ``scale`` multiplies the
    logits: under Adam every parameter moves by about the learning rate per step whatever its gradient, so a head
    trained at the policy's small learning rate (1e-4 for full fine-tuning) learns ``scale`` times faster, as if it
    had its own learning rate ``scale`` times the policy's.
    """

    def __init__(self, hidden_size: int, n_degrees: int, paired: bool = False, scale: float = 1.0):
        super().__init__()
        if n_degrees < 2:
            raise ValueError(f"need at least 2 degree classes, got {n_degrees}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.paired, self.scale = paired, float(scale)
        self.proj = torch.nn.Linear(2 * hidden_size if paired else hidden_size, n_degrees)
        torch.nn.init.zeros_(self.proj.weight)
        torch.nn.init.zeros_(self.proj.bias)

    @staticmethod
    def pool(hidden: Tensor, mask: Tensor) -> Tensor:  # (N, T, H), (N, T) -> (N, H)
        m = mask.to(hidden.dtype)[..., None]  # (N, T, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1)

    def forward(
        self,
        hidden: Tensor,  # (N, T, H) the variants'
        mask: Tensor,  # (N, T) 1 on the variants' response tokens
        source_hidden: Tensor | None = None,  # (N, T', H) the originals' (paired head only)
        source_mask: Tensor | None = None,  # (N, T')
    ) -> Tensor:  # (N, C)
        pooled = self.pool(hidden, mask)  # (N, H) h̄(x, ỹ)
        if self.paired:
            if source_hidden is None or source_mask is None:
                raise ValueError("a paired DegreeHead needs the originals' hidden states and mask")
            delta = pooled - self.pool(source_hidden, source_mask)  # (N, H) δ = h̄(x, ỹ) - h̄(x, y)
            pooled = torch.cat([delta, delta.abs()], dim=-1)  # (N, 2H)
        elif source_hidden is not None:
            raise ValueError("this DegreeHead is not paired: it takes the variants only")
        return self.scale * self.proj(pooled.to(self.proj.weight.dtype))


class DegreeTask:
    """The degree loss as an add-on to any preference objective: :meth:`batch` encodes the variants of the rows in a
    batch (for ``StepBatches(extra=...)``), :meth:`objective` adds λ · L_degree to a ``loss_fn(policy, batch)``."""

    def __init__(self, head: DegreeHead, tokenizer, lam: float):
        self.head, self.tok, self.lam = head, tokenizer, float(lam)

    def batch(self, rows: Sequence[dict]) -> dict[str, Tensor]:
        prompts = [r["prompt"] for r in rows for _ in r["degree_texts"]]
        b = encode(self.tok, prompts, [t for r in rows for t in r["degree_texts"]])
        out = {
            "degree_input_ids": b["input_ids"],
            "degree_attention_mask": b["attention_mask"],
            "degree_response_mask": b["response_mask"],
            "degree_labels": torch.tensor([d for r in rows for d in r["degree_labels"]], dtype=torch.long),
        }
        if self.head.paired:  # the response each variant was made from, in the same order
            missing = [i for i, r in enumerate(rows) if "degree_sources" not in r]
            if missing:
                raise ValueError(f"row {missing[0]} has no degree_sources: build the rows with add_degree_variants")
            src = encode(self.tok, prompts, [r[f] for r in rows for f in r["degree_sources"]])
            out.update(degree_source_input_ids=src["input_ids"], degree_source_attention_mask=src["attention_mask"],
                       degree_source_response_mask=src["response_mask"])  # fmt: skip
        return out

    def _hidden(self, policy, batch: dict[str, Tensor], prefix: str) -> tuple[Tensor, Tensor]:
        device = next(policy.parameters()).device
        hidden = policy.get_decoder()(
            input_ids=batch[f"{prefix}input_ids"].to(device),
            attention_mask=batch[f"{prefix}attention_mask"].to(device),
            use_cache=False,
        ).last_hidden_state  # (N, T, H)
        return hidden, batch[f"{prefix}response_mask"].to(device)

    def logits(self, policy, batch: dict[str, Tensor]) -> Tensor:
        """(N, C) degree logits of the batch's variants under ``policy``. A paired head's originals are a fixed
        anchor: their forward runs without gradient (a third of the cost of one with it), so the degree loss
        trains the policy through the variants only, as the unpaired head does."""
        hidden, mask = self._hidden(policy, batch, "degree_")
        if not self.head.paired:
            return self.head(hidden, mask)
        with torch.no_grad():
            src_hidden, src_mask = self._hidden(policy, batch, "degree_source_")
        return self.head(hidden, mask, src_hidden, src_mask)

    @torch.no_grad()
    def correct(self, policy, rows: Sequence[dict], batch_size: int = 256) -> list[float]:
        """1.0 or 0.0 per variant of ``rows`` (from :func:`add_degree_variants`), in order: did the head name its
        degree? The units of a held-out degree-accuracy measurement."""
        out: list[float] = []
        for s in range(0, len(rows), batch_size):
            batch = self.batch(rows[s : s + batch_size])
            pred = self.logits(policy, batch).argmax(-1).cpu()
            out += (pred == batch["degree_labels"]).float().tolist()
        return out

    def accuracy(self, policy, rows: Sequence[dict], batch_size: int = 256) -> float:
        """Degree accuracy of the head on the variants of ``rows`` (from :func:`add_degree_variants`)."""
        right = self.correct(policy, rows, batch_size)
        return sum(right) / max(1, len(right))

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
