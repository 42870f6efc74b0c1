"""Reference computations shared across arms: each (reference weights, rows) is computed once per process, and the
shared values are exactly what each arm would have computed on its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefkit import models
from prefkit.evaluate import ranking_report
from prefkit.losses import dpo_loss, lipo_lambda_loss
from prefkit.models import Reference, data_fingerprint, weights_digest
from prefkit.toy import run_arm
from prefkit.train import TrainConfig


@pytest.fixture(autouse=True)
def empty_store():
    models._SHARED.clear()
    yield
    models._SHARED.clear()


def count_reference_forwards(monkeypatch) -> list[int]:
    calls = [0]
    real = models.sequence_logps

    def counting(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(models, "sequence_logps", counting)
    return calls


def history_without_time(hist):
    return hist.steps.drop(columns=["time"])


def test_a_second_arm_on_the_same_base_and_rows_reuses_the_reference_logps_and_trains_identically(
    model, tok, pair_rows, monkeypatch
):
    calls = count_reference_forwards(monkeypatch)
    cfg = TrainConfig(steps=3, lr=1e-3, progress=False)
    _, _, first = run_arm(model, tok, pair_rows, dpo_loss, cfg, beta=0.1)
    after_first = calls[0]
    assert after_first >= 1
    _, _, second = run_arm(model, tok, pair_rows, dpo_loss, cfg, beta=0.1)
    assert calls[0] == after_first, "the second arm recomputed the reference log-probs"
    models._SHARED.clear()
    _, _, alone = run_arm(model, tok, pair_rows, dpo_loss, cfg, beta=0.1)
    assert calls[0] > after_first
    pd_equal = history_without_time(first).equals(history_without_time(second))
    assert pd_equal and history_without_time(alone).equals(history_without_time(first))


def test_precomputed_values_equal_a_direct_reference_forward(model, tok, pair_rows):
    ref = Reference(model, "copy")
    rows = ref.precompute(pair_rows, tok)
    again = Reference(model, "copy").precompute(pair_rows, tok)  # served from the store
    assert rows == again
    from prefkit.logps import encode_pairs

    b = encode_pairs(tok, pair_rows)
    lp, _ = models.sequence_logps(model.eval(), b["input_ids"], b["attention_mask"], b["response_mask"])
    B = len(pair_rows)
    assert [r["ref_chosen_logps"] for r in rows] == pytest.approx(lp[:B].tolist(), abs=1e-6)
    assert [r["ref_rejected_logps"] for r in rows] == pytest.approx(lp[B:].tolist(), abs=1e-6)
    assert all("ref_chosen_logps" not in r for r in pair_rows), "the caller's rows were modified"


def test_another_base_or_other_rows_are_not_served_stale_values(model, tok, pair_rows, monkeypatch):
    calls = count_reference_forwards(monkeypatch)
    first = Reference(model, "copy").precompute(pair_rows, tok)
    n = calls[0]
    Reference(model, "copy").precompute(pair_rows[:2], tok)  # other rows
    assert calls[0] > n
    n = calls[0]
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # another base
    moved = Reference(model, "copy").precompute(pair_rows, tok)
    assert calls[0] > n
    assert [r["ref_chosen_logps"] for r in moved] != [r["ref_chosen_logps"] for r in first]


def test_listwise_precompute_is_shared_and_returns_fresh_copies(model, tok, monkeypatch):
    calls = [0]
    real = Reference.as_model

    def counting(self):
        calls[0] += 1
        return real(self)

    monkeypatch.setattr(Reference, "as_model", counting)
    rows = [
        {"prompt": "reverse : a b c =", "responses": ["c b a", "a b c", "c"], "scores": [1.0, 0.2, 0.5]},
        {"prompt": "sort : d a c =", "responses": ["a c d", "d", "c a d"], "scores": [1.0, 0.1, 0.6]},
    ]
    first = Reference(model, "copy").precompute_lists(rows, tok)
    n = calls[0]
    second = Reference(model, "copy").precompute_lists(rows, tok)
    assert calls[0] == n and first == second
    second[0]["ref_logps"][0] = 123.0  # a caller that edits its rows does not edit the shared values
    assert Reference(model, "copy").precompute_lists(rows, tok)[0]["ref_logps"][0] == first[0]["ref_logps"][0]
    cfg = TrainConfig(steps=2, lr=1e-3, progress=False)
    _, _, a = run_arm(model, tok, rows, lipo_lambda_loss, cfg, batch_size=2, beta=0.1)
    _, _, b = run_arm(model, tok, rows, lipo_lambda_loss, cfg, batch_size=2, beta=0.1)
    assert history_without_time(a).equals(history_without_time(b))


def test_ranking_report_shares_the_reference_side_and_gives_the_same_numbers(model, tok, pair_rows, monkeypatch):
    ref = Reference(model, "copy")
    first = ranking_report(model, ref, tok, pair_rows, beta=0.1)
    models._SHARED.clear()
    fresh = ranking_report(model, Reference(model, "copy"), tok, pair_rows, beta=0.1)
    calls = [0]
    real = ref.as_model

    def counting():
        calls[0] += 1
        return real()

    monkeypatch.setattr(ref, "as_model", counting)
    again = ranking_report(model, ref, tok, pair_rows, beta=0.1)
    assert calls[0] == 0, "the reference's log-probs of the evaluation pairs were recomputed"
    assert first == fresh == again
    assert first["reward_acc"] == 0.5  # policy == reference: every implicit reward ties


def test_data_fingerprint_hashes_array_bytes_not_their_printed_form():
    a = np.zeros(5000)
    b = a.copy()
    b[2500] = 1.0  # NumPy prints both as "[0. 0. 0. ... 0. 0. 0.]"
    assert str(a) == str(b)
    assert data_fingerprint({"x": a}) != data_fingerprint({"x": b})
    assert data_fingerprint({"x": torch.tensor(a)}) != data_fingerprint({"x": torch.tensor(b)})
    assert data_fingerprint([{"p": "a", "s": 1.0}]) == data_fingerprint([{"s": 1.0, "p": "a"}])
    with pytest.raises(TypeError, match="cannot fingerprint a object"):
        data_fingerprint([object()])


def test_weights_digest_follows_every_weight_and_can_leave_adapters_out(model):
    d, d_skip = weights_digest(model), weights_digest(model, skip=("lm_head",))
    assert weights_digest(model) == d and d_skip != d
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1e-6
    assert weights_digest(model) != d
    assert weights_digest(model, skip=("lm_head",)) == d_skip
