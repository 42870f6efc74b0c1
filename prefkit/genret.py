"""Generative retrieval conditioned on stated preferences: TIGER and Mender at toy scale.

TIGER (Rajput et al. 2023, arXiv:2305.05065) names every item by its semantic ID (:mod:`prefkit.rqvae`) and trains a
sequence-to-sequence transformer to *generate* the next item's ID from the IDs of the items in a user's history.
Mender (Paischer et al. 2024, "Preference Discerning with LLM-Enhanced Generative Retrieval", arXiv:2412.08604)
conditions the same generator on the user's preferences written in natural language:

- **Mender-Emb**: a frozen sentence encoder embeds each preference and each history item's text; the encoder of the
  generator reads these vectors (one token each, through a linear map);
- **Mender-Tok**: the preference texts and the history items' titles are tokenised and read by the generator itself.
  The paper fine-tunes a pretrained language model on the full token sequence. Here, at toy scale, word embeddings
  are learned from scratch and averaged per text (one encoder token per preference or history item, like
  Mender-Emb), which keeps its cost equal to Mender-Emb's; the contrast left is a frozen pretrained sentence encoder
  against text features learned from the task alone.

The decoder generates the target's ID token by token: p(ID) = Π_m p(c_m | c_<m, encoder input) (Eq. 1, this
module's numbering), trained with cross-entropy on the target's ID. The papers decode with beam search restricted to
valid IDs. With a catalog of a few hundred items, :func:`score_catalog` instead computes log p(ID) of *every* item
exactly (teacher forcing over the whole catalog) and ranks them: the top-k is then exact instead of a beam's
approximation. Items share ID prefixes, so it runs the decoder once per distinct prefix (:class:`IdTrie`, with a
key/value cache along each prefix) rather than once per item and position. Metrics: Recall@k and NDCG@k of the
target (:func:`retrieval_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
MODES = ("tiger", "emb", "tok")


@dataclass
class RetrieverConfig:
    d_model: int = 128  # ours (toy): TIGER uses 128-wide embeddings in a T5-style model
    n_heads: int = 4  # ours (toy)
    enc_layers: int = 2  # ours (toy): TIGER 4 + 4 layers
    dec_layers: int = 2
    ff: int = 256  # feed-forward width (ours)
    dropout: float = 0.1  # TIGER: 0.1
    max_len: int = 256  # longest encoder input (tokens)


def id_offsets(item_ids: Tensor) -> tuple[Tensor, int]:
    """Level-specific token ids: code c at position m is token offsets[m] + c. Returns ``(offsets (M,), n_tokens)``."""
    sizes = [int(item_ids[:, m].max()) + 1 for m in range(item_ids.shape[1])]
    return torch.tensor([0, *np.cumsum(sizes)[:-1]]).long(), int(sum(sizes))


class GenerativeRetriever(nn.Module):
    """Encoder-decoder transformer that generates semantic IDs.

    ``item_ids`` (N_items, M) long: every item's semantic ID (M = levels + the collision digit), code m of item i in
    ``[0, sizes[m])``. Decoder tokens are level-specific: token = offsets[m] + code, plus a start token. The encoder
    reads, depending on ``mode``: ``"tiger"`` the history items' ID tokens (the same level-specific embeddings),
    ``"emb"`` projected text vectors (preferences and history items, width ``text_dim``), ``"tok"`` word tokens from
    a vocabulary of ``vocab_size``. A segment embedding tells preferences (1) from history (0).
    """

    def __init__(self, item_ids: Tensor, mode: str, config: RetrieverConfig | None = None, text_dim: int = 0,
                 vocab_size: int = 0):  # fmt: skip
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        c = self.config = config or RetrieverConfig()
        self.mode = mode
        self.register_buffer("item_ids", item_ids.long(), persistent=False)  # (N, M)
        offsets, self.bos = id_offsets(item_ids)
        self.M = item_ids.shape[1]
        self.register_buffer("offsets", offsets, persistent=False)
        self.code_emb = nn.Embedding(self.bos + 1, c.d_model)  # ID tokens (decoder, and TIGER's encoder) + start
        if mode == "emb":
            if text_dim <= 0:
                raise ValueError("mode 'emb' needs text_dim, the width of the text vectors")
            self.text_proj = nn.Linear(text_dim, c.d_model)
        if mode == "tok":
            if vocab_size <= 0:
                raise ValueError("mode 'tok' needs vocab_size")
            self.word_emb = nn.Embedding(vocab_size, c.d_model, padding_idx=0)
        self.segment = nn.Embedding(2, c.d_model)
        self.enc_pos = nn.Embedding(c.max_len, c.d_model)
        self.dec_pos = nn.Embedding(self.M, c.d_model)
        enc_layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.ff, c.dropout, batch_first=True, norm_first=True)
        dec_layer = nn.TransformerDecoderLayer(c.d_model, c.n_heads, c.ff, c.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(
            enc_layer, c.enc_layers, nn.LayerNorm(c.d_model), enable_nested_tensor=False
        )
        self.decoder = nn.TransformerDecoder(dec_layer, c.dec_layers, nn.LayerNorm(c.d_model))
        self.head = nn.Linear(c.d_model, self.bos)

    def tokens(self, items: Tensor) -> Tensor:
        """(..., ) item indices -> (..., M) level-specific ID tokens."""
        return self.item_ids[items] + self.offsets

    def id_trie(self) -> IdTrie:
        """The catalog's ID tokens as a prefix tree, for :func:`score_catalog`."""
        return IdTrie.build(self.tokens(torch.arange(len(self.item_ids), device=self.item_ids.device)), self.bos)

    def encode(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Encoder memory (B, S, d) and its padding mask (B, S), True on padding."""
        if self.mode == "emb":
            x = self.text_proj(batch["vectors"])  # (B, S, d)
        elif self.mode == "tok":  # (B, S, W) words per text -> the mean of their embeddings, one token per text
            words = batch["words"]
            present = (words > 0).unsqueeze(-1).float()
            x = (self.word_emb(words) * present).sum(2) / present.sum(2).clamp(min=1.0)
        else:
            x = self.code_emb(batch["codes"])
        S = x.shape[1]
        if S > self.config.max_len:
            raise ValueError(f"encoder input of {S} tokens is longer than max_len={self.config.max_len}")
        x = x + self.segment(batch["segments"]) + self.enc_pos(torch.arange(S, device=x.device))
        pad = ~batch["mask"].bool()
        return self.encoder(x, src_key_padding_mask=pad), pad

    def decoder_inputs(self, targets: Tensor) -> Tensor:
        """(B, M, d) teacher-forced decoder inputs for ID tokens ``targets`` (B, M): start token, then c_<M."""
        start = torch.full((targets.shape[0], 1), self.bos, dtype=torch.long, device=targets.device)
        return self.code_emb(torch.cat([start, targets[:, :-1]], 1)) + self.dec_pos.weight[None]

    def id_logits(self, memory: Tensor, pad: Tensor, targets: Tensor) -> Tensor:
        """(B, M, V) next-token logits for target ID tokens ``targets`` (B, M) under teacher forcing."""
        y = self.decoder_inputs(targets)
        causal = nn.Transformer.generate_square_subsequent_mask(self.M, device=y.device)
        h = self.decoder(y, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=pad)
        return self.head(h)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Per-row negative log-likelihood of the target's ID (B,): −Σ_m log p(c_m | c_<m, x) (Eq. 1)."""
        memory, pad = self.encode(batch)
        targets = self.tokens(batch["target"])  # (B, M)
        logp = torch.log_softmax(self.id_logits(memory, pad, targets).float(), -1)
        return -logp.gather(-1, targets[..., None])[..., 0].sum(-1)


def objective():
    """``loss_fn(model, batch)`` for :func:`prefkit.train.train`: mean NLL of the target IDs."""

    def loss_fn(model, batch):
        nll = model(batch).mean()
        return nll, {"loss": nll.item()}

    return loss_fn


@dataclass(frozen=True, eq=False)
class IdTrie:
    """The catalog's ID token sequences as a prefix tree.

    Level m holds the n_m distinct prefixes c_<m of the catalog's IDs (level 0: the empty prefix, one node). Decoder
    position m reads the prefix c_<m and predicts c_m, so it needs to run once per level-m node: scoring the whole
    catalog costs Σ_m n_m decoder positions instead of N·M (TIGER-style IDs of 400 items in 3 levels of 16 codes +
    a collision digit: at most 1 + 16 + 256 + 400 instead of 1600). Leaves (whole IDs) are never decoded.
    """

    tokens: Tensor  # (N, M) every item's ID tokens
    node: Tensor  # (M, N) the level-m node of item i, i.e. of its prefix c_<m
    parent: tuple[Tensor, ...]  # parent[m] (n_m,): the level-(m-1) node that node m extends; parent[0] is empty
    inputs: tuple[Tensor, ...]  # inputs[m] (n_m,): node m's decoder input: the start token at m = 0, else c_{m-1}

    @classmethod
    def build(cls, tokens: Tensor, bos: int) -> IdTrie:
        """The trie of ID tokens ``tokens`` (N, M); ``bos`` is the decoder's start token."""
        N, M = tokens.shape
        node = tokens.new_zeros(M, N)  # (M, N)
        parent, inputs = [tokens.new_zeros(0)], [tokens.new_full((1,), bos)]
        for m in range(1, M):
            node[m] = torch.unique(tokens[:, :m], dim=0, return_inverse=True)[1]  # (N,) ids of the prefixes c_<m
            n = int(node[m].max()) + 1
            parent.append(tokens.new_zeros(n).scatter_(0, node[m], node[m - 1]))  # (n_m,)
            inputs.append(tokens.new_zeros(n).scatter_(0, node[m], tokens[:, m - 1]))  # (n_m,)
        return cls(tokens, node, tuple(parent), tuple(inputs))

    @property
    def sizes(self) -> list[int]:
        """n_m, the nodes (decoder positions) per level m."""
        return [len(x) for x in self.inputs]

    def gather(self, level_logps: Sequence[Tensor]) -> Tensor:
        """(b, N, M) log p(c_m | c_<m) of every item's tokens, from the per-node next-token log-probs
        ``level_logps[m]`` (b, n_m, V)."""
        return torch.stack([lp[:, self.node[m], self.tokens[:, m]] for m, lp in enumerate(level_logps)], -1)


def _full_token_logps(model: GenerativeRetriever, trie: IdTrie, memory: Tensor, pad: Tensor) -> Tensor:
    """(b, N, M) log p(c_m | c_<m, row) of every item, the reference way: the decoder on each item's whole ID
    (b·N sequences of M positions), without repeating the memory (b, S, d) N times. Self-attention runs per item,
    cross-attention per row over all N·M item positions at once (its queries do not interact, so this is the same
    computation as ``model.decoder`` on the repeated memory)."""
    b, S, d = memory.shape
    tokens = trie.tokens  # (N, M)
    N, M = tokens.shape
    y = model.decoder_inputs(tokens).repeat(b, 1, 1)  # (b·N, M, d)
    causal = nn.Transformer.generate_square_subsequent_mask(M, device=y.device)
    for layer in model.decoder.layers:  # norm_first layers (GenerativeRetriever builds them so)
        y = y + layer._sa_block(layer.norm1(y), causal, None, is_causal=True)
        cross = layer._mha_block(layer.norm2(y).reshape(b, N * M, d), memory, None, pad)
        y = y + cross.reshape(b * N, M, d)
        y = y + layer._ff_block(layer.norm3(y))
    logp = torch.log_softmax(model.head(model.decoder.norm(y)).float(), -1)  # (b·N, M, V)
    return logp.gather(-1, tokens.repeat(b, 1)[..., None])[..., 0].view(b, N, M)


def _trie_token_logps(model: GenerativeRetriever, trie: IdTrie, memory: Tensor, pad: Tensor) -> Tensor:
    """(b, N, M) log p(c_m | c_<m, row) of every item, running the decoder once per trie node and level by level.

    Each node keeps, per layer, the self-attention keys and values of its whole path (its parent's, then its own):
    the next level's nodes read their parent's instead of recomputing the prefix. Cross-attention keys and values of
    the row's memory (b, S, d) are projected once per layer. This is ``model.decoder`` (pre-norm
    ``nn.TransformerDecoderLayer``s in eval mode, so dropout is the identity) written out position by position."""
    b, S, d = memory.shape
    layers = model.decoder.layers
    H = layers[0].self_attn.num_heads
    keep = ~pad[:, None, None, :]  # (b, 1, 1, S): the memory positions cross-attention may read
    cross_kv = []  # per layer: keys and values of the memory, (b, H, S, d/H) each
    for layer in layers:
        if not layer.norm_first:
            raise ValueError("the trie scorer implements pre-norm decoder layers (norm_first=True) only")
        ca = layer.multihead_attn
        kv = F.linear(memory, ca.in_proj_weight[d:], ca.in_proj_bias[d:])  # (b, S, 2d)
        cross_kv.append(kv.unflatten(-1, (2, H, -1)).permute(2, 0, 3, 1, 4).unbind(0))
    path_kv: list = [None] * len(layers)  # per layer: keys and values of the previous level's paths
    level_logps = []
    for m, (parent, inputs) in enumerate(zip(trie.parent, trie.inputs)):
        n = len(inputs)
        # (1, n, d), as decoder_inputs. Until the first cross-attention a node's state is the same for every row,
        # so the first layer's self-attention (and its keys and values) runs once for all rows.
        x = (model.code_emb(inputs) + model.dec_pos.weight[m])[None]
        for i, layer in enumerate(layers):
            sa, ca = layer.self_attn, layer.multihead_attn
            qkv = F.linear(layer.norm1(x), sa.in_proj_weight, sa.in_proj_bias)  # (1 or b, n, 3d)
            q, k, v = qkv.unflatten(-1, (3, H, 1, -1)).unbind(2)  # (1 or b, n, H, 1, d/H) each
            if m:  # the path's keys and values: the parent's path, then this node's own
                k = torch.cat([path_kv[i][0][:, parent], k], -2)  # (1 or b, n, H, m + 1, d/H)
                v = torch.cat([path_kv[i][1][:, parent], v], -2)
            path_kv[i] = k, v
            a = F.scaled_dot_product_attention(q, k, v)  # (1 or b, n, H, 1, d/H); a node's path is its causal context
            x = (x + layer.dropout1(sa.out_proj(a.flatten(-3)))).expand(b, n, d)  # (b, n, d)
            q = F.linear(layer.norm2(x), ca.in_proj_weight[:d], ca.in_proj_bias[:d])  # (b, n, d)
            a = F.scaled_dot_product_attention(q.unflatten(-1, (H, -1)).transpose(1, 2), *cross_kv[i], keep)
            x = x + layer.dropout2(ca.out_proj(a.transpose(1, 2).flatten(-2)))  # (b, H, n, d/H) -> (b, n, d)
            x = x + layer._ff_block(layer.norm3(x))
        level_logps.append(torch.log_softmax(model.head(model.decoder.norm(x)).float(), -1))  # (b, n, V)
    return trie.gather(level_logps)


CATALOG_SCORERS = {"full": _full_token_logps, "trie": _trie_token_logps}  # the same numbers, computed two ways


@torch.no_grad()
def score_catalog(model: GenerativeRetriever, batch: dict[str, Tensor], chunk: int = 8192, method: str = "trie",
                  trie: IdTrie | None = None) -> Tensor:  # fmt: skip
    """(B, N_items) log p(ID of item i | row) = Σ_m log p(c_m | c_<m, row) (Eq. 1) for every item of the catalog
    (exact, instead of beam search).

    ``method``: ``"trie"`` runs the decoder once per distinct ID prefix (:class:`IdTrie`, ``trie`` if given, else
    ``model.id_trie()``); ``"full"`` once per item and ID position, the reference. ``chunk // N_items`` rows go
    through the decoder per call."""
    if method not in CATALOG_SCORERS:
        raise ValueError(f"method must be one of {tuple(CATALOG_SCORERS)}, got {method!r}")
    was_training = model.training
    model.eval()
    trie = trie if trie is not None else model.id_trie()
    memory, pad = model.encode(batch)  # (B, S, d), (B, S)
    B, N = memory.shape[0], len(trie.tokens)
    out = torch.empty(B, N)
    per = max(1, chunk // N)  # rows per decoder call
    for s in range(0, B, per):
        logp = CATALOG_SCORERS[method](model, trie, memory[s : s + per], pad[s : s + per])  # (b, N, M)
        out[s : s + len(logp)] = logp.sum(-1).cpu()  # Eq. 1
    model.train(was_training)
    return out


def ranks(scores: Tensor, targets: Sequence[int]) -> np.ndarray:
    """(B,) 1-based rank of each row's target among the items (ties counted pessimistically)."""
    s = scores.numpy()
    t = np.asarray(targets)
    own = s[np.arange(len(t)), t]
    return (s >= own[:, None]).sum(1)


def retrieval_metrics(scores: Tensor, targets: Sequence[int], k: int = 10) -> dict[str, float]:
    """Recall@k (the target is in the top k) and NDCG@k (1 / log2(rank + 1) when it is, with one relevant item)."""
    r = ranks(scores, targets)
    hit = r <= k
    return {f"recall@{k}": float(hit.mean()), f"ndcg@{k}": float(np.where(hit, 1 / np.log2(r + 1), 0).mean())}


def sentiment_success(scores: Tensor, targets: Sequence[int], negatives: Sequence[int], k: int = 10) -> dict:
    """Mender's sentiment following: the positive item in the top k *and* the negative one absent from it."""
    pos, neg = ranks(scores, targets) <= k, ranks(scores, negatives) <= k
    return {f"success@{k}": float((pos & ~neg).mean()), f"negative_in_top{k}": float(neg.mean())}


def expand_prefixes(rows: Sequence[dict], min_history: int = 2) -> list[dict]:
    """Training rows from every prefix of each history (TIGER): history[:t] -> history[t], and the full history ->
    the target. Preferences stay the row's."""
    out = []
    for r in rows:
        seq = list(r["history"]) + [r["target"]]
        for t in range(min_history, len(seq)):
            out.append({**r, "history": seq[:t], "target": seq[t]})
    return out


class RowEncoder:
    """Rows (history, preferences, target) -> encoder inputs for a retriever ``mode``.

    ``item_vectors`` (N_items, D) and ``text_vector(text) -> (D,)`` serve ``"emb"``; ``item_texts`` and a word
    vocabulary serve ``"tok"``. ``use_preferences=False`` leaves them out (TIGER, or a no-preference control).
    ``blank_preferences=True`` keeps one encoder token per preference but blanks its text (a zero vector in
    ``"emb"``, no words in ``"tok"``): the same input layout as with preferences, and no information in them.
    """

    def __init__(self, mode: str, item_ids: Tensor, item_vectors: Tensor | None = None, text_vectors=None,
                 item_texts: Sequence[str] | None = None, vocab: dict[str, int] | None = None,
                 use_preferences: bool = True, max_history: int = 20, blank_preferences: bool = False):  # fmt: skip
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if blank_preferences and (mode == "tiger" or not use_preferences):
            raise ValueError("blank_preferences needs a mode that reads preferences ('emb' or 'tok')")
        self.blank_preferences = blank_preferences
        self.mode, self.item_ids, self.item_vectors, self.text_vectors = mode, item_ids, item_vectors, text_vectors
        self.item_texts, self.vocab, self.use_preferences, self.max_history = (
            item_texts,
            vocab,
            use_preferences,
            max_history,
        )
        self.offsets = id_offsets(item_ids)[0]

    def words(self, text: str) -> list[int]:
        return [self.vocab.get(w, 1) for w in text.lower().replace(",", " ,").split()] or [1]  # 1: unknown word

    def _one(self, r: dict) -> tuple[list, list[int]]:
        prefs = [p["text"] for p in r["preferences"]] if self.use_preferences else []
        hist = list(r["history"])[-self.max_history :]
        if self.mode == "emb":
            blank = torch.zeros(self.item_vectors.shape[1])  # (D,) the mean item vector after `standardize`
            pv = [blank if self.blank_preferences else self.text_vectors(t) for t in prefs]
            vecs = pv + [self.item_vectors[i] for i in hist]
            return vecs, [1] * len(prefs) + [0] * len(hist)
        if self.mode == "tok":  # one list of word ids per text; a blanked text is padding only (a zero token)
            pw = [[0] if self.blank_preferences else self.words(t) for t in prefs]
            texts = pw + [self.words(self.item_texts[i]) for i in hist]
            return texts, [1] * len(prefs) + [0] * len(hist)
        toks = (self.item_ids[hist] + self.offsets).flatten().tolist()
        return toks, [0] * len(toks)

    def __call__(self, rows: Sequence[dict]) -> dict[str, Tensor]:
        parts = [self._one(r) for r in rows]
        S = max(len(p[0]) for p in parts)
        mask = torch.zeros(len(rows), S, dtype=torch.long)
        seg = torch.zeros(len(rows), S, dtype=torch.long)
        if self.mode == "emb":
            x = torch.zeros(len(rows), S, self.item_vectors.shape[1])
        elif self.mode == "tok":
            x = torch.zeros(len(rows), S, max((len(w) for p in parts for w in p[0]), default=1), dtype=torch.long)
        else:
            x = torch.zeros(len(rows), S, dtype=torch.long)
        for i, (toks, s) in enumerate(parts):
            n = len(toks)
            if n and self.mode == "tok":
                for j, w in enumerate(toks):
                    x[i, j, : len(w)] = torch.tensor(w, dtype=torch.long)
            elif n:
                x[i, :n] = torch.stack(list(toks)) if self.mode == "emb" else torch.tensor(toks)
            mask[i, :n], seg[i, :n] = 1, torch.tensor(s, dtype=torch.long)
        key = {"emb": "vectors", "tok": "words", "tiger": "codes"}[self.mode]
        return {key: x, "mask": mask, "segments": seg, "target": torch.tensor([r["target"] for r in rows])}


def word_vocab(texts: Sequence[str]) -> dict[str, int]:
    """Word -> id over ``texts`` (lower-cased, commas split off); 0 pad, 1 unknown, 2 a separator (reserved)."""
    words = sorted({w for t in texts for w in t.lower().replace(",", " ,").split()})
    return {"<pad>": 0, "<unk>": 1, "<sep>": 2, **{w: i + 3 for i, w in enumerate(words)}}


class RowBatches:
    """Step-indexed batches of rows for :func:`prefkit.train.train` (deterministic per seed and step)."""

    def __init__(self, rows: Sequence[dict], encoder: RowEncoder, batch_size: int, seed: int = 0):
        self.rows, self.encoder, self.bs, self.seed = list(rows), encoder, batch_size, seed

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        per_epoch = max(1, len(self.rows) // self.bs)
        epoch, k = divmod(step, per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.rows))
        return self.encoder([self.rows[i] for i in perm[k * self.bs : (k + 1) * self.bs]])


def score_rows(model: GenerativeRetriever, encoder: RowEncoder, rows: Sequence[dict], batch_size: int = 64,
               method: str = "trie") -> Tensor:  # fmt: skip
    """(len(rows), N_items) catalog scores for every row (:func:`score_catalog`; the trie is built once)."""
    trie = model.id_trie()
    return torch.cat([score_catalog(model, encoder(rows[s : s + batch_size]), method=method, trie=trie)
                      for s in range(0, len(rows), batch_size)])  # fmt: skip


def standardize(vectors: Tensor, reference: Tensor | None = None) -> Tensor:
    """Centre and scale text vectors by the mean and overall std of ``reference`` (default: themselves).

    Sentence embeddings of templated texts share a large common direction (all-MiniLM-L6-v2 gives catalog titles a
    mean cosine near 0.5), which a freshly initialised projection barely sees past; centring removes it."""
    ref = vectors if reference is None else reference
    return (vectors - ref.mean(0)) / ref.std().clamp(min=1e-8)


def row_metrics(scores: Tensor, rows: Sequence[dict], item_ids: Tensor, k: int = 10) -> dict[str, np.ndarray]:
    """Per-row metrics (each (B,)) from catalog scores (B, N_items): ``recall@k`` (0/1: the target in the top k),
    ``ndcg@k``, ``prefix_recall@k`` (0/1: some top-k item has the target's codes before the collision digit, the
    last column of ``item_ids`` (N_items, M)), and for rows with a ``negative_item`` ``success@k`` (the positive in
    the top k and the negative out) and ``negative_in_top{k}``."""
    targets = [r["target"] for r in rows]
    r = ranks(scores, targets)
    hit = r <= k
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices  # (B, k)
    prefix = item_ids[:, :-1]  # (N, M - 1) the codes without the collision digit
    same = (prefix[top] == prefix[torch.tensor(targets)][:, None]).all(-1).any(-1)  # (B,)
    out = {f"recall@{k}": hit.astype(float), f"ndcg@{k}": np.where(hit, 1 / np.log2(r + 1), 0.0),
           f"prefix_recall@{k}": same.numpy().astype(float)}  # fmt: skip
    if rows and "negative_item" in rows[0]:
        neg = ranks(scores, [r_["negative_item"] for r_ in rows]) <= k
        out[f"success@{k}"] = (hit & ~neg).astype(float)
        out[f"negative_in_top{k}"] = neg.astype(float)
    return out


def benchmark_rows(model: GenerativeRetriever, encoder: RowEncoder, axes: dict[str, Sequence[dict]], k: int = 10,
                   method: str = "trie") -> dict[str, dict[str, np.ndarray]]:  # fmt: skip
    """:func:`row_metrics` per benchmark axis: {axis: {metric: (n_rows,) array}}; empty axes are left out.
    ``method``: how :func:`score_catalog` scores the catalog."""
    out = {}
    for axis, rows in axes.items():
        if rows:
            out[axis] = row_metrics(score_rows(model, encoder, rows, method=method), rows, model.item_ids.cpu(), k)
    return out


def benchmark(model: GenerativeRetriever, encoder: RowEncoder, axes: dict[str, Sequence[dict]], k: int = 10,
              method: str = "trie"):  # fmt: skip
    """Metrics per benchmark axis: Recall@k and NDCG@k, and for rows with a ``negative_item`` (sentiment following)
    also success@k (positive in the top k, negative absent). Returns {axis: {metric: value, "rows": n}}, the means
    of :func:`benchmark_rows`."""
    per_row = benchmark_rows(model, encoder, axes, k, method)
    return {
        a: {**{m: float(v.mean()) for m, v in ms.items()}, "rows": float(len(axes[a]))} for a, ms in per_row.items()
    }


def sample_by_user(rows: Sequence[dict], max_rows: int, seed) -> np.ndarray:
    """Sorted indices of a seeded sample of ``rows`` made of whole users: users are taken in a random order until
    at least ``max_rows`` rows are in (all rows if there are fewer), so every sampled user keeps all their rows and
    a comparison can be paired per user. ``seed``: anything ``np.random.default_rng`` takes."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    users = sorted({int(r["user"]) for r in rows})
    order = np.random.default_rng(seed).permutation(len(users))
    by: dict[int, list[int]] = {}
    for i, r in enumerate(rows):
        by.setdefault(int(r["user"]), []).append(i)
    picked: list[int] = []
    for j in order:
        if len(picked) >= max_rows:
            break
        picked += by[users[j]]
    return np.sort(np.array(picked, dtype=int))


def user_means(rows: Sequence[dict], values: Sequence[float], users: Sequence[int] | None = None) -> np.ndarray:
    """The mean of per-row ``values`` over each user's rows, in the order of ``users`` (default: sorted users of
    ``rows``): the paired unit of a comparison between arms scored on the same users. A user in ``users`` with no
    row raises ValueError."""
    v = np.asarray(values, dtype=float)
    if len(v) != len(rows):
        raise ValueError(f"{len(rows)} rows but {len(v)} values")
    by: dict[int, list[float]] = {}
    for r, x in zip(rows, v):
        by.setdefault(int(r["user"]), []).append(float(x))
    order = sorted(by) if users is None else [int(u) for u in users]
    missing = [u for u in order if u not in by]
    if missing:
        raise ValueError(f"users {missing[:5]} have no rows")
    return np.array([np.mean(by[u]) for u in order])


def train_retriever(item_ids: Tensor, encoder: RowEncoder, rows: Sequence[dict], train_config, config=None,
                    text_dim: int = 0, vocab_size: int = 0, batch_size: int = 64):  # fmt: skip
    """A fresh :class:`GenerativeRetriever` in ``encoder.mode`` trained on ``rows`` with :func:`prefkit.train.train`.
    Returns ``(model, history)``."""
    from dataclasses import replace

    from .train import train

    torch.manual_seed(train_config.seed)
    model = GenerativeRetriever(item_ids, encoder.mode, config, text_dim=text_dim, vocab_size=vocab_size)
    batches = RowBatches(rows, encoder, batch_size, seed=train_config.seed)
    hist = train(model, objective(), batches, replace(train_config, sanity_check=False))
    return model.eval(), hist
