"""An item-catalog world: sequential recommendation conditioned on natural-language preferences, with an oracle.

Every item is a set of attribute values drawn from small vocabularies (category, colour, brand, material, style,
price tier) with a templated title ("Nordvik red leather backpack, vintage style, premium"). Items come in *product
lines*: a line is one design sold in ``variants`` versions that differ in one attribute (colour, material or price),
so every item has near neighbours that share all attributes but one.

Each simulated user likes a few attribute values (weights w⁺ > 0) and dislikes one or two (w⁻ > 0); the oracle is

    u(user, i) = Σ_{(a, v) liked} w⁺_av [i_a = v] - Σ_{(a, v) disliked} w⁻_av [i_a = v] + ε_{user, i},
    ε ~ N(0, σ²)  (a small idiosyncratic taste per user and item).

A history is L items sampled from softmax(u / T) without replacement (Plackett-Luce, via Gumbel top-k) and the
target is the (L+1)-th draw, held out. Preferences are stated in templated sentences and derived from what the history
reveals, as Mender derives them from a user's reviews with an LLM: "I like red items" for a liked value seen in at
least ``min_support`` history items, "I avoid plastic" for every disliked value (the complaints in bad reviews).
Each preference keeps the attribute, value and sentiment behind it, so its effect on the oracle is known exactly.

Benchmark rows follow the evaluation axes of Mender (Paischer et al. 2024, "Preference Discerning with LLM-Enhanced
Generative Retrieval", arXiv:2412.08604): preference-based recommendation, fine- and coarse-grained steering,
sentiment following and history consolidation, plus the leakage check with a random user's preferences. Users are
split into train / valid / test. The world produces only texts and item ids; embedding them is the learner's business.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import PreferenceDataError

ATTRIBUTES = ("category", "colour", "brand", "material", "style", "price")
VALUES = {
    "category": ("shoes", "jacket", "backpack", "watch", "lamp", "mug", "headphones", "scarf"),
    "colour": ("red", "blue", "green", "black", "white", "grey", "yellow", "brown"),
    "brand": ("Nordvik", "Altamar", "Brenwick", "Corvella", "Dunmoor", "Elvaro", "Fjellstad", "Kestrin", "Lumora",
              "Tavistrel"),
    "material": ("leather", "cotton", "wool", "canvas", "plastic", "metal"),
    "style": ("vintage", "sporty", "minimalist", "luxury", "rugged"),
    "price": ("cheap", "mid-range", "premium"),
}  # fmt: skip
PLURAL = {"shoes": "shoes", "jacket": "jackets", "backpack": "backpacks", "watch": "watches", "lamp": "lamps",
          "mug": "mugs", "headphones": "headphones", "scarf": "scarves"}  # fmt: skip
VARIANT_ATTRIBUTES = ("colour", "material", "price")  # what the versions of one product line differ in
STEERING_ATTRIBUTES = ("category", "style")  # coarse steering moves to a category or style the history never had
TEMPLATES = {  # (attribute, sentiment) -> phrasings; {v} is the value, {p} the category's plural
    ("category", 1): ("I'm looking for new {p}", "I often shop for {p}"),
    ("colour", 1): ("I like {v} items", "I prefer {v} things"),
    ("brand", 1): ("I'm a fan of {v}", "I like products from {v}"),
    ("material", 1): ("I usually buy {v} things", "I like things made of {v}"),
    ("style", 1): ("I prefer {v} style", "I like a {v} look"),
    ("price", 1): ("I prefer {v} items", "I usually go for {v} products"),
    ("category", -1): ("I don't need any more {p}", "No {p} for me"),
    ("colour", -1): ("I don't like {v} items", "I avoid anything {v}"),
    ("brand", -1): ("I don't want anything from {v}", "I avoid {v} products"),
    ("material", -1): ("I avoid {v}", "I don't like {v} things"),
    ("style", -1): ("I don't like {v} style", "{V} style is not for me"),
    ("price", -1): ("I avoid {v} items", "I don't buy {v} products"),
}
SPLITS = ("train", "valid", "test")
_AXES = ("recommendation", "fine", "coarse", "sentiment", "random", "matched")  # each axis: its own random stream


def item_title(item: Mapping[str, str]) -> str:
    """The templated title of an item, e.g. "Nordvik red leather backpack, vintage style, premium"."""
    return (f"{item['brand']} {item['colour']} {item['material']} {item['category']}, {item['style']} style, "
            f"{item['price']}")  # fmt: skip


def preference(attribute: str, value: str, sentiment: int, template: int = 0) -> dict[str, Any]:
    """A stated preference: its sentence and the exact (attribute, value, sentiment) it expresses."""
    if attribute not in VALUES or value not in VALUES[attribute]:
        raise ValueError(f"unknown attribute value {attribute}={value!r}")
    if sentiment not in (1, -1):
        raise ValueError(f"sentiment must be +1 or -1, got {sentiment!r}")
    phrasings = TEMPLATES[attribute, sentiment]
    text = phrasings[template % len(phrasings)].format(v=value, V=value.capitalize(), p=PLURAL.get(value, value))
    return {"text": text, "attribute": attribute, "value": value, "sentiment": sentiment}


def invert_preference(p: Mapping[str, Any]) -> dict[str, Any]:
    """The official code's rule-based inversion of a negative preference: the same value stated positively
    ("I avoid plastic" -> "I like things made of plastic"), as its "avoid ..." -> "Find ..." rewrite does
    (facebookresearch/preference_discerning, dataset/match_preferences_to_items.py). A positive one is returned as is."""
    if p["sentiment"] > 0:
        return dict(p)
    return preference(p["attribute"], p["value"], 1, _phrasing(p))


def _phrasing(p: Mapping[str, Any]) -> int:
    """The index of the phrasing ``p["text"]`` was written from (0 if it is none of them)."""
    n = len(TEMPLATES[p["attribute"], p["sentiment"]])
    return next(
        (j for j in range(n) if preference(p["attribute"], p["value"], p["sentiment"], j)["text"] == p["text"]), 0
    )


def all_preference_texts() -> list[str]:
    """Every sentence :func:`preference` can write (each attribute value, sentiment and phrasing), sorted."""
    return sorted({preference(a, v, s, t)["text"] for a in ATTRIBUTES for v in VALUES[a] for s in (1, -1)
                   for t in range(len(TEMPLATES[a, s]))})  # fmt: skip


def shared_attributes(a: Mapping[str, str], b: Mapping[str, str]) -> int:
    """How many of the six attributes two items have in common."""
    return sum(a[k] == b[k] for k in ATTRIBUTES)


@dataclass
class CatalogWorld:
    """A seeded catalog, simulated users with latent likes and dislikes, and Mender-style benchmark rows.

    ``utility`` / ``true_top`` and the users' ``likes`` / ``dislikes`` are the oracle: use them to build and score
    benchmarks, never inside a learner.
    """

    seed: int = 0
    n_items: int = 400
    n_users: int = 500
    variants: int = 3  # versions per product line (2 or 3): the near neighbours fine-grained steering moves to
    n_likes: tuple[int, int] = (2, 3)  # each user likes between 2 and 3 attribute values ...
    n_dislikes: tuple[int, int] = (1, 2)  # ... and dislikes 1 or 2 others
    weight_range: tuple[float, float] = (1.0, 2.0)  # w⁺, w⁻ ~ U(range): every like outweighs the taste noise
    noise: float = 0.1  # σ of the per-(user, item) taste noise ε
    temperature: float = 0.5  # T of softmax(u / T): lower makes histories follow the likes more closely
    min_len: int = 5  # history length L ~ U{min_len, ..., max_len}
    max_len: int = 12
    min_support: int = 2  # a liked value is stated as a preference once this many history items have it
    min_items_per_value: int = 10  # every attribute value must match this many items, so recall cannot saturate
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train / valid / test users
    items: list[dict] = field(init=False, repr=False)
    likes: list[list[dict]] = field(init=False, repr=False)  # per user: {"attribute", "value", "weight"}
    dislikes: list[list[dict]] = field(init=False, repr=False)
    histories: list[list[int]] = field(init=False, repr=False)
    targets: list[int] = field(init=False, repr=False)
    preferences: list[list[dict]] = field(init=False, repr=False)  # per user: positives first, then negatives
    splits: dict[str, list[int]] = field(init=False, repr=False)
    _utility: np.ndarray = field(init=False, repr=False)  # (n_users, n_items) the oracle u
    _value_index: dict[tuple[str, str], int] = field(init=False, repr=False)  # (attribute, value) -> column
    _onehot: np.ndarray = field(init=False, repr=False)  # (n_items, 40) attribute_matrix()

    def __post_init__(self):
        self._check_parameters()
        rng = np.random.default_rng(self.seed)
        self.items = self._build_catalog(rng)
        self._value_index = {(a, v): k for k, (a, v) in enumerate((a, v) for a in ATTRIBUTES for v in VALUES[a])}
        self._onehot = self.attribute_matrix()
        self.likes, self.dislikes, self.histories, self.targets, self.preferences = [], [], [], [], []
        self._utility = np.stack([self._draw_user(rng) for _ in range(self.n_users)])
        order = rng.permutation(self.n_users)
        n_train = round(self.split_fractions[0] * self.n_users)
        n_valid = round(self.split_fractions[1] * self.n_users)
        cuts = (order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :])
        self.splits = {s: sorted(int(u) for u in c) for s, c in zip(SPLITS, cuts)}

    def _check_parameters(self) -> None:
        for name in ("n_items", "n_users", "min_len", "min_support", "min_items_per_value"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_users < 3:
            raise ValueError(f"n_users must be >= 3 (one per split), got {self.n_users}")
        if not 2 <= self.variants <= min(len(VALUES[a]) for a in VARIANT_ATTRIBUTES):
            raise ValueError(f"variants must be 2 or 3, got {self.variants}")
        if self.max_len < self.min_len or self.max_len + 1 > self.n_items // 2:
            raise ValueError(f"need min_len <= max_len < n_items / 2, got {self.min_len}, {self.max_len}")
        for name, hi in (("n_likes", len(ATTRIBUTES)), ("n_dislikes", 3)):
            lo_, hi_ = getattr(self, name)
            if not 1 <= lo_ <= hi_ <= hi:
                raise ValueError(f"{name} must be a range (lo, hi) with 1 <= lo <= hi <= {hi}, got {(lo_, hi_)}")
        lo, hi = self.weight_range
        if not 0 < lo <= hi:
            raise ValueError(f"weight_range must satisfy 0 < lo <= hi, got {self.weight_range}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {self.temperature}")
        f = self.split_fractions
        if len(f) != 3 or min(f) < 0 or not math.isclose(sum(f), 1.0):
            raise ValueError(f"split_fractions must be three fractions summing to 1, got {f}")

    # ---- catalog ----------------------------------------------------------------------------------------------

    def _build_catalog(self, rng: np.random.Generator) -> list[dict]:
        """Product lines of ``variants`` versions each; every value is taken from the least-used ones (random
        tie-break), so each value of an attribute with V values matches about n_items / V items."""
        counts = {a: dict.fromkeys(VALUES[a], 0) for a in ATTRIBUTES}
        titles: set[str] = set()
        items: list[dict] = []

        def pick(attribute: str, k: int, balanced: bool) -> list[str]:
            values = VALUES[attribute]
            noise = rng.random(len(values))
            key = [(counts[attribute][v] if balanced else 0) + noise[j] for j, v in enumerate(values)]
            return [values[j] for j in np.argsort(key)[:k]]

        line = 0
        while len(items) < self.n_items:
            size = min(self.variants, self.n_items - len(items))
            varying = VARIANT_ATTRIBUTES[line % len(VARIANT_ATTRIBUTES)]
            for attempt in range(100):  # after a title clash, draw uniformly until the line is new
                base = {a: pick(a, 1, attempt == 0)[0] for a in ATTRIBUTES if a != varying}
                new = [{**base, varying: v} for v in pick(varying, size, attempt == 0)]
                if not titles & {item_title(it) for it in new}:
                    break
            else:
                raise ValueError(f"could not draw {self.n_items} distinct items; ask for fewer")
            for it in new:
                it["line"] = line
                titles.add(item_title(it))
                for a in ATTRIBUTES:
                    counts[a][it[a]] += 1
            items.extend(new)
            line += 1
        for a in ATTRIBUTES:
            v, c = min(counts[a].items(), key=lambda kv: kv[1])
            if c < self.min_items_per_value:
                raise ValueError(f"only {c} items have {a}={v!r} (< min_items_per_value={self.min_items_per_value}); "
                                 "raise n_items")  # fmt: skip
        order = rng.permutation(self.n_items)  # item ids carry no trace of the product lines
        return [{"id": i, **{a: items[j][a] for a in ATTRIBUTES}, "line": items[j]["line"],
                 "title": item_title(items[j])} for i, j in enumerate(order)]  # fmt: skip

    def item_text(self, item: int) -> str:
        return self.items[item]["title"]

    @property
    def item_texts(self) -> list[str]:
        return [it["title"] for it in self.items]

    def attribute_matrix(self) -> np.ndarray:
        """One-hot attribute values of every item, (n_items, 40) in the order of ``VALUES``."""
        m = np.zeros((self.n_items, len(self._value_index)))
        for i, it in enumerate(self.items):
            for a in ATTRIBUTES:
                m[i, self._value_index[a, it[a]]] = 1.0
        return m

    def item_has(self, item: int, pref: Mapping[str, Any]) -> bool:
        """Whether ``item`` has the attribute value a preference names (whatever its sentiment)."""
        return self.items[item][pref["attribute"]] == pref["value"]

    def matching_items(self, attribute: str, value: str) -> list[int]:
        """Ids of the items whose ``attribute`` is ``value``."""
        return [it["id"] for it in self.items if it[attribute] == value]

    # ---- users and the oracle ---------------------------------------------------------------------------------

    def _draw_user(self, rng: np.random.Generator) -> np.ndarray:
        """One user's likes, dislikes, history, target and preferences; redrawn until the history reveals at least
        one like (a user with no stated like gives a row nothing to condition on). Returns the user's utility row (n_items,)."""
        for _ in range(100):
            n_like = int(rng.integers(self.n_likes[0], self.n_likes[1] + 1))
            n_dislike = int(rng.integers(self.n_dislikes[0], self.n_dislikes[1] + 1))
            liked = [(str(a), str(rng.choice(VALUES[a]))) for a in rng.choice(ATTRIBUTES, n_like, replace=False)]
            free = [(a, v) for a in ATTRIBUTES for v in VALUES[a] if (a, v) not in liked]
            disliked = [free[k] for k in rng.choice(len(free), n_dislike, replace=False)]
            likes, dislikes = ([{"attribute": a, "value": v, "weight": float(rng.uniform(*self.weight_range))}
                                for a, v in pairs] for pairs in (liked, disliked))  # fmt: skip
            w = np.zeros(len(self._value_index))  # w⁺ on liked values, -w⁻ on disliked ones
            for p, sign in [(p, 1.0) for p in likes] + [(p, -1.0) for p in dislikes]:
                w[self._value_index[p["attribute"], p["value"]]] = sign * p["weight"]
            u_row = self._onehot @ w + self.noise * rng.standard_normal(self.n_items)  # u(user, i)
            length = int(rng.integers(self.min_len, self.max_len + 1))
            keys = u_row / self.temperature + rng.gumbel(size=self.n_items)  # Gumbel top-k = softmax draws w/o repl.
            drawn = [int(i) for i in np.argsort(-keys)[: length + 1]]
            history, target = drawn[:length], drawn[length]
            seen = {a: [self.items[i][a] for i in history] for a in ATTRIBUTES}
            revealed = [p for p in likes if seen[p["attribute"]].count(p["value"]) >= self.min_support]
            if revealed:
                break
        else:
            raise ValueError("no history revealed a like in 100 draws; lower temperature or raise max_len")
        prefs = [preference(p["attribute"], p["value"], 1, int(rng.integers(2))) for p in revealed]
        prefs += [preference(p["attribute"], p["value"], -1, int(rng.integers(2))) for p in dislikes]
        self.likes.append(likes)
        self.dislikes.append(dislikes)
        self.histories.append(history)
        self.targets.append(target)
        self.preferences.append(prefs)
        return u_row

    def utility(self, user: int, item: int) -> float:
        """The oracle's u(user, item)."""
        return float(self._utility[user, item])

    def utilities(self, user: int) -> np.ndarray:
        """u(user, i) for every item, (n_items,) (a copy)."""
        return self._utility[user].copy()

    def true_top(self, user: int, k: int = 10, exclude: Iterable[int] = ()) -> list[int]:
        """The k items of highest utility for ``user``, best first, leaving out ``exclude`` (e.g. the history)."""
        u = self._utility[user].copy()
        u[list(exclude)] = -np.inf
        return [int(i) for i in np.argsort(-u, kind="stable")[:k]]

    def split_of(self, user: int) -> str:
        return next(s for s in SPLITS if user in self.splits[s])

    def _users(self, split: str) -> list[int]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.splits[split]

    def _rng(self, axis: str, split: str) -> np.random.Generator:
        """A stream per (axis, split): rows do not depend on which other rows were built first."""
        return np.random.default_rng([self.seed, _AXES.index(axis), SPLITS.index(split)])

    def _row(self, user: int, preferences: list[dict], target: int, **extra: Any) -> dict:
        return {"user": user, "history": list(self.histories[user]), "preferences": [dict(p) for p in preferences],
                "target": target, **extra}  # fmt: skip

    # ---- benchmark rows ---------------------------------------------------------------------------------------

    def recommendation_rows(self, split: str, negative: bool = True) -> list[dict]:
        """Preference-based recommendation: one row per (user, preference), target the held-out next item.

        ``negative=False`` drops the negative preferences (training without them, as in Mender's ablation)."""
        return [self._row(u, [p], self.targets[u]) for u in self._users(split) for p in self.preferences[u]
                if negative or p["sentiment"] > 0]  # fmt: skip

    def consolidation_rows(self, split: str, negative: bool = True) -> list[dict]:
        """History consolidation: one row per user with all of the user's preferences at once."""
        return [self._row(u, [p for p in self.preferences[u] if negative or p["sentiment"] > 0], self.targets[u])
                for u in self._users(split)]  # fmt: skip

    def fine_steering_rows(self, split: str) -> list[dict]:
        """Fine-grained steering: the target moves to a version of the same product line (it shares all attributes
        but one with the held-out target) and the preference names the value that tells the two apart.

        A user whose target's line has no other version outside the history, or only versions with a disliked
        value, gets no row. Extra fields: ``original_target``."""
        rng, rows = self._rng("fine", split), []
        for u in self._users(split):
            t = self.items[self.targets[u]]
            disliked = {(p["attribute"], p["value"]) for p in self.dislikes[u]}
            near = [it for it in self.items if it["line"] == t["line"] and it["id"] != t["id"]
                    and it["id"] not in self.histories[u]]  # fmt: skip
            near = [it for it in near if not any((a, it[a]) in disliked for a in ATTRIBUTES if it[a] != t[a])]
            if not near:
                continue
            j = near[int(rng.integers(len(near)))]
            a = next(a for a in ATTRIBUTES if j[a] != t[a])
            pref = preference(a, j[a], 1, int(rng.integers(2)))
            rows.append(self._row(u, [pref], j["id"], original_target=t["id"]))
        return rows

    def coarse_steering_rows(self, split: str) -> list[dict]:
        """Coarse-grained steering: the preference asks for a category or style that neither the row's history nor
        the user's own history has, and the target is the user's favourite item of that value (by the oracle).

        Histories are swapped between users of the split (``history_user`` owns the history shown, Mender's swap),
        so the history is no guide to the target: only the preference is. Within the preferred value the choice is
        the user's own taste, which the swapped history does not show, so recall@k is bounded by about
        k / ``n_matching`` (the items with the preferred value outside the history). Extra fields:
        ``original_target``, ``history_user``, ``n_matching``."""
        rng, rows = self._rng("coarse", split), []
        users = self._users(split)
        if len(users) < 2:
            return rows
        order = [users[int(k)] for k in rng.permutation(len(users))]
        partner = {u: order[(k + 1) % len(order)] for k, u in enumerate(order)}  # a derangement: nobody keeps theirs
        for u in users:
            p, t = partner[u], self.items[self.targets[u]]
            history = self.histories[p]
            disliked = {(d["attribute"], d["value"]) for d in self.dislikes[u]}
            for a in rng.permutation(STEERING_ATTRIBUTES):
                seen = {self.items[i][a] for i in [*history, *self.histories[u]]} | {t[a]}
                fresh = [v for v in VALUES[a] if v not in seen and (a, v) not in disliked]
                if fresh:
                    break
            else:
                continue
            v = fresh[int(rng.integers(len(fresh)))]
            region = [i for i in self.matching_items(a, v) if i not in history]
            target = region[int(np.argmax(self._utility[u, region]))]
            pref = preference(str(a), v, 1, int(rng.integers(2)))
            rows.append({"user": u, "history": list(history), "preferences": [pref], "target": target,
                         "original_target": t["id"], "history_user": p, "n_matching": len(region)})  # fmt: skip
        return rows

    def sentiment_rows(self, split: str) -> list[dict]:
        """Sentiment following: one row per (user, disliked value) with that negative preference. Success is the
        ``target`` (the held-out item, or the user's best item without the disliked value if the held-out one has
        it) in the top-k and the ``negative_item`` (the user's best item *with* the disliked value: what they would
        otherwise be shown) absent."""
        rows = []
        for u in self._users(split):
            u_row = self._utility[u]
            outside = [i for i in range(self.n_items) if i not in self.histories[u]]
            for pref in (p for p in self.preferences[u] if p["sentiment"] < 0):
                a, v = pref["attribute"], pref["value"]
                bad = [i for i in outside if self.items[i][a] == v]
                good = [i for i in outside if self.items[i][a] != v]
                target = self.targets[u]
                if self.items[target][a] == v:
                    target = good[int(np.argmax(u_row[good]))]
                negative = bad[int(np.argmax(u_row[bad]))]  # the dislike costs all of them alike: best of the rest
                rows.append(self._row(u, [pref], target, negative_item=negative))
        return rows

    def matching_candidates(self, user: int, last_item: int) -> list[dict]:
        """The preferences the official matching chooses from after ``last_item``
        (dataset/match_preferences_to_items.py there): the positive preferences generated from the last history
        item's review, which here are the user's stated likes that this item has; if there is none, the user's
        negative preferences inverted (:func:`invert_preference`); if there is none either, all of them."""
        item = self.items[last_item]
        prefs = self.preferences[user]
        pos = [p for p in prefs if p["sentiment"] > 0 and item[p["attribute"]] == p["value"]]
        if pos:
            return pos
        inverted = [invert_preference(p) for p in prefs if p["sentiment"] < 0]
        return inverted or [dict(p) for p in prefs]

    def matched_preference_rows(self, split: str, similarity: Callable[[list[str], int], np.ndarray],
                                prefixes: bool = False, match: bool = True) -> list[dict]:  # fmt: skip
        """The paper's condition: each row's one preference is the candidate (:meth:`matching_candidates` of the
        row's last history item) most similar to the row's *target* item, ``argmax similarity(texts, target)``
        (the official code: sentence-T5 embeddings, dot product with the target's title), at training and test time
        alike. The choice looks at the target, so the preference carries information about it that the history
        alone does not: this is not a leak-free condition.

        One row per user (the full history and the held-out target); ``prefixes=True`` gives every prefix
        ``history[:t] -> history[t]`` (t >= 2) as well, for training. ``match=False`` draws the preference
        uniformly from the same candidates instead (seeded), without looking at the target: the control.
        Extra fields: ``n_candidates``, ``inverted`` (the preference is an inverted negative one)."""
        rng, rows = self._rng("matched", split), []
        for u in self._users(split):
            seq = [*self.histories[u], self.targets[u]]
            for t in range(2 if prefixes else len(seq) - 1, len(seq)):
                cands = self.matching_candidates(u, seq[t - 1])
                if match:
                    sim = np.asarray(similarity([p["text"] for p in cands], seq[t]), dtype=float)
                    if sim.shape != (len(cands),) or not np.isfinite(sim).all():
                        raise ValueError(f"similarity must return {len(cands)} finite scores, got {sim!r}")
                    j = int(np.argmax(sim))
                else:
                    j = int(rng.integers(len(cands)))
                inverted = not any(p["text"] == cands[j]["text"] for p in self.preferences[u])
                rows.append({"user": u, "history": seq[:t], "preferences": [cands[j]], "target": seq[t],
                             "n_candidates": len(cands), "inverted": inverted})  # fmt: skip
        return rows

    def random_preference_rows(self, split: str, negative: bool = True) -> list[dict]:
        """The leakage check: ``recommendation_rows`` with each preference replaced by one of a different random
        user of the split (``preference_user``). A model that scores as well here does not use the preferences."""
        rng, users = self._rng("random", split), self._users(split)
        if len(users) < 2:
            return []
        rows = self.recommendation_rows(split, negative)
        for row in rows:
            other = users[int(rng.integers(len(users) - 1))]
            other = users[-1] if other == row["user"] else other  # uniform over the others
            pool = [p for p in self.preferences[other] if negative or p["sentiment"] > 0]
            row["preferences"] = [dict(pool[int(rng.integers(len(pool)))])]
            row["preference_user"] = other
        return rows

    # ---- validation -------------------------------------------------------------------------------------------

    def validate_rows(self, rows: Iterable[Mapping[str, Any]]) -> list[dict]:
        """Check benchmark rows against this catalog and return them as plain dicts; raises
        :class:`PreferenceDataError` naming the row and the field."""
        out = []
        for r, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise PreferenceDataError(r, None, f"must be a mapping of fields, got {type(row).__name__}")
            for f in ("user", "history", "preferences", "target"):
                if f not in row:
                    raise PreferenceDataError(r, f, f"is missing (row has {sorted(row)})")
            self._check_id(r, "user", row["user"], self.n_users, "user")
            history = row["history"]
            if isinstance(history, (str, bytes)) or not isinstance(history, Sequence) or not history:
                raise PreferenceDataError(r, "history", "must be a non-empty list of item ids")
            for k, i in enumerate(history):
                self._check_id(r, "history", i, self.n_items, "item", f"position {k}: ")
            for f in ("target", "negative_item"):
                if f in row:
                    self._check_id(r, f, row[f], self.n_items, "item")
            prefs = row["preferences"]
            if isinstance(prefs, (str, bytes)) or not isinstance(prefs, Sequence) or not prefs:
                raise PreferenceDataError(r, "preferences", "must be a non-empty list of preference dicts")
            for k, p in enumerate(prefs):
                self._check_preference(r, f"preferences[{k}]", p)
            out.append(dict(row))
        return out

    @staticmethod
    def _check_id(row: int, field: str, value: Any, n: int, what: str, where: str = "") -> None:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise PreferenceDataError(row, field, f"{where}{what} id must be an int, got {type(value).__name__}")
        if not 0 <= value < n:
            raise PreferenceDataError(row, field, f"{where}unknown {what} id {value} (the world has {n})")

    @staticmethod
    def _check_preference(row: int, field: str, p: Any) -> None:
        if not isinstance(p, Mapping):
            raise PreferenceDataError(row, field, f"must be a dict, got {type(p).__name__}")
        for f in ("text", "attribute", "value", "sentiment"):
            if f not in p:
                raise PreferenceDataError(row, f"{field}.{f}", "is missing")
        if not isinstance(p["text"], str) or not p["text"].strip():
            raise PreferenceDataError(row, f"{field}.text", "must be a non-empty string")
        if p["attribute"] not in VALUES:
            raise PreferenceDataError(row, f"{field}.attribute", f"unknown attribute {p['attribute']!r}")
        if p["value"] not in VALUES[p["attribute"]]:
            raise PreferenceDataError(row, f"{field}.value", f"{p['value']!r} is not a {p['attribute']}")
        if isinstance(p["sentiment"], bool) or p["sentiment"] not in (1, -1):
            raise PreferenceDataError(row, f"{field}.sentiment", f"must be +1 or -1, got {p['sentiment']!r}")
