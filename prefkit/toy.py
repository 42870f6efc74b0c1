"""The ``toy`` profile: an SFT base trained from scratch on a world's noisy demonstrations (cached on disk), and
preference pairs built from the base's own samples with the world's simulated raters.

Any world (a dataclass) with ``tokenizer``, ``train_prompts``, ``sft_rows(demos_per_prompt, rng)`` and
``build_pairs(...)`` works here.
"""

from __future__ import annotations

import inspect
import math
import random
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__
from .generate import sample
from .models import TinyLlamaConfig, cache_dir, fingerprint, tiny_llama
from .train import StepBatches, TrainConfig, sft_objective, train

if TYPE_CHECKING:
    from .vlm import TinyLlavaConfig


def _tiny_llava_config() -> TinyLlavaConfig:
    from .vlm import TinyLlavaConfig  # imported on use: the language-model notebooks never load the VLM code

    return TinyLlavaConfig()


@dataclass
class ToyBaseConfig:
    model: TinyLlamaConfig = field(default_factory=TinyLlamaConfig)
    demos_per_prompt: int = 8  # independent noisy demonstrations of each training prompt (fresh noise each)
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    seed: int = 0


def _base_path(world, config, kind: str) -> Path:
    # the world's parameters and its fixed formats (e.g. a judge template); the derived state (tokenizer, prompt
    # lists) is left out of the key (repr=False) since it follows from the rest
    world_params = {f.name: getattr(world, f.name) for f in fields(world) if f.init or f.repr}
    key = fingerprint({"world": world_params, "config": asdict(config), "prefkit": __version__})
    return cache_dir() / kind / key


@contextmanager
def _exclusive(path: Path, enabled: bool):
    """Hold an exclusive lock on ``path.lock`` (Unix): a second process that needs the same base waits for the
    first to finish training it, then loads it, instead of training it a second time."""
    if not enabled:
        yield
        return
    try:
        import fcntl
    except ImportError:  # no advisory locks here: two processes may both train the same base (still correct)
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _train_cached(path: Path, cache: bool, load, build, config, tokenizer, progress: bool, desc: str):
    """Load the base at ``path``; or get ``(model, rows, extra) = build()``, fine-tune the model on the rows (with
    ``extra`` batch inputs) and save it atomically. Processes that need the same base train it once."""
    with _exclusive(path, cache):
        if cache and (path / "config.json").exists():
            return load(path).train()
        model, rows, extra = build()
        batches = StepBatches(rows, tokenizer, config.batch_size, seed=config.seed, kind="sft", extra=extra)
        tc = TrainConfig(
            steps=config.steps,
            lr=config.lr,
            warmup_steps=config.warmup_steps,
            seed=config.seed,
            sanity_check=False,
            progress=progress,
            desc=desc,
        )
        train(model, sft_objective(), batches, tc)
        if cache:
            tmp = path.with_name(path.name + ".tmp")
            model.save_pretrained(tmp, safe_serialization=True)
            if not path.exists():  # a process without the lock (no fcntl) may have finished the same base first
                tmp.replace(path)
        return model.train()


def sft_base(world, config: ToyBaseConfig, cache: bool = True, progress: bool = True):
    """Train (or load from the cache) the SFT base for ``world``; cached under a hash of world and config."""
    from transformers import LlamaForCausalLM

    def build():
        rows = world.sft_rows(config.demos_per_prompt, random.Random(config.seed))
        return tiny_llama(world.tokenizer, config.model, seed=config.seed), rows, None

    path = _base_path(world, config, "toy-bases")
    return _train_cached(
        path, cache, LlamaForCausalLM.from_pretrained, build, config, world.tokenizer, progress, "SFT base"
    )


def _vlm_mix() -> dict[str, float]:
    # mostly single pictures, a few short sequences and collages: the regime where multi-image confusion shows
    return {"sequence:1": 0.7, "sequence:2": 0.15, "sequence:3": 0.05, "grid:2": 0.02, "grid:3": 0.02,
            "grid:4": 0.02, "pip:2": 0.04}  # fmt: skip


@dataclass
class ToyVLMConfig:
    model: TinyLlavaConfig = field(default_factory=_tiny_llava_config)
    n_questions: int = 20_000  # demonstrated questions (each with fresh pictures)
    mix: dict[str, float] = field(default_factory=_vlm_mix)  # {"format:n_images": weight}
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 50
    seed: int = 0


def vlm_base(world, config: ToyVLMConfig, cache: bool = True, progress: bool = True):
    """Train (or load from the cache) a tiny LLaVA on ``world``'s (a :class:`prefkit.worlds.ShapesWorld`)
    demonstrations; cached under a hash of world and config."""
    from transformers import LlavaForConditionalGeneration

    from .vlm import ImagePrep, PixelBatch, tiny_llava, vlm_rows

    def build():
        model = tiny_llava(world.tokenizer, config.model, seed=config.seed)
        rows = vlm_rows(world.sft_rows(config.n_questions, config.mix, seed=config.seed), world.tokenizer, model)
        return model, rows, PixelBatch(ImagePrep.for_model(model))

    path = _base_path(world, config, "toy-vlm-bases")
    load = lambda p: LlavaForConditionalGeneration.from_pretrained(p, attn_implementation="eager")  # noqa: E731
    return _train_cached(path, cache, load, build, config, world.tokenizer, progress, "SFT base (VLM)")


def sft_arm(base, tokenizer, rows, train_config: TrainConfig, batch_size: int = 64, extra=None):
    """Fine-tune a copy of ``base`` on (prompt, response) ``rows`` with the SFT objective (a control arm next to
    :func:`run_arm`'s preference arms). Returns ``(policy, history)``."""
    import copy

    policy = copy.deepcopy(base)
    batches = StepBatches(rows, tokenizer, batch_size, train_config.seed, "sft", extra=extra)
    return policy, train(policy, sft_objective(), batches, replace(train_config, sanity_check=False))


def sample_pairs(world, model, prompts, n_candidates: int = 2, seed: int = 0, **sample_kw) -> tuple[list[dict], int]:
    """Sample ``n_candidates`` responses per prompt from ``model`` and let the world's simulated raters label two
    distinct ones. Returns ``(rows, dropped)``; ``dropped`` counts prompts whose candidates were all identical.
    """
    cands = sample(model, world.tokenizer, prompts, n=n_candidates, seed=seed, **sample_kw)
    return world.build_pairs(prompts, cands, random.Random(seed))


def sample_lists(world, model, prompts, k: int, seed: int = 0, **sample_kw) -> list[dict]:
    """``k`` sampled responses per prompt, scored by the oracle: listwise rows (prompt, responses, scores). Identical
    samples stay (they tie, and ties form no pair), so every list has exactly ``k`` responses."""
    cands = sample(model, world.tokenizer, prompts, n=k, seed=seed, **sample_kw)
    return [
        {"prompt": p, "responses": list(ys), "scores": [world.score(p, y) for y in ys]} for p, ys in zip(prompts, cands)
    ]


def sample_trees(world, model, prompts, branching=(2, 2, 2), seed: int = 0, max_step_tokens: int = 16):
    """Preference trees grown step by step from ``model``: each node is continued by ``branching[d]`` sampled next
    steps (sampling stops at the step separator ``|`` or at EOS), so leaves share their prefixes. Step rewards are the
    oracle's per-step scores. Returns ``(trees, leaves_short)``: :class:`prefkit.data.PreferenceTree` per prompt, and
    how many trees have fewer leaves than ``prod(branching)`` (a response that ended early stops its branch).
    """
    from .data import PreferenceTree, StepNode

    roots: list[list] = [[] for _ in prompts]
    frontier = [(i, [], roots[i]) for i in range(len(prompts))]  # (prompt index, steps so far, children list)
    for depth, b in enumerate(branching):
        queries = [" ".join([prompts[i], *(f"{st} |" for st in steps)]) for i, steps, _ in frontier]
        cands = sample(
            model, world.tokenizer, queries, n=b, seed=seed * 1000 + depth, max_new_tokens=max_step_tokens, stop="|"
        )
        nxt = []
        for (i, steps, children), ys in zip(frontier, cands):
            for y in ys:
                ended = not y.endswith("|")
                text = y.removesuffix("|").strip()
                if not text:  # the model ended the response here: the parent is a leaf
                    continue
                gold_steps = world.step_scores(prompts[i], " | ".join([*steps, text]))
                reward = gold_steps[depth] if depth < len(gold_steps) else 0.0  # a step the task does not have
                node = StepNode(text, reward)
                children.append(node)
                if not ended:
                    nxt.append((i, [*steps, text], node.children))
        frontier = nxt
    trees = [PreferenceTree(p, ch) for p, ch in zip(prompts, roots)]
    full = math.prod(branching)
    return trees, sum(len(t.paths()) < full for t in trees)


def tree_rows(world, trees, tokenizer) -> list[dict]:
    """Trees -> listwise rows ranked by the oracle score of each leaf, with per-step token spans for the loss."""
    from .data import step_token_spans

    rows = []
    for n, tree in enumerate(trees):
        row = tree.to_listwise(lambda steps, rewards, p=tree.prompt: world.score(p, " | ".join(steps)), row=n)
        row["step_spans"] = [step_token_spans(tokenizer, steps, tree.separator) for steps in row["steps"]]
        rows.append(row)
    return rows


def step_accuracy(world, prompts, responses) -> dict[str, float]:
    """Exact-match rates of greedy/sampled ``responses``: per step (``step_1``, ...) and of the whole response."""
    n_steps = max(len(world.solve(p)) for p in prompts)
    right = [[] for _ in range(n_steps)]
    exact = []
    for p, y in zip(prompts, responses):
        scores = world.step_scores(p, y)
        for d, s in enumerate(scores):
            right[d].append(s == 1.0)
        exact.append(world.score(p, y) == 1.0)
    out = {f"step_{d + 1}": sum(r) / len(r) for d, r in enumerate(right) if r}
    out["exact_match"] = sum(exact) / len(exact)
    return out


def joint_pairs(world, prompts, responses, seed: int = 0, matched: bool = False) -> list[dict]:
    """Joint preference rows (DOVE): each (prompt, response) is compared with the response to another prompt, drawn
    uniformly (``matched=True``: among prompts of the same ``world.difficulty``), and the simulated rater labels the
    pair from the oracle's absolute scores. ``responses[i]`` answers ``prompts[i]``; every item appears once as the
    first of a pair. Rows: ``prompt_chosen``, ``chosen``, ``prompt_rejected``, ``rejected``, ``p_true``.

    A prompt with no other prompt to pair with (a difficulty group of one) raises: it would otherwise be skipped.
    """
    rng = random.Random(f"joint-{seed}")
    groups: dict = {}
    for i, p in enumerate(prompts):
        groups.setdefault(world.difficulty(p) if matched else None, []).append(i)
    rows = []
    for i, (p, y) in enumerate(zip(prompts, responses)):
        others = [j for j in groups[world.difficulty(p) if matched else None] if prompts[j] != p]
        if not others:
            raise ValueError(f"prompt {i} ({p!r}) has no other prompt of its difficulty to pair with")
        j = rng.choice(others)
        q = world.rater_prob(p, y, responses[j], prompt2=prompts[j])
        first, second = (p, y), (prompts[j], responses[j])
        chosen, rejected, p_true = (first, second, q) if rng.random() < q else (second, first, 1.0 - q)
        rows.append(
            {"prompt_chosen": chosen[0], "chosen": chosen[1], "prompt_rejected": rejected[0],
             "rejected": rejected[1], "p_true": p_true}
        )  # fmt: skip
    return rows


def sample_triples(world, model, prompts, n_candidates: int = 4, seed: int = 0, **sample_kw):
    """Triples for Triple Preference Optimization, built the way Saeidi et al. build them from UltraFeedback: sample
    ``n_candidates`` responses per prompt, rank them by oracle score, and take the best as ``gold``, the second best
    as ``chosen`` and the worst as ``rejected``. Returns ``(rows, dropped)``; a prompt is dropped (and counted) when
    its second-best and worst candidates score the same, so no preference can be stated.
    """
    cands = sample(model, world.tokenizer, prompts, n=n_candidates, seed=seed, **sample_kw)
    rows, dropped = [], 0
    for p, ys in zip(prompts, cands):
        ranked = sorted(((world.score(p, y), y) for y in ys), key=lambda t: -t[0])  # stable on ties
        (g_s, gold), (c_s, chosen), (r_s, rejected) = ranked[0], ranked[1], ranked[-1]
        if c_s == r_s:
            dropped += 1
            continue
        rows.append(
            {"prompt": p, "gold": gold, "chosen": chosen, "rejected": rejected,
             "score_gold": g_s, "score_chosen": c_s, "score_rejected": r_s}
        )  # fmt: skip
    return rows, dropped


def flip_labels(rows, flip: float, seed: int = 0) -> list[dict]:
    """Copies of pairwise ``rows`` with chosen and rejected swapped (annotator noise) with probability ``flip``;
    each row records ``flipped``. Other fields (a gold response, say) are left alone. Deterministic in ``seed``, and
    the rows flipped at a lower rate are a subset of those flipped at a higher one."""
    rng = random.Random(f"flips-{seed}")
    out = []
    for r in rows:
        flipped = rng.random() < flip
        swap = {"chosen": r["rejected"], "rejected": r["chosen"]} if flipped else {}
        if flipped and "score_chosen" in r:
            swap.update(score_chosen=r["score_rejected"], score_rejected=r["score_chosen"])
        out.append({**r, **swap, "flipped": flipped})
    return out


def oracle_summary(world, model, prompts, seed: int = 0) -> dict[str, float]:
    """Mean oracle score of one sampled response per prompt (``score``) and of the greedy response
    (``greedy_score``), with the greedy responses' exact-match rates per step and overall (:func:`step_accuracy`)."""
    from .generate import greedy

    sampled = [ys[0] for ys in sample(model, world.tokenizer, prompts, seed=seed)]
    greedy_out = greedy(model, world.tokenizer, prompts)
    return {
        "score": sum(world.score(p, y) for p, y in zip(prompts, sampled)) / len(prompts),
        "greedy_score": sum(world.score(p, y) for p, y in zip(prompts, greedy_out)) / len(prompts),
        **step_accuracy(world, prompts, greedy_out),
    }


def describe(model) -> dict[str, Any]:
    """Parameter count and shape of a toy model, for result records."""
    c = model.config
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "hidden_size": c.hidden_size,
        "layers": c.num_hidden_layers,
        "vocab": c.vocab_size,
        "device": str(next(model.parameters()).device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
    }


@dataclass
class OracleEval:
    """Evaluation against the world's oracle, bound to a reference when a run starts (see :func:`run_arm`).

    Calling it with a :class:`prefkit.models.Reference` gives an ``eval_fn(policy, step)`` for
    :func:`prefkit.train.train`: oracle score, win rate and KL against the reference on ``prompts`` (compared with
    the fixed ``ref_samples``, sampled once per seed from the reference), plus ranking accuracies on ``pairs``.
    The training history keeps the means; the per-prompt values of the latest evaluation (``oracle_eval``'s
    ``per_prompt``: the paired units of a comparison claim) are kept in ``last_per_prompt``.
    """

    world: Any
    prompts: list
    ref_samples: list
    pairs: list | None = None
    beta: float = 0.1
    seed: int = 0
    last_per_prompt: dict | None = field(default=None, init=False, repr=False)

    def __call__(self, reference):
        from .evaluate import oracle_eval, ranking_report

        def eval_fn(policy, step):
            tok = self.world.tokenizer
            out = oracle_eval(
                self.world.score, policy, tok, self.prompts, reference, self.ref_samples, self.seed + step
            )
            out.pop("samples")
            self.last_per_prompt = out.pop("per_prompt")  # the training history keeps the means
            if self.pairs:
                out.update(ranking_report(policy, reference, tok, self.pairs, self.beta))
            return out

        return eval_fn


def run_arm(
    base,
    tokenizer,
    rows,
    loss,
    train_config: TrainConfig,
    evaluator=None,
    reference: str = "copy",
    batch_size: int = 64,
    mask_prompt: bool = False,
    aux=None,
    extra=None,
    **hparams,
):
    """Fine-tune a copy of ``base`` on pairwise or listwise ``rows`` with ``loss`` (+ ``hparams``, e.g. ``beta``).

    ``evaluator(reference) -> eval_fn`` (e.g. :class:`OracleEval`) builds the evaluation once the reference exists. With
    ``reference="adapters_off"`` the base must already be a fresh PEFT model (it is trained in place, not copied).
    Joint rows (DOVE) score their prompt tokens unless ``mask_prompt``. ``aux`` adds an auxiliary task to the
    objective (e.g. :class:`prefkit.degree.DegreeTask`: its ``batch`` builds extra inputs from the rows, its
    ``objective`` wraps the loss).
    Returns ``(policy, reference, history)``.
    """
    import copy

    from .models import Reference
    from .train import is_listwise, preference_objective

    policy = base if reference == "adapters_off" else copy.deepcopy(base)
    ref = Reference(policy, mode=reference)
    listwise = is_listwise(loss)
    if "ref_logps" in inspect.signature(loss).parameters:  # reference-based listwise: π_ref's log-probs, once
        rows = ref.precompute_lists(rows, tokenizer)
    elif "ref_chosen_logps" in inspect.signature(loss).parameters:  # reference-based pairwise
        rows = ref.precompute(rows, tokenizer, mask_prompt=mask_prompt, extra=extra)
    kind = "listwise" if listwise else "pairwise"
    if aux is not None:
        extra = aux.batch if extra is None else (lambda rows, a=extra, b=aux.batch: {**a(rows), **b(rows)})
    batches = StepBatches(rows, tokenizer, batch_size, train_config.seed, kind, mask_prompt, extra)
    objective = preference_objective(loss, ref, **hparams)
    if aux is not None:
        objective = aux.objective(objective)
    eval_fn = evaluator(ref) if evaluator else None
    hist = train(policy, objective, batches, train_config, eval_fn=eval_fn)
    return policy, ref, hist
