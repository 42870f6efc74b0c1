"""Shapes: an offline vision world of coloured shapes, with an oracle that knows every attribute of every image.

Each picture is one shape (square, circle, triangle, cross) in one colour on a dark, slightly noisy background,
drawn at ``size`` pixels (16 by default) so that it covers the vision encoder's patches: with 8-pixel patches a
16-pixel picture is 2 x 2 patches. Questions ask for the colour or the shape of one picture, and an answer is one
word. Every value has a synonym ("crimson" for red, "disc" for circle) that the demonstrations use a quarter of the
time, so "the answer differs from the ground truth" sometimes catches a correct paraphrase.

Single-image questions become multi-image prompts in the three ways of MIA-DPO (Liu et al. 2024, arXiv:2410.17637):

- **sequence**: ``image 1 : <image> image 2 : <image> ... what colour is image k ?`` with 1-5 pictures;
- **grid**: 2-4 pictures drawn at half size into the cells of one 2 x 2 collage (``... is cell k ?``): each picture
  then fills exactly one patch;
- **pic-in-pic** (``pip``): a half-size picture pasted into a corner of a full-size one (``... is the small / large
  picture ?``).

The asked attribute of the target differs from that of every other picture, so an answer that names another
picture's value is a *confusion*, which the oracle can tell apart from any other wrong answer. ``<image>`` marks
where a picture's visual tokens go (:func:`prefkit.vlm.encode_vlm` expands it). Each row also carries a pixel mask
per picture of where the target is, from which :func:`prefkit.vlm.attention_ratio` picks the target's visual tokens.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .strings import word_tokenizer

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (230, 210, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
}
SHAPES = ("square", "circle", "triangle", "cross")
SYNONYMS = {
    "red": "crimson",
    "green": "emerald",
    "blue": "azure",
    "yellow": "golden",
    "purple": "violet",
    "orange": "amber",
    "square": "box",
    "circle": "disc",
    "triangle": "wedge",
    "cross": "plus",
}
CANONICAL = {**{v: v for v in (*COLOURS, *SHAPES)}, **{s: v for v, s in SYNONYMS.items()}}
FORMATS = ("sequence", "grid", "pip")
IMAGE = "<image>"
WORDS = (
    IMAGE, "image", "cell", "the", "small", "large", "picture", "what", "colour", "shape", "is", ":", "?",
    *(str(k) for k in range(1, 10)), *COLOURS, *SHAPES, *SYNONYMS.values(),
)  # fmt: skip
BACKGROUND = (30, 30, 30)


def canonical(answer: str) -> str | None:
    """The attribute value an answer names (its first word, synonyms mapped), or None."""
    words = answer.split()
    return CANONICAL.get(words[0].strip(".,").lower()) if words else None


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """(size, size) bool: the shape drawn in the central ~80% of the square."""
    c = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    v, u = np.meshgrid(c, c, indexing="ij")  # v: down, u: right
    if shape == "square":
        return (np.abs(u) < 0.75) & (np.abs(v) < 0.75)
    if shape == "circle":
        return u**2 + v**2 < 0.8**2
    if shape == "triangle":  # apex up
        return (v < 0.8) & (v > -0.8) & (np.abs(u) < (v + 0.8) / 2)
    if shape == "cross":
        return ((np.abs(u) < 0.3) & (np.abs(v) < 0.85)) | ((np.abs(v) < 0.3) & (np.abs(u) < 0.85))
    raise ValueError(f"unknown shape {shape!r}; shapes are {SHAPES}")


def render(colour: str, shape: str, size: int = 16, rng: np.random.Generator | None = None, noise: float = 8.0):
    """(size, size, 3) uint8 picture: ``shape`` in ``colour`` on the dark background, with pixel noise."""
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; colours are {tuple(COLOURS)}")
    img = np.empty((size, size, 3), dtype=np.float32)
    img[:] = BACKGROUND
    img[_shape_mask(shape, size)] = COLOURS[colour]
    if rng is not None and noise > 0:
        img += rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class ShapesWorld:
    """Single- and multi-image questions about coloured shapes, their demonstrations and the oracle.

    The oracle: :meth:`correct` (the answer names the target's value, a synonym counts), :meth:`confused` (it names
    another picture's value instead). Rows are dicts with ``prompt`` (``<image>`` once per picture), ``images``
    (uint8 arrays), ``target_masks`` (one bool pixel mask per picture), ``answer`` (the canonical value),
    ``others`` (the values of the other pictures), ``attribute``, ``format`` and ``n_images``.
    """

    size: int = 16  # pixels per picture side (the grid and pic-in-pic insets are half of it)
    noise: float = 8.0  # std of the per-pixel noise, on the 0-255 scale
    p_synonym: float = 0.25  # how often a demonstration answers with the synonym
    tokenizer: object = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.size % 2:
            raise ValueError(f"size must be even (insets are half size), got {self.size}")
        self.tokenizer = word_tokenizer(WORDS)

    # ---- pictures and questions ----

    @staticmethod
    def _values(attribute: str) -> tuple[str, ...]:
        return tuple(COLOURS) if attribute == "colour" else SHAPES

    def _pictures(self, rng: random.Random, n: int, attribute: str) -> list[tuple[str, str]]:
        """n (colour, shape) pictures; the first is the target, whose ``attribute`` no other picture shares."""
        values = self._values(attribute)
        target = rng.choice(values)
        pics = []
        for i in range(n):
            value = target if i == 0 else rng.choice([v for v in values if v != target])
            other = rng.choice(SHAPES if attribute == "colour" else tuple(COLOURS))
            pics.append((value, other) if attribute == "colour" else (other, value))
        return pics

    def question(self, rng: random.Random, fmt: str = "sequence", n_images: int = 1, attribute: str | None = None):
        """One question row (see the class docstring); ``n_images`` counts the pictures (pic-in-pic: always 2)."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        limits = {"sequence": (1, 5), "grid": (2, 4), "pip": (2, 2)}[fmt]
        if not limits[0] <= n_images <= limits[1]:
            raise ValueError(f"{fmt} prompts take {limits[0]}-{limits[1]} pictures, got {n_images}")
        attribute = attribute or rng.choice(("colour", "shape"))
        if attribute not in ("colour", "shape"):
            raise ValueError(f"attribute must be 'colour' or 'shape', got {attribute!r}")
        nrng = np.random.default_rng(rng.getrandbits(32))
        pics = self._pictures(rng, n_images, attribute)
        k = rng.randrange(n_images)  # where the target goes
        pics[0], pics[k] = pics[k], pics[0]
        ask = f"what {attribute} is"
        s, h = self.size, self.size // 2
        if fmt == "sequence":
            images = [render(c, sh, s, nrng, self.noise) for c, sh in pics]
            masks = [np.full((s, s), i == k) for i in range(n_images)]
            prompt = " ".join(f"image {i + 1} : {IMAGE}" for i in range(n_images)) + f" {ask} image {k + 1} ?"
        elif fmt == "grid":
            canvas = np.full((s, s, 3), BACKGROUND, dtype=np.uint8)
            mask = np.zeros((s, s), dtype=bool)
            for i, (c, sh) in enumerate(pics):
                r, col = divmod(i, 2)
                canvas[r * h : (r + 1) * h, col * h : (col + 1) * h] = render(c, sh, h, nrng, self.noise)
                if i == k:
                    mask[r * h : (r + 1) * h, col * h : (col + 1) * h] = True
            images, masks = [canvas], [mask]
            prompt = f"image 1 : {IMAGE} {ask} cell {k + 1} ?"
        else:  # pip: picture 0 is the large one, picture 1 the inset
            canvas = render(*pics[0], s, nrng, self.noise)
            r, col = divmod(rng.randrange(4), 2)
            canvas[r * h : (r + 1) * h, col * h : (col + 1) * h] = render(*pics[1], h, nrng, self.noise)
            inset = np.zeros((s, s), dtype=bool)
            inset[r * h : (r + 1) * h, col * h : (col + 1) * h] = True
            images, masks = [canvas], [inset if k == 1 else ~inset]
            prompt = f"image 1 : {IMAGE} {ask} the {'small' if k == 1 else 'large'} picture ?"
        value = lambda p: p[0] if attribute == "colour" else p[1]  # noqa: E731
        return {
            "prompt": prompt,
            "images": images,
            "target_masks": masks,
            "answer": value(pics[k]),
            "others": sorted({value(p) for i, p in enumerate(pics) if i != k}),
            "attribute": attribute,
            "format": fmt,
            "n_images": n_images,
        }

    def questions(self, n: int, mix: dict[str, float], seed: int = 0) -> list[dict]:
        """``n`` question rows drawn from ``mix``: {"format:n_images": weight}, e.g. {"sequence:1": 0.8, "grid:4": 0.2}."""
        rng = random.Random(seed)
        cells = [(k.split(":")[0], int(k.split(":")[1])) for k in mix]
        return [self.question(rng, *rng.choices(cells, list(mix.values()))[0]) for _ in range(n)]

    def eval_set(self, n_per_cell: int, seed: int = 10_000) -> list[dict]:
        """Held-out questions: ``n_per_cell`` per sequence length 1-5, per grid size 2-4, and for pic-in-pic."""
        cells = [("sequence", k) for k in range(1, 6)] + [("grid", k) for k in range(2, 5)] + [("pip", 2)]
        rng = random.Random(seed)
        return [self.question(rng, fmt, k) for fmt, k in cells for _ in range(n_per_cell)]

    # ---- demonstrations and oracle ----

    def demonstration(self, row: dict, rng: random.Random) -> str:
        """The ground-truth value, or its synonym with probability ``p_synonym``."""
        return SYNONYMS[row["answer"]] if rng.random() < self.p_synonym else row["answer"]

    def sft_rows(self, n: int, mix: dict[str, float], seed: int = 0) -> list[dict]:
        """``n`` question rows from ``mix`` with a demonstrated ``response`` each."""
        rng = random.Random(seed + 1)
        return [{**q, "response": self.demonstration(q, rng)} for q in self.questions(n, mix, seed)]

    @staticmethod
    def correct(row: dict, answer: str) -> bool:
        return canonical(answer) == row["answer"]

    @staticmethod
    def confused(row: dict, answer: str) -> bool:
        """The answer names another picture's value (not the target's)."""
        return canonical(answer) in row["others"]

    def score(self, row: dict, answer: str) -> float:
        return float(self.correct(row, answer))


def collage(images: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    """Pictures side by side on white (for figures): (size, n·size + gaps, 3) uint8."""
    s = images[0].shape[0]
    out = np.full((s, len(images) * (s + gap) - gap, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        out[:, i * (s + gap) : i * (s + gap) + s] = im
    return out
