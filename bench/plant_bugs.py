"""Planted bugs: does the non-notebook test suite notice a small, realistic slip in the code that turns training runs
into numbers?

Each bug is one edit (file, exact old snippet, replacement, one line of description). For each, the repository is
copied to a fresh temporary folder (rsync, or shutil.copytree where rsync is missing; without .venv, figures and
caches, with .git so that tests which record the checkout's commit still pass), the edit is applied there (the old
snippet must occur exactly once, and the result must compile), and ``<venv python> -m pytest -x -q -p
no:cacheprovider -m "not notebook"`` runs in that copy with the copy first on ``sys.path`` (the venv's editable
install points at the original; the script checks that the copy's ``prefkit`` is the one imported). A bug is
*caught* when the suite fails; the first failing test is recorded. Mutants run one at a time. First the suite runs
once without any bug (and without -x): a test that fails there is left out of the mutant runs and named in the
report. The original repository is never edited; only the report is written.

    python bench/plant_bugs.py                 # every bug, then bench/results/plant_bugs.md
    python bench/plant_bugs.py --list          # the bugs, and whether each snippet still matches
    python bench/plant_bugs.py --only E01 --only T01
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXCLUDES = [".venv", "*.png", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info"]
PYTEST = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not notebook"]
# Test files whose tests take tens of seconds run last: with -x the suite stops at the first failure, so the order
# changes only how long a caught mutant takes (and which failing test is named first), never whether it is caught.
SLOW_LAST = ("test_repro.py", "test_notebooks.py")


def test_files(copy: Path) -> list[str]:
    files = sorted(copy.glob("tests/test_*.py"), key=lambda p: (p.name in SLOW_LAST, p.name))
    return [str(p.relative_to(copy)) for p in files]


@dataclass(frozen=True)
class Bug:
    id: str
    file: str
    old: str
    new: str
    description: str


EV, TR, RE, MO = "prefkit/evaluate.py", "prefkit/train.py", "prefkit/repro.py", "prefkit/models.py"
CL, RP, RK = "prefkit/claims.py", "prefkit/reproduce.py", "prefkit/runkey.py"
PW, LW, LP, DA = "prefkit/losses/pairwise.py", "prefkit/losses/listwise.py", "prefkit/logps.py", "prefkit/data.py"

BUGS = [
    # ---- evaluation ------------------------------------------------------------------------------------------------
    Bug("E01", EV, "kl=float(np.mean(lp - ref_lp))", "kl=float(np.mean(ref_lp - lp))",
        "KL estimate with its sign flipped"),
    Bug("E02", EV, "win_rate=win_rate(scores, ref_scores)", "win_rate=win_rate(ref_scores, scores)",
        "oracle win rate with its arguments swapped (reference against policy)"),
    Bug("E03", EV, "return float(np.mean((s > b) + 0.5 * (s == b)))", "return float(np.mean(s > b))",
        "win_rate counts ties as losses"),
    Bug("E04", EV, '"reward_acc": win_rate(pc - rc, pr - rr)', '"reward_acc": win_rate(pr - rr, pc - rc)',
        "implicit-reward accuracy with chosen and rejected swapped"),
    Bug("E05", EV, "pol_right = pc > pr", "pol_right = pc >= pr",
        "ranking accuracy counts a tie as ranked right"),
    Bug("E06", EV, "np.mean(pc / nc > pr / nr)", "np.mean(pc / nr > pr / nc)",
        "length-normalised ranking accuracy divides by the other response's length"),
    Bug("E07", EV, '"margin": float(np.mean(beta * ((pc - rc) - (pr - rr))))',
        '"margin": float(np.mean(((pc - rc) - (pr - rr)) / beta))', "margin divided by β instead of multiplied"),
    Bug("E08", EV, "float(np.mean(~pol_right[ref_right]))", "float(np.mean(pol_right[ref_right]))",
        "flipped_to_wrong counts the pairs that stayed right"),
    Bug("E09", EV, "ref_lp, _ = response_logps(ref, tokenizer, prompts, ys)",
        "ref_lp, _ = response_logps(ref, tokenizer, prompts, ref_samples)",
        "KL takes log π_ref on the reference's samples instead of the policy's"),
    Bug("E10", EV, "np.log(p / (1 - p)) / beta > 0", "np.log(p / (1 - p)) * beta > 0",
        "idealized ranking accuracy multiplies the preference logit by β instead of dividing"),
    Bug("E11", EV, "greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()",
        "greater = (pos[:, None] > neg[None, :]).sum()", "AUROC counts ties as 0"),
    Bug("E12", EV, "return response_logps(ref, tokenizer, prompts, ch)[0], response_logps(ref, tokenizer, prompts, rj)[0]",
        "return response_logps(ref, tokenizer, prompts, rj)[0], response_logps(ref, tokenizer, prompts, ch)[0]",
        "pair_logps returns the reference log-probs of chosen and rejected swapped"),
    Bug("E13", EV, '["pair_logps", prompts, ch, rj, tokenizer.get_vocab()]', '["pair_logps", prompts, ch, tokenizer.get_vocab()]',
        "shared reference log-probs of evaluation pairs keyed without the rejected responses"),
    # ---- training loop ---------------------------------------------------------------------------------------------
    Bug("T01", TR, "            for _ in range(start):\n                scheduler.step()\n", "            pass\n",
        "resume drops the learning-rate schedule's fast-forward"),
    Bug("T02", TR, "grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)",
        'grad_norm = accelerator.clip_grad_norm_(params, float("inf"))', "gradient clipping ignored"),
    Bug("T03", TR, "return min(1.0, (step + 1) / warm)", "return min(1.0, step / warm)",
        "warm-up off by one (step 0 gets learning rate 0)"),
    Bug("T04", TR, "0.5 * (1.0 + math.cos(math.pi * done))", "math.cos(0.5 * math.pi * done)",
        "cosine schedule with the wrong formula (quarter wave)"),
    Bug("T05", TR, "(config.steps - warm + 1)", "(config.steps - warm)",
        "linear/cosine decay reaches 0 one step early (the last step does not learn)"),
    Bug("T06", TR, "if eval_fn is not None and config.eval_every and start == 0:",
        "if eval_fn is not None and config.eval_every:", "a resumed run evaluates step 0 again (duplicate eval row)"),
    Bug("T07", TR, "for n, p in _named_trainable(policy, modules).items()}",
        "for n, p in _named_trainable(policy, ()).items()}",
        "checkpoints leave out the objective's auxiliary head"),
    Bug("T08", TR, '    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))\n', "",
        "resume does not restore the optimizer state"),
    Bug("T09", TR, "if abs(loss - expected) > tol or max(rewards, default=0.0) > tol:",
        "if abs(loss - expected) > tol and max(rewards, default=0.0) > tol:",
        "step-0 check fails only when both loss and rewards are off"),
    Bug("T10", TR, "if not torch.isfinite(loss):", "if torch.isinf(loss):", "a NaN loss does not stop the run"),
    Bug("T11", TR, "random.Random(self.seed * 100_003 + epoch).shuffle(idx)", "random.Random(self.seed).shuffle(idx)",
        "StepBatches shuffles every epoch in the same order"),
    Bug("T12", TR, 'inputs["label_smoothing"] = 1.0 - batch["strength"].to(logps.device)',
        'inputs["label_smoothing"] = batch["strength"].to(logps.device)',
        "soft-label strength used as the flip rate ε instead of 1 - ε"),
    Bug("T13", TR, '"lr": lr,', '"lr": scheduler.get_last_lr()[0],',
        "lr column logs the next step's learning rate (read after scheduler.step())"),
    Bug("T14", TR, "        optimizer.zero_grad(set_to_none=True)\n        accelerator.backward(loss)\n",
        "        accelerator.backward(loss)\n        optimizer.zero_grad(set_to_none=True)\n",
        "gradients zeroed after backward instead of before (no update)"),
    Bug("T15", TR, '"rewards/accuracy": (chosen_r > rejected_r).float().mean().item()',
        '"rewards/accuracy": (chosen_r >= rejected_r).float().mean().item()',
        "training reward accuracy counts ties as right"),
    Bug("T16", TR, "per_epoch = max(1, len(self.rows) // self.bs)", "per_epoch = len(self.rows) // self.bs + 1",
        "StepBatches epoch length off by one (a short batch per epoch)"),
    Bug("T17", TR, "last = step + 1 == config.steps", "last = step == config.steps",
        "the last step is not recognised: no final evaluation or checkpoint"),
    # ---- records ---------------------------------------------------------------------------------------------------
    Bug("R01", RE, "return f\"{sum(s == 'reproduced' for s in head)} of {len(head)} headline reproduced\"",
        "return f\"{len(head)} of {len(head)} headline reproduced\"",
        "method_status counts every headline claim as reproduced"),
    Bug("R02", RE, 'rows.append(_row([link, paper, *counts, f"**{method_status(r)}**{scale}"]))',
        'rows.append(_row([link, paper, *counts, f"**reproduced**{scale}"]))',
        "README table writes 'reproduced' for every method"),
    Bug("R03", RE, '    return atomic_write_text(out_dir / "result.json", json.dumps(_jsonable(record), indent=2) + "\\n")',
        '    (out_dir / "result.json").write_text(json.dumps(_jsonable(record), indent=2) + "\\n")\n'
        '    return out_dir / "result.json"', "write_result not atomic (writes result.json in place)"),
    Bug("R04", RE, "missing = [f for f in figures if not (out_dir / f).exists()]", "missing = []",
        "write_result does not check that the figures exist"),
    Bug("R05", RE, "        return old_rule_status(claim.get(\"per_seed_pass\", []))\n    return claim[\"status\"]",
        "        return claim[\"status\"]\n    return claim[\"status\"]",
        "old results render their stored word ('partial') instead of the old rule"),
    Bug("R06", RE, '                st = f"**{claim_status(c)}**"', '                st = "**reproduced**"',
        "the claims ledger writes 'reproduced' for every claim"),
    Bug("R07", RE, "    if env[\"dirty\"] and not smoke:", "    if env[\"dirty\"] and smoke:",
        "a full-profile result from a dirty tree is written without an override"),
    Bug("R08", RE, "    resolve(claims)\n    env = environment()", "    env = environment()",
        "write_result does not apply the gates"),
    # ---- claims ------------------------------------------------------------------------------------------------------
    Bug("C01", CL, "    if lo > 0 and est >= delta:", "    if lo > 0:",
        "a significant effect smaller than delta counts as reproduced"),
    Bug("C02", CL, "    if hi < 0:\n        return \"reversed\"", "    if est < 0:\n        return \"reversed\"",
        "reversed when the estimate is below 0, whatever the interval"),
    Bug("C03", CL, "    if hi < delta:\n        return \"not reproduced\"", "    if lo < delta:\n        return \"not reproduced\"",
        "not reproduced when the low end (not the high end) is below delta"),
    Bug("C04", CL, 'return 1 if direction == "greater" else -1', "return 1",
        "the paper's direction is ignored (a 'lowers' claim is judged as 'raises')"),
    Bug("C05", CL, "        return \"reproduced\" if lo > -margin else \"inconclusive\"",
        "        return \"reproduced\" if est > -margin else \"inconclusive\"",
        "non-inferiority judged on the estimate, not the interval's low end"),
    Bug("C06", CL, "        total += boot[slots[:, j], cols]", "        total += boot[j % k, cols]",
        "the bootstrap never resamples seeds"),
    Bug("C07", CL, "    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])",
        "    lo, hi = np.quantile(means, [1 - level, level])", "a 90% interval reported as 95%"),
    Bug("C08", CL, "        groups.append([t - c] if paired else [t, c])", "        groups.append([t, c])",
        "paired units resampled as if unpaired"),
    Bug("C09", CL, "            if by_id[g].status != \"passed\":", "            if by_id[g].status == \"failed \":",
        "a failed gate does not block its dependents"),
    Bug("C10", CL, "v.std(ddof=1) / math.sqrt(v.size)", "v.std(ddof=0) / math.sqrt(v.size)",
        "t-interval with the population standard deviation"),
    Bug("C11", CL, "    passed = lo > threshold if s > 0 else hi < threshold",
        "    passed = est > threshold if s > 0 else est < threshold", "a gate passes on its estimate alone"),
    Bug("C12", CL, "    rng = np.random.default_rng(seed)\n    slots", "    rng = np.random.default_rng()\n    slots",
        "the bootstrap is not seeded (the same data gives another interval)"),
    # ---- make reproduce: run key and findings cells -------------------------------------------------------------------
    Bug("F01", RK, "        if FINDINGS not in tags(c) and INJECTED not in tags(c)", "        if INJECTED not in tags(c)",
        "the run key covers the findings cells (editing a reading makes the result stale)"),
    Bug("F02", RP, '"smoke": result["smoke"],', '"smoke": True,',
        "re-rendered findings read every result as a smoke run"),
    Bug("F03", RP, "    if executed_parts(source[\"cells\"]) != executed_parts(executed[\"cells\"]):\n        raise",
        "    if False:\n        raise", "findings are re-rendered into a copy executed from other code"),
    # ---- reference model -------------------------------------------------------------------------------------------
    Bug("M01", MO, "                p.requires_grad_(False)", "                p.requires_grad_(True)",
        "the frozen reference copy is trainable"),
    Bug("M02", MO, "self.model = copy.deepcopy(policy).eval()", "self.model = copy.deepcopy(policy)",
        "the reference copy keeps the policy's training mode (dropout on)"),
    Bug("M03", MO, 'parts = [batch["input_ids"].tolist(), batch["response_mask"].tolist()]',
        'parts = [batch["input_ids"].tolist()]', "reference cache key ignores which tokens are scored"),
    Bug("M04", MO, "out.extend(zip(lp[:B].tolist(), lp[B:].tolist()))", "out.extend(zip(lp[B:].tolist(), lp[:B].tolist()))",
        "precompute swaps the chosen and rejected reference log-probs"),
    Bug("M05", MO, "            self.policy.train(was_training)\n", "",
        "adapters_off reference leaves the policy in eval mode"),
    # ---- pairwise losses -------------------------------------------------------------------------------------------
    Bug("P01", PW, "- label_smoothing * F.logsigmoid(-beta * h)  # Eq. 7", "+ label_smoothing * F.logsigmoid(-beta * h)  # Eq. 7",
        "cDPO's smoothing term with the wrong sign"),
    Bug("P02", PW, "return (beta * (policy_logps - ref_logps)).detach()", "return (policy_logps - ref_logps).detach()",
        "implicit rewards without β"),
    Bug("P03", PW, "torch.relu(1 - beta * h)", "torch.relu(1 - h)", "hinge loss without β"),
    Bug("P04", PW, "(h - 1 / (2 * beta)) ** 2", "(h - 1 / beta) ** 2", "IPO target 1/τ instead of 1/(2τ)"),
    Bug("P05", PW, "chosen_rewards - rejected_rewards - gamma", "chosen_rewards - rejected_rewards + gamma",
        "SimPO margin γ with the wrong sign"),
    Bug("P06", PW, "chosen_ratio = chosen_ratio / chosen_lengths.clamp(min=1)",
        "chosen_ratio = chosen_ratio / rejected_lengths.clamp(min=1)", "IPO averages y_w over |y_l|"),
    Bug("P07", PW, "/ (1 - 2 * eps)  # Eq. 8", "/ (1 - eps)  # Eq. 8", "robust DPO normaliser 1 - ε instead of 1 - 2ε"),
    Bug("P08", PW, "nll = -policy_gold_logps / gold_lengths.clamp(min=1)", "nll = -policy_gold_logps",
        "Triple PO's gold NLL summed instead of averaged per token"),
    # ---- listwise losses -------------------------------------------------------------------------------------------
    Bug("L01", LW, "return (scores[:, :, None] > scores[:, None, :]).to(scores.dtype)",
        "return (scores[:, :, None] >= scores[:, None, :]).to(scores.dtype)", "tied scores form preference pairs"),
    Bug("L02", LW, "inv_discount = 1.0 / torch.log1p(model_ranks(rewards, scores))",
        "inv_discount = 1.0 / torch.log2(1.0 + model_ranks(rewards, scores))",
        "LiPO-λ discount log2 instead of the natural log"),
    Bug("L03", LW, "return -terms.sum(-1), s.detach()", "return -terms.mean(-1), s.detach()",
        "Plackett-Luce loss averaged over the list instead of summed"),
    Bug("L04", LW, "w = w / (best.sum(-1) * worst.sum(-1))[:, None, None]", "w = w / best.sum(-1)[:, None, None]",
        "best-vs-worst DPO ignores tied worst responses when sharing the weight"),
    Bug("L05", LW, "inv_t_self = (gap * lower).amax(-1)", "inv_t_self = (gap * lower).sum(-1)",
        "PRO's self temperature sums the gaps instead of taking the largest"),
    Bug("L06", LW, "above = s_above | (s_tied & (psi[:, None, :] > psi[:, :, None]))",
        "above = s_above | (s_tied & (psi[:, None, :] < psi[:, :, None]))",
        "model ranks break reward ties in favour of the worse response"),
    Bug("L09", LW, "tie_tol: float = 1e-5) -> Tensor:", "tie_tol: float = 0.0) -> Tensor:",
        "LiPO-λ ranks: float rounding of the rewards decides ties"),
    # ---- log-probs -------------------------------------------------------------------------------------------------
    Bug("G01", LP, "target_mask = response_mask[:, 1:].to(device).bool()",
        "target_mask = response_mask[:, :-1].to(device).bool()", "response log-probs shifted by one token"),
    Bug("G02", LP, "if add_eos and (not r_ids or r_ids[-1] != eos):", "if add_eos and r_ids and r_ids[-1] != eos:",
        "an empty response gets no closing EOS"),
    Bug("G03", LP, "r_ids = r_ids[: max(0, max_length - len(p_ids))]",
        "r_ids = r_ids[: max(0, max_length - len(p_ids) - 1)]", "max_length truncation one token too short"),
    Bug("G04", LP, "position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),", "position_ids=prompt_mask.cumsum(-1),",
        "shared-prompt forward with prompt positions off by one"),
    Bug("G05", LP,
        '    batch["prompt_mask"] = batch["attention_mask"] - batch["response_mask"]\n'
        "    if not mask_prompt:\n"
        '        batch["response_mask"] = batch["attention_mask"].clone()\n',
        "    if not mask_prompt:\n"
        '        batch["response_mask"] = batch["attention_mask"].clone()\n'
        '    batch["prompt_mask"] = batch["attention_mask"] - batch["response_mask"]\n',
        "joint batches compute the prompt mask after scoring the prompt (empty prompt mask)"),
    # ---- data ------------------------------------------------------------------------------------------------------
    Bug("D01", DA, "if not 0.0 <= s <= 1.0:", "if not 0.0 < s <= 1.0:", "a soft label of exactly 0 is refused"),
    Bug("D02", DA, 'if ex["scores"][order[0]] > ex["scores"][order[-1]] else []',
        'if ex["scores"][order[0]] >= ex["scores"][order[-1]] else []',
        "best_worst turns an all-tied list into a pair"),
    Bug("D03", DA, 'if not allow_identical and list(ex["chosen"]) == list(ex["rejected"]):',
        'if not allow_identical and isinstance(ex["chosen"], str) and ex["chosen"] == ex["rejected"]:',
        "identical chosen/rejected refused only for strings, not token ids"),
    Bug("D04", DA, "return list(rows[n:]), list(rows[:n])", "return list(rows[:n]), list(rows[n:])",
        "split_held_out returns (held_out, train)"),
    Bug("D05", DA, "leaves.sort(key=lambda leaf: -leaf[2])", "leaves.sort(key=lambda leaf: leaf[2])",
        "preference-tree leaves listed worst first"),
    Bug("D06", DA, "columns = list(dict.fromkeys(k for r in rows for k in r))", "columns = list(rows[0])",
        "to_hf_dataset keeps only the first row's columns"),
]  # fmt: skip


def find_bug(bug_id: str) -> Bug:
    for b in BUGS:
        if b.id == bug_id:
            return b
    raise SystemExit(f"unknown bug id {bug_id!r}; known: {', '.join(b.id for b in BUGS)}")


def copy_repo(src: Path, dst: Path) -> None:
    """rsync where it is installed, else the same copy with ``shutil.copytree``. ``.git`` comes along (3 MB): tests
    that record the checkout's commit need it; git in the copy reads the copy's own ``.git``, never the original."""
    if shutil.which("rsync"):
        excludes = [f"--exclude={e}" for e in EXCLUDES]
        subprocess.run(["rsync", "-a", "--delete", *excludes, f"{src}/", f"{dst}/"], check=True)
    else:
        shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(*EXCLUDES))


def apply_bug(copy: Path, bug: Bug) -> None:
    """The one edit, in the copy only; the old snippet must occur exactly once."""
    target = (copy / bug.file).resolve()
    if not target.is_relative_to(copy.resolve()) or target.is_relative_to(ROOT):
        raise RuntimeError(f"refusing to edit {target}: not inside the copy {copy}")
    text = target.read_text()
    n = text.count(bug.old)
    if n != 1:
        raise LookupError(f"{bug.file}: the old snippet occurs {n} times (expected exactly once)")
    mutated = text.replace(bug.old, bug.new)
    compile(mutated, str(target), "exec")  # a mutant must be valid Python: a SyntaxError would be caught for free
    target.write_text(mutated)


def env_for(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        PREFKIT_THREADS="1",
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def check_import(python: str, copy: Path) -> None:
    """The copy's prefkit must be the one imported (the venv's editable install points at the original)."""
    out = subprocess.run(
        [python, "-c", "import prefkit; print(prefkit.__file__)"],
        cwd=copy,
        env=env_for(copy),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        raise RuntimeError(f"the copy imports prefkit from {out}, not from {copy}")


FAILED = re.compile(r"^(FAILED|ERROR) (\S+)", re.M)


def run_suite(python: str, copy: Path, timeout: float, stop_first: bool = True, deselect: Sequence[str] = ()):
    """Run the suite in ``copy``: (returncode, failing test ids in order, seconds); returncode None on timeout."""
    args = [python, *PYTEST, *(["-x"] if stop_first else []), *test_files(copy)]
    args += [a for t in deselect for a in ("--deselect", t)]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(args, cwd=copy, env=env_for(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, [f"timeout after {timeout:.0f} s"], time.perf_counter() - t0
    failing = [m.group(2) + (" (error)" if m.group(1) == "ERROR" else "") for m in FAILED.finditer(p.stdout)]
    if p.returncode != 0 and not failing:
        tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or ["?"]
        failing = [f"pytest exit {p.returncode}: {tail[0][:120]}"]
    return p.returncode, failing, time.perf_counter() - t0


def run_bug(bug: Bug, python: str, timeout: float, deselect: Sequence[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"plant_{bug.id}_") as tmp:
        copy = Path(tmp) / "repo"
        copy_repo(ROOT, copy)
        try:
            apply_bug(copy, bug)
        except (LookupError, SyntaxError) as e:
            return {"bug": bug, "status": "stale", "by": str(e).splitlines()[0], "seconds": 0.0}
        check_import(python, copy)
        rc, failing, dt = run_suite(python, copy, timeout, deselect=deselect)
    caught = rc != 0
    return {
        "bug": bug,
        "status": "caught" if caught else "NOT CAUGHT",
        "by": failing[0] if caught else "",
        "seconds": dt,
    }


def baseline(python: str, timeout: float) -> dict:
    """The whole suite without any bug and without -x: every test that fails here is left out of the mutant runs
    (it would 'catch' every bug)."""
    with tempfile.TemporaryDirectory(prefix="plant_baseline_") as tmp:
        copy = Path(tmp) / "repo"
        copy_repo(ROOT, copy)
        check_import(python, copy)
        rc, failing, dt = run_suite(python, copy, timeout, stop_first=False)
    if rc is None or (rc != 0 and not all("::" in t for t in failing)):
        raise SystemExit(f"the suite does not run without bugs: {failing}")
    return {"failing": [t.removesuffix(" (error)") for t in failing], "seconds": dt}


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown(results: list[dict], base: dict | None, wall: float) -> str:
    tested = [r for r in results if r["status"] != "stale"]
    caught = sum(r["status"] == "caught" for r in tested)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if base is None:
        base_line = "not run"
    elif base["failing"]:
        base_line = "fails " + ", ".join(f"`{t}`" for t in base["failing"]) + " (left out of every mutant run)"
    else:
        base_line = "the suite passes"
    lines = [
        "# Planted bugs",
        "",
        "Generated by `python bench/plant_bugs.py`: each bug is one small edit, applied to a fresh copy of the "
        'repository; the non-notebook suite (`pytest -x -m "not notebook"`, the slow test_repro.py last) then runs in '
        "that copy. A bug is caught when the suite fails; *caught by* names the first failing test.",
        "",
        f"- commit: {commit.stdout.strip() or 'unknown'} plus the working tree's uncommitted changes",
        f"- baseline (no bug): {base_line}",
        f"- caught: **{caught} / {len(tested)}** ({100 * caught / max(1, len(tested)):.0f}%)"
        + (
            f"; {len(results) - len(tested)} stale (snippet no longer in the file)"
            if len(tested) < len(results)
            else ""
        ),
        f"- wall time: {wall / 60:.1f} min, mutants one at a time",
        "",
        "| id | file | description | caught by |",
        "|---|---|---|---|",
    ]
    for r in results:
        b = r["bug"]
        by = {"caught": f"`{r['by']}`", "NOT CAUGHT": "**not caught**", "stale": f"stale: {r['by']}"}[r["status"]]
        lines.append(f"| {b.id} | `{b.file}` | {_cell(b.description)} | {_cell(by)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the bugs and whether each snippet matches, then exit")
    ap.add_argument("--only", action="append", metavar="ID", help="run only this bug (repeatable)")
    ap.add_argument("--python", default=str(ROOT / ".venv" / "bin" / "python"), help="interpreter with the deps")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant's test run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run without any bug")
    ap.add_argument("--out", default=None, help="markdown report (default: bench/results/plant_bugs.md, full runs)")
    args = ap.parse_args(argv)

    if args.list:
        for b in BUGS:
            n = (ROOT / b.file).read_text().count(b.old)
            state = "ok" if n == 1 else f"snippet occurs {n} times"
            print(f"{b.id}  {b.file:<28} {state:<22} {b.description}")
        return 0
    bugs = [find_bug(i) for i in args.only] if args.only else BUGS
    t0 = time.perf_counter()
    base = None
    if not args.no_baseline:
        base = baseline(args.python, args.timeout)
        fails = f"fails {base['failing']} (left out below)" if base["failing"] else "passes"
        print(f"baseline: the suite {fails} ({base['seconds']:.0f} s)", flush=True)
    deselect = base["failing"] if base else []
    results = []
    for b in bugs:
        r = run_bug(b, args.python, args.timeout, deselect)
        results.append(r)
        print(f"{b.id}  {r['status']:<10} {r['seconds']:5.0f} s  {b.description}  {r['by']}", flush=True)
    wall = time.perf_counter() - t0
    tested = [r for r in results if r["status"] != "stale"]
    caught = sum(r["status"] == "caught" for r in tested)
    print(f"\ncaught {caught} / {len(tested)} ({100 * caught / max(1, len(tested)):.0f}%) in {wall / 60:.1f} min")
    for r in results:
        print(f"| {r['bug'].id} | {r['bug'].file} | {r['bug'].description} | {r['status']} | {r['by']} |")
    out = args.out or (None if args.only else str(ROOT / "bench" / "results" / "plant_bugs.md"))
    if out:
        Path(out).write_text(markdown(results, base, wall))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
