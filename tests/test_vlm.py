"""The shapes world, the tiny LLaVA path (log-probs with pictures, answers, attention ratio) and MIA-DPO's
selection."""

import math
import random

import numpy as np
import pytest
import torch

from prefkit.evaluate import auroc
from prefkit.logps import encode, sequence_logps
from prefkit.losses import dpo_loss
from prefkit.mia_dpo import (
    MIAConfig,
    calibrate_thresholds,
    format_thresholds,
    keep,
    mismatch_pairs,
    parse_thresholds,
    random_rejected,
    removed,
    selected_pairs,
    selection_report,
)
from prefkit.models import Reference, load_vlm
from prefkit.toy import run_arm
from prefkit.train import TrainConfig
from prefkit.vlm import (
    IMAGE,
    ImagePrep,
    PixelBatch,
    TinyLlavaConfig,
    answers,
    attention_ratio,
    image_tokens,
    target_token_mask,
    tiny_llava,
    vlm_rows,
)
from prefkit.worlds.shapes import COLOURS, SHAPES, SYNONYMS, ShapesWorld, canonical, render

SMALL = TinyLlavaConfig(
    vision_hidden=32, vision_layers=1, vision_heads=2, hidden=32, intermediate=64, layers=2, heads=2
)


@pytest.fixture(scope="module")
def world():
    return ShapesWorld()


@pytest.fixture(scope="module")
def vlm(world):
    return tiny_llava(world.tokenizer, SMALL, seed=0).eval()


@pytest.fixture(scope="module")
def rows(world, vlm):
    mix = {"sequence:1": 1, "sequence:3": 1, "sequence:5": 1, "grid:4": 1, "pip:2": 1}
    return vlm_rows(world.questions(20, mix, seed=3), world.tokenizer, vlm)


# ---- the world ----


@pytest.mark.parametrize("fmt,n", [("sequence", 1), ("sequence", 5), ("grid", 2), ("grid", 4), ("pip", 2)])
def test_questions_are_well_formed(world, fmt, n):
    rng = random.Random(0)
    for _ in range(30):
        q = world.question(rng, fmt, n)
        n_pictures = 1 if fmt != "sequence" else n
        assert q["prompt"].count(IMAGE) == len(q["images"]) == len(q["target_masks"]) == n_pictures
        assert all(im.shape == (16, 16, 3) and im.dtype == np.uint8 for im in q["images"])
        assert q["answer"] not in q["others"] and len(q["others"]) >= 1 or n == 1
        values = tuple(COLOURS) if q["attribute"] == "colour" else SHAPES
        assert q["answer"] in values and set(q["others"]) <= set(values)
        covered = sum(m.sum() for m in q["target_masks"])
        expected = {"sequence": 256, "grid": 64, "pip": None}[fmt]
        assert covered in ((64, 192) if fmt == "pip" else (expected,))


def test_target_picture_is_where_the_prompt_says(world):
    rng = random.Random(1)
    for _ in range(20):
        q = world.question(rng, "sequence", 4, attribute="colour")
        k = int(q["prompt"].split()[-2]) - 1
        centre = q["images"][k][8, 8].astype(int)  # every shape covers the centre
        assert np.abs(centre - np.array(COLOURS[q["answer"]])).max() < 40
        assert q["target_masks"][k].all() and not any(m.any() for i, m in enumerate(q["target_masks"]) if i != k)


def test_oracle_counts_synonyms_and_names_confusions(world):
    row = {"answer": "red", "others": ["blue", "green"]}
    assert canonical("crimson") == "red" and canonical("Disc.") == "circle" and canonical("") is None
    assert world.correct(row, "red") and world.correct(row, SYNONYMS["red"])
    assert not world.correct(row, "blue") and world.confused(row, "azure") and not world.confused(row, "yellow")


def test_demonstrations_use_synonyms_at_the_set_rate(world):
    rows = world.sft_rows(2000, {"sequence:1": 1.0}, seed=0)
    share = np.mean([r["response"] != r["answer"] for r in rows])
    assert abs(share - world.p_synonym) < 0.04
    assert all(canonical(r["response"]) == r["answer"] for r in rows)


def test_bad_questions_raise(world):
    with pytest.raises(ValueError, match="grid prompts take 2-4"):
        world.question(random.Random(0), "grid", 5)
    with pytest.raises(ValueError, match="format must be one of"):
        world.question(random.Random(0), "mosaic", 2)
    with pytest.raises(ValueError, match="unknown shape"):
        render("red", "star")


# ---- the tiny LLaVA ----


def test_vlm_rows_expand_images_and_name_bad_rows(world, vlm, rows):
    image_id = world.tokenizer.convert_tokens_to_ids(IMAGE)
    assert image_tokens(vlm) == 4
    for r in rows:
        assert r["prompt"].count(image_id) == 4 * len(r["images"])
    bad = [dict(rows[0], prompt=rows[0]["question"]), dict(rows[0], prompt="what colour is image 1 ?")]
    with pytest.raises(ValueError, match=r"row 1, field 'prompt': 0 <image> marks for \d images"):
        vlm_rows(bad, world.tokenizer, vlm)
    with pytest.raises(ValueError, match="row 0, field 'images': missing"):
        vlm_rows([{"prompt": "image 1 : <image> what colour is image 1 ?"}], world.tokenizer, vlm)


def test_sequence_logps_with_pictures_match_the_full_forward(world, vlm, rows):
    prep = ImagePrep.for_model(vlm)
    batch = encode(world.tokenizer, [r["prompt"] for r in rows], [r["answer"] for r in rows])
    pixels = PixelBatch(prep)(rows)["pixel_values"]
    logps, counts = sequence_logps(
        vlm, batch["input_ids"], batch["attention_mask"], batch["response_mask"], pixel_values=pixels
    )
    with torch.no_grad():
        logits = vlm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=pixels).logits
    lp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    expected = (lp * batch["response_mask"][:, 1:]).sum(-1)
    torch.testing.assert_close(logps, expected, atol=1e-4, rtol=1e-4)
    assert counts.tolist() == [2] * len(rows)  # the answer word and EOS
    other = sequence_logps(
        vlm, batch["input_ids"], batch["attention_mask"], batch["response_mask"], pixel_values=-pixels
    )[0]
    assert not torch.allclose(other, logps)  # the pictures reach the log-probs


def _direct_share(vlm, prep, row, image_id, response_ids, layer):
    """The target's share of the visual attention, computed the long way for one row: the queries are the response's
    tokens (or the last prompt position without any), ``layer`` one layer's index or None for the mean over all."""
    ids = torch.tensor([list(row["prompt"]) + response_ids])
    with torch.no_grad():
        out = vlm(input_ids=ids, pixel_values=prep(row["images"]), output_attentions=True)
    q = list(range(len(row["prompt"]), ids.shape[1])) or [len(row["prompt"]) - 1]
    maps = out.attentions if layer is None else [out.attentions[layer]]
    a = torch.stack([x[0][:, q] for x in maps]).mean((0, 1, 2))[ids[0] == image_id]  # layers, heads, queries
    t = torch.from_numpy(target_token_mask(vlm, row))
    return float(a[t].sum() / a.sum())


@pytest.mark.parametrize("layer", ["all", "middle", 0, -1])
def test_attention_ratio_matches_a_direct_computation(world, vlm, rows, layer):
    prep = ImagePrep.for_model(vlm)
    tok = world.tokenizer
    image_id = tok.convert_tokens_to_ids(IMAGE)
    said = ["red", "", "large disc", *["square"] * (len(rows) - 3)]  # one word, none, two words
    ratios = attention_ratio(vlm, tok, rows, prep, batch_size=7, layer=layer)
    answered = attention_ratio(vlm, tok, rows, prep, said, batch_size=7, layer=layer)
    index = {"all": None, "middle": SMALL.layers // 2}.get(layer, layer)
    for r in (ratios, answered):
        assert r.shape == (len(rows),) and np.all((r >= 0) & (r <= 1 + 1e-6))  # a share is a proportion
    for i in (0, 1, 2, 3, 11):
        r = rows[i]
        assert ratios[i] == pytest.approx(_direct_share(vlm, prep, r, image_id, [], index), abs=1e-5)
        ids = tok(said[i], add_special_tokens=False)["input_ids"] if said[i] else []
        assert answered[i] == pytest.approx(_direct_share(vlm, prep, r, image_id, ids, index), abs=1e-5)
    assert answered[1] == pytest.approx(ratios[1])  # an empty answer falls back to the last prompt position
    assert not np.allclose(answered, ratios)  # the answer's tokens are the queries
    single = [i for i, r in enumerate(rows) if r["format"] == "sequence" and len(r["images"]) == 1]
    assert single and np.allclose(answered[single], 1.0) and np.allclose(ratios[single], 1.0)


def test_attention_layer_is_checked(world, vlm, rows):
    prep = ImagePrep.for_model(vlm)
    for bad in (SMALL.layers, -SMALL.layers - 1, "top"):
        with pytest.raises(ValueError, match="layer must be 'middle', 'all' or an int"):
            attention_ratio(vlm, world.tokenizer, rows[:2], prep, layer=bad)
    with pytest.raises(ValueError, match="1 responses for 2 rows"):
        attention_ratio(vlm, world.tokenizer, rows[:2], prep, ["red"])


def test_target_tokens_of_a_grid_cell_and_a_pip_inset(world, vlm):
    rng = random.Random(0)
    q = world.question(rng, "grid", 4)
    k = int(q["prompt"].split()[-2]) - 1
    assert target_token_mask(vlm, q).tolist() == [i == k for i in range(4)]
    q = world.question(rng, "pip", 2)
    small = "small" in q["prompt"]
    assert target_token_mask(vlm, q).sum() == (1 if small else 3)


def test_greedy_answers_are_the_argmax(world, vlm, rows):
    prep = ImagePrep.for_model(vlm)
    said = answers(vlm, world.tokenizer, rows[:6], prep)
    for r, s in zip(rows[:6], said):
        with torch.no_grad():
            logits = vlm(input_ids=torch.tensor([r["prompt"]]), pixel_values=prep(r["images"])).logits[0, -1]
        tok = int(logits.argmax())
        assert s == ("" if tok == world.tokenizer.eos_token_id else world.tokenizer.decode([tok]).strip())


def test_dpo_with_pictures_starts_at_ln2_and_trains(world, vlm, rows):
    prep = ImagePrep.for_model(vlm)
    pairs = [{**r, "chosen": r["answer"], "rejected": r["others"][0] if r["others"] else "blue"} for r in rows]
    ref = Reference(vlm, mode="copy")
    pre = ref.precompute(pairs, world.tokenizer, extra=PixelBatch(prep, copies=2))
    batch = encode(
        world.tokenizer, [p["prompt"] for p in pairs] * 2, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    )
    lp, _ = sequence_logps(
        vlm,
        batch["input_ids"],
        batch["attention_mask"],
        batch["response_mask"],
        pixel_values=PixelBatch(prep, 2)(pairs)["pixel_values"],
    )
    assert [p["ref_chosen_logps"] for p in pre] == pytest.approx(lp[: len(pairs)].tolist(), abs=1e-5)
    cfg = TrainConfig(steps=6, lr=3e-3, seed=0, progress=False)
    policy, _, hist = run_arm(
        vlm, world.tokenizer, pairs, dpo_loss, cfg, batch_size=8, extra=PixelBatch(prep, 2), beta=0.1
    )
    assert hist.steps["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-4)  # the loop's step-0 check passed
    assert hist.steps["loss"].iloc[-3:].mean() < math.log(2)


def test_load_vlm_in_4bit_puts_lora_on_the_language_model_only(world, vlm, tmp_path):
    from prefkit.models import LoraSpec

    vlm.save_pretrained(tmp_path, safe_serialization=True)
    model, _ = load_vlm(
        str(tmp_path), quantize="4bit", lora=LoraSpec(r=4, alpha=8), device="cpu", tokenizer=world.tokenizer
    )
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("language_model" in n and "lora_" in n for n in names)
    r = vlm_rows(world.questions(3, {"sequence:2": 1.0}, seed=0), world.tokenizer, model)
    ratios = attention_ratio(model, world.tokenizer, r, ImagePrep.for_model(model, str(tmp_path)))
    assert np.all((ratios >= 0) & (ratios <= 1 + 1e-6))


# ---- MIA-DPO's selection ----


def _cand(fmt="sequence", n=3, mismatch=True, ratio=0.5, ppl=2.0, response="blue"):
    return {"format": fmt, "n_images": n, "mismatch": mismatch, "ratio": ratio, "perplexity": ppl,
            "response": response, "answer": "red", "attribute": "colour", "prompt": [1, 2], "images": []}  # fmt: skip


def test_selection_follows_the_official_thresholds():
    cfg = MIAConfig()
    assert cfg.thresholds == {"sequence": {2: 0.8, 3: 0.7, 4: 0.6, 5: 0.6}, "grid": {2: 0.7, 3: 0.6, 4: 0.5, 6: 0.4, 9: 0.3},
                              "pip": {2: 0.8}}  # fmt: skip
    assert keep(_cand(n=3, ratio=0.70), cfg) and not keep(_cand(n=3, ratio=0.71), cfg)  # sequences: <=
    assert keep(_cand(n=2, ratio=0.8), cfg) and not keep(_cand(n=5, ratio=0.61), cfg)
    assert keep(_cand("grid", 4, ratio=0.49), cfg) and not keep(_cand("grid", 4, ratio=0.5), cfg)  # grids: <
    assert keep(_cand("pip", 2, ratio=0.79), cfg) and not keep(_cand("pip", 2, ratio=0.8), cfg)  # pic-in-pic: <
    assert not keep(_cand(ppl=1.1), cfg) and keep(_cand(ppl=1.11), cfg)
    assert not keep(_cand(mismatch=False, ratio=0.1), cfg)
    strict = MIAConfig(inclusive={"sequence": False})
    assert not keep(_cand(n=3, ratio=0.70), strict) and keep(_cand(n=3, ratio=0.69), strict)
    with pytest.raises(ValueError, match="no attention threshold for format 'sequence' with 1 images"):
        keep(_cand(n=1), cfg)


def test_thresholds_parse_and_print():
    text = "sequence:2<0.41, sequence:5<0.2, grid:4<0.3, pip:2<0.55"
    th = parse_thresholds(text)
    assert th == {"sequence": {2: 0.41, 5: 0.2}, "grid": {4: 0.3}, "pip": {2: 0.55}}
    assert parse_thresholds(format_thresholds(th)) == th
    for bad, msg in [("sequence:2", "not of the form"), ("sequence<0.3", "not of the form"),
                     ("grid:x<0.3", "not of the form"), ("grid:2=0.3", "not of the form"),
                     ("pip:2<1.5", r"lies in \[0, 1\]"), ("grid:2<0.3, grid:2<0.4", "given twice"),
                     (" , ", "no thresholds")]:  # fmt: skip
        with pytest.raises(ValueError, match=msg):
            parse_thresholds(bad)


def test_calibrated_thresholds_keep_the_asked_share():
    rng = np.random.default_rng(0)
    cands = [_cand("sequence", 2, ratio=float(r)) for r in rng.uniform(0.3, 1.0, 400)]
    cands += [_cand("grid", 4, ratio=float(r)) for r in rng.uniform(0.0, 0.5, 200)]
    cands += [_cand("grid", 4, mismatch=False, ratio=0.0) for _ in range(300)]  # matches never set a threshold
    for share in (0.3, 0.5, 0.8):
        th = calibrate_thresholds(cands, share, fallback={"grid": {2: 0.9, 4: 0.9}})
        assert th["grid"][2] == 0.9  # no mismatching answer there: the fallback's value
        assert set(th) == {"sequence", "grid"} and 0.3 < th["sequence"][2] < 1.0 and 0 < th["grid"][4] < 0.5
        cfg = MIAConfig(thresholds=th, inclusive={})
        for fmt, n in [("sequence", 2), ("grid", 4)]:
            cell = [c for c in cands if (c["format"], c["n_images"]) == (fmt, n) and c["mismatch"]]
            kept = np.mean([keep(c, cfg) for c in cell])
            assert share - 0.01 <= kept + 1 / len(cell) and kept <= share  # strict <: at most the share
        gone = removed(cands, cfg)
        assert gone.shape == (600,) and gone.mean() == pytest.approx(1 - share, abs=0.01)
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="keep_share"):
            calibrate_thresholds(cands, bad)
    assert calibrate_thresholds(cands, 0.5)["pip"] == {2: 0.8}  # the official thresholds fill in by default
    with pytest.raises(ValueError, match="no mismatching candidates"):
        calibrate_thresholds([_cand(mismatch=False)], 0.5)


def test_pairs_and_controls():
    cands = [_cand(ratio=0.2), _cand(ratio=0.9), _cand(mismatch=False, response="red"), _cand(ratio=0.1, response="")]
    assert len(mismatch_pairs(cands)) == 2 and len(selected_pairs(cands, MIAConfig())) == 1
    p = selected_pairs(cands, MIAConfig())[0]
    assert (p["chosen"], p["rejected"]) == ("red", "blue")
    rand = random_rejected([p] * 50, {"colour": tuple(COLOURS)}, seed=0)
    assert all(r["rejected"] != "red" for r in rand) and len({r["rejected"] for r in rand}) > 2
    rep = selection_report(cands, MIAConfig(), truly_wrong=[True, False, False, True])
    assert rep["mismatches"] == 3 and rep["kept"] == 2
    assert rep["paraphrase_share_mismatch"] == pytest.approx(1 / 3) and rep["paraphrase_share_kept"] == 0


def test_auroc_against_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = rng.normal(size=300) + y * 0.8
    s[:20] = np.round(s[:20])  # some ties
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert auroc([1, 2, 3], [False, False, True]) == 1.0 and math.isnan(auroc([1, 2], [True, True]))


def test_answers_never_emit_the_image_token(world, vlm, rows):
    image_id = world.tokenizer.convert_tokens_to_ids(IMAGE)

    def favour_image_token(module, inputs, output):  # make it the likeliest next token everywhere
        output.logits[..., image_id] = 1e4

    hook = vlm.register_forward_hook(favour_image_token)
    try:
        with torch.no_grad():
            logits = vlm(
                input_ids=torch.tensor([rows[0]["prompt"]]), pixel_values=ImagePrep.for_model(vlm)(rows[0]["images"])
            ).logits
        assert int(logits[0, -1].argmax()) == image_id
        said = answers(vlm, world.tokenizer, rows[:5], ImagePrep.for_model(vlm), temperature=1.0)
    finally:
        hook.remove()
    assert said and all(IMAGE not in s for s in said)


def test_toy_bases_are_cached_and_reloaded(world, tmp_path, monkeypatch):
    import prefkit.toy
    from prefkit.models import TinyLlamaConfig
    from prefkit.toy import ToyBaseConfig, ToyVLMConfig, sft_base, vlm_base
    from prefkit.worlds import StringWorld

    monkeypatch.setenv("PREFKIT_CACHE", str(tmp_path))
    cfg = ToyVLMConfig(model=SMALL, n_questions=64, steps=3, batch_size=16)
    first = vlm_base(world, cfg, progress=False)
    sw = StringWorld(n_train=20, n_eval=4)
    small = ToyBaseConfig(model=TinyLlamaConfig(hidden_size=32, num_hidden_layers=1, intermediate_size=64), steps=3,
                          demos_per_prompt=2, batch_size=8)  # fmt: skip
    a = sft_base(sw, small, progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached base was trained again")

    monkeypatch.setattr(prefkit.toy, "train", no_training)
    again = vlm_base(world, cfg, progress=False)  # from the cache: same weights, eager attention kept
    assert again.config._attn_implementation == "eager"
    for (n, x), (_, y) in zip(first.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(x, y, msg=n)
    b = sft_base(sw, small, progress=False)
    torch.testing.assert_close(a.get_output_embeddings().weight, b.get_output_embeddings().weight)
    for kind in ("toy-bases", "toy-vlm-bases"):  # one base of each kind (beside it, the lock of its training)
        assert len([p for p in (tmp_path / kind).iterdir() if p.is_dir()]) == 1
