# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Beyond Bradley-Terry: general preferences and Nash-style self-improvement
#
# Reward models in RLHF assume a Bradley-Terry (BT) model: every response has one score r, and
# P(a ≻ b) = σ(r_a − r_b). Such preferences are transitive. Preferences pooled over people with different tastes need
# not be, and the methods in this notebook drop the assumption or work around it. Four papers, one part each:
#
# **Part A. General Preference Modeling (GPM)** (Zhang, Zhang, Yuan, Gu, Liu 2024,
# [arXiv:2410.02197](https://arxiv.org/abs/2410.02197), code
# [general-preference/general-preference-model](https://github.com/general-preference/general-preference-model)).
# Each response gets a preference *embedding* v, and P(a ≻ b) = σ(v_aᵀ R v_b / τ) with R skew-symmetric, so
# P(a ≻ b) + P(b ≻ a) = 1 and cycles are expressible. **Part B. GPO** (same paper, Sec. 5): self-play policy
# optimisation on the GPM score, against a BT reward + RL and against SPO (`06_spo`).
#
# **Part C and D. Accelerated Preference Optimization (APO)** (He, Yuan, Gu 2024,
# [arXiv:2410.06293](https://arxiv.org/abs/2410.06293)). Iterative DPO is a proximal point method; APO adds
# Nesterov's extrapolation between rounds. Part C runs it on a tabular bandit where every DPO round is solved exactly;
# Part D runs it on the string world next to DNO.
#
# **Part D. Direct Nash Optimization (DNO)** (Rosset, Cheng, Mitra, Santacroce, Awadallah, Xie 2024,
# [arXiv:2404.03715](https://arxiv.org/abs/2404.03715)). Rounds of: sample from π_t, add a teacher's response, let a
# general preference judge score all of them, keep (best, worst) when the margin is large, DPO with π_t as reference.
#
# **Part E. A Unified Pairwise Framework for RLHF (Pairwise-RL)** (Xu et al. 2025,
# [arXiv:2504.04950](https://arxiv.org/abs/2504.04950)). A pairwise reward model judges "is y better than the anchor
# a?", and RL is rewarded by that preference, instead of a pointwise BT score.
#
# Parts A-C involve no language model and run in seconds; D and E train the string world's tiny Llama. Every
# number is measured against the world's oracle, which no method sees.
#
# ## Claims tested here
#
# Gates check that a mechanism works in our world before a claim that needs it is judged. A claim's minimum effect
# (delta) and direction are fixed in the code before the run; "ours" marks claims the papers do not make.
#
# | id | kind | claim | from |
# |---|---|---|---|
# | GA | gate | the fitted GPM embeddings follow the exact majority on more than 0.75 of the pairs of the cyclic rater worlds (3-cycle and random cyclic worlds; chance 1/2) | needed by A1, A2, A4 |
# | GA2 | gate | a BT head on frozen SFT states learns the transitive length world: held-out accuracy against the majority above 0.70 | needed by A5, A6 |
# | GA3 | gate | on the cyclic length world the GPM head's held-out accuracy beats the BT head's by more than 0.02 (the cycle is learnable from frozen SFT states) | needed by A5, A7, A8 |
# | A1 | headline | on cyclic rater worlds GPM follows the true majority on more pairs than BT fitted to the same comparisons | Zhang et al., Table 1 (BT 50.0-62.9%, GPM 100% on cyclic sets; BT "behaves like a random guess") |
# | A5 | headline | on frozen LM states a GPM head follows a cyclic majority on more held-out pairs than a BT head trained on the same pairs | Zhang et al., Table 1 and Sec. 6 (GPM heads on LM states) |
# | A2 | secondary | on the 3-cycle GPM predicts held-out comparisons better than BT (held-out log-likelihood; BT can order at most 2 of the 3 pairs) | Zhang et al., Table 1 |
# | A3 | secondary | transitive control: GPM follows the majority no worse than BT (non-inferiority) | — (our control: the gap must vanish) |
# | A4 | secondary | larger cyclic worlds (`gpm_large_n` responses): GPM predicts held-out comparisons better than BT | Zhang et al., Sec. 4 (enough blocks express any preference); the size is ours |
# | A6 | secondary | transitive control on LM states: the GPM head is no less accurate than the BT head (non-inferiority) | — (our control: the gap must vanish) |
# | A7 | secondary | on the cyclic LM world the GPM head predicts held-out labels better (log-likelihood) than the BT head | — (ours: calibration of the same heads) |
# | A8 | secondary | the GPM head recovers the cycle: it orders more of the three level pairs like the majority than the BT head | Zhang et al., Table 1 (the cycle itself) |
# | GB | gate | in worlds that are Bradley-Terry models, GPO and BT + RL both come within 0.02 of the Minimax Winner (the Condorcet winner) from `gpo_budget` = 3000 comparisons (larger of the two exploitabilities per world) | mechanism: both pipelines work where Bradley-Terry holds; needed by B1, B1c, B4 |
# | GG | gate | on cyclic rater worlds (no Condorcet winner), the GPM fit gets more than 0.9 of the clear majority directions (\|P − ½\| ≥ 0.05) right at 3000 comparisons; on a 5-response cycle of clear pairs no reward gets more than 9 of 10 | Zhang et al., Table 1 (GPM fits cyclic preferences); needed by B1, B2, B3 |
# | GG3 | gate | on 06_spo's 3-cycle, the GPM fit gets more than 2 of 3 majority directions right (Bradley-Terry's exact ceiling) at 3000 comparisons | Zhang et al., Table 1 (BT 50-63% vs GPM 100% on cyclic sets); needed by B1c |
# | B1 | headline | on cyclic rater worlds, GPO's average policy (GPM fit, then self-play) is less exploitable than Bradley-Terry + RL's at equal comparisons (3000) | Zhang et al., Sec. 5 and Theorem 5.1 (GPO reaches the Minimax Winner of a general preference; a reward cannot express cycles) |
# | B1c | headline | the same on 06_spo's 3-cycle (`RaterGroups.cyclic()`), from 06's start (0.1, 0.1, 0.8) | Zhang et al., Sec. 5 and Theorem 5.1 |
# | B2 | secondary | on cyclic rater worlds, GPO's average is less exploitable than SPO's at equal comparisons (3000) | ours (GPO pools every comparison into one preference model; SPO uses each batch once) |
# | B3 | secondary | GPO's average approaches the Minimax Winner as data grows: its exploitability on cyclic worlds falls from 300 to 10 000 comparisons | Theorem 5.1 with a GPM that improves with data (ours) |
# | B4 | secondary | transitive rater worlds (control): GPO's average is not more exploitable than BT + RL's at 3000 comparisons (non-inferiority, margin 0.02) | our control: where the majority is transitive the two must agree |
# | GC | gate | iterative DPO (α = 0) lowers the suboptimality of π_ref by at least 0.1 by round `apo_eval_round` (sampled comparisons) | needed by C1-C6 |
# | C1 | headline | APO (α = `apo_alpha`) reaches a lower suboptimality than iterative DPO after `apo_eval_round` rounds | He et al., Table 1 (LC win rate 31.73 vs 29.95 after 3 iterations); Thm 4.4 |
# | C2 | headline | APO after 2 rounds is not worse than iterative DPO after 3 (non-inferiority) | He et al., Sec. 1 and 5.2 (37.53 vs 37.64 raw win rate, APO Iter2 vs DPO Iter3) |
# | C3 | secondary | APO's fitted rate (exact-DPO rounds gained per round) is at least Thm 4.1's predicted speed-up minus 0.1 | He et al., Thm 4.1/4.4, Remark 4.5 (factor 1/(1-α)) |
# | C4 | secondary | α = `apo_alpha_high` reaches a lower suboptimality than α = `apo_alpha` at round `apo_eval_round` | He et al., Remark 4.5 (larger α, smaller optimisation error); Table 3 |
# | C5 | secondary | control: iterative DPO with β' = β·T/S_α(T) (the same total step by Thm 4.1) is not worse than APO at round `apo_eval_round` | — (our control: both follow the same path to the same fixed point) |
# | C6 | secondary | APO's policy is further from π_ref (KL) than iterative DPO's at round `apo_eval_round` | — (our finding: the speed-up is a longer step along the same path) |
# | GD | gate | the teacher beats the SFT model by more than `GATE_TEACHER` = 0.05 oracle score on the eval prompts | DNO-Prct learns from a stronger teacher (Rosset et al., Sec. 5.1); needed by D1-D6 |
# | GF | gate | the margin rule drops more than `GATE_FILTER` = 0.1 of the round-1 (best, worst) pairs | ours: needed by D5 |
# | D1 | headline | DNO's last round beats the SFT model | Rosset et al., Table 1, Fig. 2 |
# | D2 | headline | DNO's oracle score rises in every iteration (by `DELTA_ROUND` = 0.01; the worst round is reported) | Rosset et al., Fig. 2 (Table 4's LC dips once) |
# | D3 | headline | DNO beats offline DPO on as many pairs (the SFT model's samples + teacher, as many steps) | Rosset et al., Table 1 |
# | D4 | headline | DNO passes its teacher | Rosset et al., Table 2 (annotator scores on training prompts) |
# | D5 | secondary | the margin filter helps inside the loop: DNO beats DNO without it | Rosset et al., Sec. 5.2 (shown for offline DPO only) |
# | D6 | secondary | the teacher's response helps: DNO beats iterative DPO on its own samples | — (our control) |
# | D7 | headline | APO (weight extrapolation, α = 0.3) beats iterative DPO at the last round | He, Yuan, Gu, Sec. 5 |
# | D8 | headline | APO needs fewer rounds: APO at round T - 1 is not worse than iterative DPO at round T (margin 0.02) | He, Yuan, Gu, abstract, Sec. 4 |
# | GE-A | gate | the pairwise reward model beats chance on held-out pairs: accuracy against the rater's majority above 0.5 | needed by E1-E6 |
# | GE-B | gate | the BT reward model beats chance on the same held-out pairs | needed by E1-E4, E6 |
# | GE-RLa | gate | RL with the pairwise anchored reward raises that reward on held-out prompts (the loop works) | needed by E1, E2, E5, E6 |
# | GE-RLb | gate | RL with the BT reward raises that reward on held-out prompts | needed by E1, E2, E6 |
# | E1 | headline | RL rewarded by the pairwise model's preference over an anchor reaches a higher oracle score than RL with a BT reward | Xu et al., abstract (Pairwise-RL outperforms traditional RLHF) |
# | E2 | secondary | RL with the pairwise reward hacks its reward model less: a smaller gap between reward-model win-rate gain and oracle win-rate gain (against the anchor) than with BT | ours (the paper's calibration argument, measured as reward hacking) |
# | E3 | secondary | the pairwise reward model is more accurate than BT on the same held-out pairs | Xu et al., abstract ("reward model performance") |
# | E4 | secondary | the pairwise reward model is better calibrated (lower ECE, `pw_bins` equal-width bins) than BT on the same held-out pairs | Xu et al., abstract ("score calibration") |
# | E5 | secondary | RL with the pairwise anchored reward raises the oracle score over the SFT model | Xu et al., abstract (improved alignment) |
# | E6 | secondary | on the RL policies' own samples against the anchor (a shifted distribution), the pairwise reward model agrees with the rater more often than BT | ours (the paper's argument that a relative judgement is robust to distribution shift) |
#
# **Where the toy world makes an effect hold by construction.** A BT model cannot represent a preference cycle, so in
# a cyclic rater world the gap between GPM and BT is guaranteed to exist for the *exact* preferences; what the claims
# test is whether it shows up from finitely many sampled comparisons, and every such claim has a transitive control
# (A3, A6, B4) where it must vanish. In Part C, DPO's optimum is computed exactly, so the APO claims test the
# optimisation scheme alone, not sampling.
#
# ## Departures from the papers and the official code
#
# | what | why | expected effect |
# |---|---|---|
# | A: tabular GPM = one free embedding per response (k = ⌊n/2⌋ blocks), fitted by full-batch L-BFGS with a small ridge; no unit-norm constraint and no prompt eigenvalue gate | a fixed set of responses has no encoder; ⌊n/2⌋ blocks express any skew-symmetric preference over n responses. The paper's GPO reward models were also trained without gate and normalisation ("no_moe_no_l2") | the tabular fit tests the score's expressiveness, not the paper's encoder |
# | A: τ = 1 in the tabular fits and both heads (the paper's β = τ = 0.1) | for free embeddings and unnormalised linear heads τ only rescales the parameters (up to the ridge / step size) | none beyond optimisation speed |
# | A: cyclic preferences come from rater groups (a weighted mixture of transitive rankings) whose *majority* cycles, with sampled labels; the paper manufactures each cycle by judging each edge with a different UltraFeedback criterion | the rater-group world has an exact P for every pair, so agreement with the true majority and held-out likelihoods are measurable | labels are noisy (P between 0.55 and 0.8), so no model reaches 100% on labels; we measure agreement with the exact majority instead |
# | A: evaluation on held-out comparisons (tabular) and held-out prompts (LM states); the paper's cyclic accuracy is on its training instances | a stricter test of the same claim | GPM's numbers can only be lower than a training-set score |
# | A: LM states from a ~0.5M-parameter toy SFT model, frozen, with a linear head (bias on for the GPM head, standardised inputs), fitted by full-batch AdamW (500 steps, lr 0.05); the paper fine-tunes Gemma-2B / Llama-3.1-8B with the value head | the toy profile; a frozen base isolates what the head can express from what fine-tuning would add | effects depend on what the toy states encode (length, yes; correctness, hardly) |
# | A: the LM-state world's groups rank three length levels (terciles of the training responses) in Condorcet's pattern, or in the transitive control's; pairs are any two responses, answers to different prompts included | the frozen states encode length well but two samples for the same prompt rarely differ in length level | the comparison is of (prompt, response) items, as a joint preference; GPM's head still reads one response at a time |
# | A: k = 1 block (embedding size 2) for the LM head; the paper uses 2-8 | three levels need one block; more blocks overfit at our data size (dev seed 100: k = 2 lost accuracy) | none for the claims |
# | B: a tabular policy over n = 5 (3 on the 3-cycle) fixed responses; GPO's squared loss (Eq. 5.3) solved exactly by its zero-loss point, the multiplicative-weights step π_{t+1} ∝ π_t exp(s(y ≻ π_t)/β) with the true normaliser Z_t | the smallest setting with a mixed Minimax Winner, where exploitability is exact; the paper trains an LLM on the loss with log Z set to 0, which a normalised tabular policy cannot follow | no approximation error from the policy class; the paper's App. B reading of the loss, not its practical regression |
# | B: GPO plays the fitted log-odds s/τ (τ = 1, embeddings unnormalised, no prompt gate), not the code's 2s or a β = 0.1-scaled score | in a tabular world the score's scale only rescales β; the log-odds make β comparable across worlds | none beyond a rescaled β |
# | B: β = 70 ≈ √T for T = 5000 iterations (Theorem 5.1's β = Θ(√T)), not the script's β = 0.001 over 3 iterations | the theorem's regime, where the average iterate provably approaches the Minimax Winner | the average carries an optimisation floor of about 0.005 exploitability (measured on the exact fitted P̂) |
# | B: K = 5 opponents sampled from π_t per iteration (Eq. 5.2) and every response scored against them; the script instead trains on the (argmax, argmin) pair of 5 samples | every response's score is available in a tabular world | a noisier but unbiased step; the exact expectation (K → ∞) is the tested limit |
# | B: the GPM is fitted by full-batch L-BFGS (60 iterations, ridge 1e-3) to uniformly drawn pairs, each judged once, with k = 2 blocks (any skew-symmetric score over 5 responses) | the tabular counterpart of the paper's reward-model training (Part A) | the fit converges; the paper's 2-8 dimensional heads are the same family |
# | B: comparisons are the only budget: GPO and BT + RL are fitted to the same comparisons (the same random draws); SPO spends its budget on its own samples, capped at max/4 iterations | equal budgets of the same judgement; the cap binds only where SPO has settled on one response and stops asking | BT + RL and GPO differ only in the model and the policy step |
# | B: cyclic worlds are redrawn until the majority has no Condorcet winner (mixed Minimax Winner) | with a Condorcet winner above the cycle a reward model's argmax is already unbeatable, so the comparison would be empty by construction | B1 measures worlds where the methods can differ; the Bradley-Terry and transitive worlds are the controls |
# | B: Bradley-Terry worlds (P = σ(r_i − r_j), r ~ N(0, 1)) and random transitive rater groups as controls; exploitability against the exact P | not in the paper (which reports accuracy and AlpacaEval win rates) | mechanism checks and a control where GPO's advantage must vanish |
# | C: a tabular bandit (64 prompts × 8 responses, r* ~ N(0, 1), π_ref = softmax of N(0, 1) logits) with a Bradley-Terry rater, suboptimality measured exactly | the smallest setting where each round's DPO optimum is exact and Assumption 4.2 (realizability) holds, so only APO's extrapolation differs between arms; the paper fine-tunes Mistral-7B-Instruct and scores AlpacaEval 2.0 win rates | the claims test the algorithm and Theorems 4.1/4.4, not the LLM numbers; win-rate sizes cannot carry over |
# | C: each round's DPO fit is its exact optimum (Newton on the convex objective in the implicit reward), not a few epochs of RMSProp | isolates the proximal-point structure the theory assumes | no optimisation error inside a round; the paper's runs have it |
# | C: a ridge (1/2)·‖h − mean h‖² (`apo_ridge` = 1) on the centred implicit reward h = β log π/π_t in every round's fit | without it the optimum is infinite whenever a response wins (or loses) all of its few comparisons | shrinks each round's recovered reward toward 0: on the development seed a sampled round of iterative DPO was worth about half an exact round; it slows every α alike and is part of the "statistical error" the claims see |
# | C: comparisons are pairs of independent draws from π_t (32 per prompt and round), each labelled by the Bradley-Terry rater; identical pairs carry no information | the theory's data model (Algorithm 1, line 4, Eq. 2.1); the paper's experiments sample 5 responses and keep PairRM's best vs worst | fewer informative comparisons as π_t concentrates (the coverage coefficient κ_t of Thm 4.4 grows) |
# | C: the extrapolation is exact in log-probability space (Eq. 3.7), the extrapolated policy is the next reference *and* sampler, the output is π̂_T | Algorithm 1 as written; the paper's LLM runs extrapolate in parameter space as an approximation (Sec. 5.2) | — |
# | C: one constant β = 2 for every round | Theorems 4.1-4.8 assume a constant β; the paper's runs use β = 0.01, 0.1, 1.0 in iterations 1-3 (App. F.1). β = 2 chosen on dev seed 100 from population curves only (see Part C) | — |
# | C: C3 measures the rate as "equivalent exact rounds" (the population iterative-DPO round count with the same mean suboptimality) and its slope over rounds 1-10 | turns Theorem 4.1's prediction (S_α(T) ≈ T/(1 − α)) into one comparable number per seed; Theorem 4.4 itself is an upper bound with unstated constants | — |
# | Part D: a 0.5M-parameter Llama on the string world, the SFT model as the student, 3 rounds of 40 steps x 32 pairs on 256 fresh prompts each, lr 1e-4, η = β = 0.1 | a CPU budget; the paper trains Orca-2.5 (7B) on UltraFeedback thirds, one epoch per round, batch 64, lr 5e-5 | smaller, shorter rounds: effects are smaller than the paper's |
# | Part D: the teacher is the world's gold answer written with a slip per step with probability 0.35 | GPT-4-Turbo's role: better than the student, not perfect, so it can be passed | the teacher's score sets how far DNO can learn from it; D4 asks the student to pass it |
# | Part D: the annotator is the oracle score plus Gaussian noise (std 0.05) mapped to the 1-6 scale, one score per response | GPT-4-Turbo scores the samples side by side on a 6-point additive scale (Sec. 5.1) | a transitive, nearly exact judge: the toy tests DNO's practical loop, not its advantage on intransitive preferences |
# | Part D: one pair per prompt, (best, worst) by judge score (ties broken at random), kept when the best scores >= 5 and the worst >= 2 points lower (1 point when the best is a student sample) | the issue's description; Sec. 5.1 keeps *every* pair that passes the rule | fewer pairs per prompt than the paper; the pair kept is the one with the largest margin |
# | Part D: no replay of earlier rounds' pairs, no automatic negatives for repeated n-grams, the last iterate is evaluated | the paper replays 30%/15%/... of older pairs, marks repetitive samples as negatives and returns the best iterate on validation data | the last iterate may be worse than the best one; without replay a round may forget |
# | Part D: K = 4 samples (+ the teacher's) at temperature 1 | the paper: 5 samples, top-p 0.95, temperature 0.7 | fewer candidates per prompt, more diverse ones |
# | Part D: offline DPO = the SFT model's samples + teacher on all rounds' prompts, judged and filtered by DNO's rule, subsampled to DNO's total number of pairs, trained as many steps | the paper's offline DPO trains 4 epochs on UltraFeedback's own pairs; its equal-pairs arm (Lookahead) pools the on-policy pairs | D3 isolates on-policy sampling: the same labelling, teacher and pair count, only the sampler differs |
# | Part D: "DNO without the margin filter" keeps (best, worst) whenever the best scores higher; "iterative DPO" is DNO without the teacher's response | ablations of ours (the paper filters by margin only in offline DPO, Sec. 5.2) | D5 and D6 test each ingredient inside the loop |
# | Part D: APO extrapolates all weights (Eq. 3.7) after every round, from θ̂_1 = θ_1 (round 1 already extrapolates), and evaluates the extrapolated θ_{t+1} | the brief of Eq. 3.7; the paper's handling of round 1 and of which iterate it reports were not read | round 1's extrapolation is a plain step of size 1 + α from the SFT model |
# | Part D: the APO arm is iterative DPO without a teacher + momentum (α = 0.3) | APO's experiments extrapolate iterative DPO; the loop's older "extrapolated" reference rule is our log-prob reading, not used here | D7/D8 compare APO with its own α = 0 arm |
# | E: the pairwise reward model is a small MLP on frozen features of both responses (the SFT model's last hidden state at the response's final token, its mean and summed log-probability), not a generative LLM judge fine-tuned to answer which response is better | a tiny string-world model cannot be fine-tuned into a judge within the time budget; both reward models then read exactly the same features and differ only in pointwise vs pairwise form | tests the pairwise form, not generative reward modelling: the paper's argument that a generative RM suits a generative initialisation is not tested |
# | E: the head is not antisymmetric (it reads the pair in order, `pw_antisymmetric = False`) and is trained on every pair in both orders | a judge that reads "A vs B" has no built-in P(a ≻ b) + P(b ≻ a) = 1; the anchored reward averages both orders | any order inconsistency the head keeps is cancelled by the reward's averaging |
# | E: the anchored reward ½[P(y ≻ a) + 1 − P(a ≻ y)] (both orders averaged) | ours: the abstract names an anchor-based pairwise reward but gives no formula | — |
# | E: the anchor is the SFT model's greedy response to the prompt | the paper's anchor (a reference answer, per a third-party summary; not verified) does not exist in our world without using the oracle | the anchor is about as good as the policy at the start, so early rewards sit near ½ |
# | E: RLOO with a KL penalty in the reward (β = `pw_beta`), `pw_rl_steps` steps, K = `pw_k` samples for `pw_batch` prompts, instead of (pairwise) PPO with a critic | prefkit's RL step; PPO's critic and clipping are outside this toy's budget | the comparison of rewards is under the same optimiser; absolute gains differ from PPO's |
# | E: the BT arm is rewarded by σ(r(y) − r(a)), the BT probability of beating the same anchor, not by r(y) itself | puts both arms' rewards on the same [0, 1] scale, so β and the learning rate mean the same for both; for each prompt a monotone function of r(y) | the BT reward saturates for samples far from the anchor, which a raw r(y) would not |
# | E: labels come from the string world's simulated rater (P = σ(Δscore / 0.1)); reward models are tested against the rater's majority (accuracy) and the rater's probability (ECE) | an exact rater makes both measurable without label noise; ECE with sampled labels is also recorded (`ece_hard`) | the accuracy ceiling is 1, not human agreement (~0.7) |
# | E: the SFT base is shared by all seeds; a seed draws the labelled pairs, the reward models' initialisation and split, the RL samples and the evaluation samples | one SFT base is affordable | seed-to-seed spread understates variation from the base |

# %% tags=["parameters"]
seed = 0  # first seed; seeds are seed, seed + 1, ...
n_seeds = 3  # seeds per claim
smoke = False  # True: a < 90 s run on 2 CPU cores that checks the pipeline and the claims meaningful at that size
profile = "toy"  # "toy" (offline worlds with an oracle) or "hf" (a Hugging Face causal LM, 4-bit + LoRA)
model_name = ""  # hf profile: model id or local folder
quantize = "4bit"  # hf profile: "4bit" or "none"
dataset = ""  # hf profile: .json/.jsonl (or hub id) with prompt/chosen/rejected columns
reward_model = ""  # hf profile: a sequence-classification reward model (id or folder) that judges DNO's samples
device = "auto"  # "auto", "cpu" or "cuda"
out_dir = "../reproductions/general_preferences"  # where figures and result.json go
lora_r = 8  # hf profile: LoRA rank
lora_lr = 1e-4  # hf profile: LoRA learning rate
hf_rounds = 2  # hf profile: DNO rounds
hf_k = 4  # hf profile: samples per prompt in a DNO round
hf_gap = 1.0  # hf profile: reward-model score gap a DNO pair needs (teacher best; half that when a sample is best)
gpm_comparisons = 300  # Part A tabular: sampled rater comparisons per world (fit), and as many held out
gpm_random_worlds = 10  # Part A tabular: random rater worlds of each kind (cyclic, transitive) per seed
gpm_random_n = 5  # Part A tabular: responses (and rater groups) in each random world
gpm_large_n = 8  # Part A tabular: responses (and rater groups) in the larger cyclic worlds of A4
gpm_large_comparisons = (
    1000  # Part A tabular: comparisons per larger world (36 per pair of responses, as 300 give 30 at n: 5)
)
gpm_prompts = 1500  # Part A string world: fresh prompts per seed, two sampled responses each
gpm_train_pairs = 8000  # Part A string world: labelled training pairs per world
gpm_test_pairs = 4000  # Part A string world: held-out pairs per world (drawn among held-out prompts)
gpm_head_dim = 2  # Part A string world: GPM head embedding size 2k (one block)
gpm_head_steps = 500  # Part A string world: full-batch AdamW steps of both heads
gpm_head_lr = 0.05  # Part A string world: AdamW learning rate of both heads
gpm_triples = 1000  # Part A string world: held-out triples (one response of each length level) for A8
gpo_responses = 5  # Part B: responses per random rater world (cycles need ≥ 3; 5 leaves room for 3- to 5-cycles)
gpo_groups = 3  # Part B: rater groups per random world (Dirichlet(1) weights, uniformly random rankings)
gpo_worlds = 6  # Part B: random worlds of each kind per seed (and runs on the fixed 3-cycle): the units of the claims
gpo_bt_scale = 1.0  # Part B: standard deviation of the rewards of the Bradley-Terry worlds (gate GB)
gpo_k = 2  # Part B: GPM blocks; 4 dimensions (2k) express any skew-symmetric score over 5 responses (rank ≤ 4)
gpo_tau = 1.0  # Part B: GPM temperature, P: σ(s / τ) (the fit's scale is free; GPO then plays the log-odds s / τ)
gpo_l2 = 1e-3  # Part B: ridge on the embeddings (fit_preference_embeddings' default)
gpo_max_iter = (
    60  # Part B: L-BFGS iterations of the GPM fit (converged on the development worlds; 100+ changes nothing)
)
gpo_iterations = 5000  # Part B: GPO self-play iterations T
gpo_beta = 70.0  # Part B: GPO β ≈ √T (Theorem 5.1 takes β ~ √T); the step on the log-odds is 1/β
gpo_samples = 5  # Part B: K opponents sampled from π_t per iteration (Eq. 5.2; the paper's GPO script samples 5)
gpo_bt_alpha = 0.05  # Part B: KL weight α of Bradley-Terry + RL, π ∝ π_ref exp(r / α) (as in 06_spo)
gpo_spo_batch = 8  # Part B: SPO samples per iteration, every pair compared (as in 06_spo)
gpo_spo_lr = 0.3  # Part B: SPO's REINFORCE step size (as in 06_spo)
gpo_budget = 3000  # Part B: comparisons at which the claims compare the methods
gpo_max_comparisons = 10000  # Part B: largest budget of rater comparisons
apo_beta = 2.0  # Part C: DPO β of every round (chosen on dev seed 100 from population curves; see Part C)
apo_alpha = 0.3  # Part C: APO's extrapolation α (the paper's LLM setting, Sec. 5 and App. F.1)
apo_alpha_high = 0.6  # Part C: the larger α of the paper's ablation (Table 3)
apo_prompts = 64  # Part C: prompts of the tabular bandit (the paired units of the claims)
apo_responses = 8  # Part C: responses per prompt
apo_pairs = 32  # Part C: comparisons sampled per prompt and round from the current sampler π_t
apo_ridge = 1.0  # Part C: ridge on the centred implicit reward in each round's DPO fit (keeps the optimum finite)
apo_rounds = 10  # Part C: rounds T of Algorithm 1
apo_eval_round = 3  # Part C: the round the claims compare at (the paper's 3 iterations, Table 1)
dno_k = 4  # Part D: responses sampled per prompt from π_t (the paper: 5, plus the teacher's)
dno_rounds = 3  # Part D: DNO iterations (the paper's Table 1: 3)
dno_prompts_per_round = 256  # Part D: a fresh split of training prompts each round (the paper: a disjoint third each)
dno_steps = 40  # Part D: training steps per round (every arm: the same steps per round)
dno_batch_size = 32  # Part D: pairs per step
dno_lr = 1e-4  # Part D: AdamW learning rate for the toy model (as in 01_dpo and 07_osp)
dno_beta = 0.1  # Part D: η of DNO-Prct's DPO step, β (the paper: 0.1 or 0.05)
dno_teacher_noise = 0.35  # Part D: the teacher writes the gold answer with a slip per step with this probability
dno_judge_noise = 0.05  # Part D: noise (std) added to the oracle score before the judge maps it to its 1-6 scale
dno_min_positive = 5  # Part D: a pair's positive must score at least 5 of 6 (the paper, Sec. 5.1)
dno_gap = 2  # Part D: points between positive and negative when the positive is the teacher's (Sec. 5.1)
dno_gap_student = 1  # Part D: points between them when the positive is a student sample (Sec. 5.1)
dno_apo_alpha = 0.3  # Part D: APO's extrapolation α (He, Yuan, Gu: 0.3 in the LLM experiments)
dno_eval_prompts = 384  # Part D: held-out prompts, one sample each, the same draws every round
pw_n_prompts = 1000  # Part E: training prompts; 4 SFT samples each give 2 rater-labelled pairs
pw_val_frac = 0.15  # Part E: share of those prompts held out for early stopping of both reward models
pw_hidden = 64  # Part E: hidden width of both reward-model MLPs (pairwise head and BT reward)
pw_antisymmetric = False  # Part E: False: the pairwise head reads the pair in order, like a judge (see part text)
pw_rm_lr = 3e-3  # Part E: AdamW learning rate of both reward models (full batch)
pw_rm_steps = 2000  # Part E: most steps per reward model; early stopping usually ends sooner
pw_patience = 20  # Part E: evaluations (every 10 steps) without a better validation loss before stopping
pw_rl_steps = 60  # Part E: RLOO steps per arm
pw_k = 4  # Part E: samples per prompt in an RLOO step
pw_batch = 16  # Part E: prompts per RLOO step
pw_beta = 0.05  # Part E: KL coefficient β in the RLOO reward (TRL's RLOO default)
pw_lr = 3e-4  # Part E: AdamW learning rate of the policy in RL
pw_n_eval = 256  # Part E: eval prompts (held out) for the policies and reward-model pairs
pw_eval_samples = 2  # Part E: samples per eval prompt at the start and end of RL
pw_bins = 10  # Part E: equal-width bins for ECE and reliability diagrams
pw_n_rm_eval = 256  # Part E: eval prompts whose SFT samples (2 pairs each) test the reward models

# %% tags=["install"]
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

if importlib.util.find_spec("prefkit") is None:  # a kernel without prefkit (e.g. Colab): install it first
    clone = next((d for d in (Path.cwd(), *Path.cwd().parents) if (d / "prefkit" / "__init__.py").is_file()), None)
    source = os.environ.get("PREFKIT_SOURCE") or (clone and str(clone))  # see the README, "Colab"
    if not source:
        raise RuntimeError(
            "prefkit is not installed and this notebook is not inside a prefkit clone, so it cannot tell where to "
            "install prefkit from: set PREFKIT_SOURCE to a pip source, e.g. run "
            "os.environ['PREFKIT_SOURCE'] = 'git+https://github.com/<owner>/<repo>' (or a clone's path), then this cell"
        )
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", source])
    importlib.invalidate_caches()

# %%
import inspect
import os
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from IPython.display import display

from prefkit import plot
from prefkit.models import TinyLlamaConfig, resolve_device
from prefkit.repro import claims_table, compare, gate, per_seed, seed_everything, torch_threads, write_result
from prefkit.toy import ToyBaseConfig, describe, sft_base
from prefkit.worlds import StringWorld

torch.set_num_threads(torch_threads())
dev = resolve_device(device)
if smoke:  # a quick pass over every cell: fewer seeds and smaller sizes in each part (see the claims section)
    n_seeds = 1 if profile == "hf" else 2
seeds = list(range(seed, seed + n_seeds))
out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)
seed_everything(seed)
figures, claims = [], []
print(f"profile={profile} smoke={smoke} device={dev} seeds={seeds}")

# %% [markdown]
# ## The string world and its SFT model (Parts A, D and E)
#
# As in `01_dpo`: prompts ask for a word-level transformation of a string in steps; the oracle scores a response by
# its steps' correctness; a ~0.5M-parameter Llama is trained from scratch on noisy demonstrations (the SFT model,
# cached on disk). Parts A (LM states), D and E start from it.

# %%
if profile == "toy":
    world = StringWorld(seed=0, n_train=400 if smoke else 2000, n_eval=64 if smoke else 512)
    tok = world.tokenizer
    base_cfg = ToyBaseConfig(steps=150 if smoke else 800, model=TinyLlamaConfig())
    base = sft_base(world, base_cfg).to(dev)
    print(describe(base))

# %% [markdown]
# ## Part A. General preference embeddings (GPM) against Bradley-Terry
#
# Zhang, Zhang, Wu, Xu, Gu 2025, "Beyond Bradley-Terry Models: A General Preference Model for Language Model
# Alignment" ([arXiv:2410.02197](https://arxiv.org/abs/2410.02197), ICML 2025). A Bradley-Terry (BT) reward model
# gives each response one number, $P(y_i \succ y_j) = \sigma(r_i - r_j)$, and can only express transitive
# preferences. GPM gives each response an embedding $v_y \in \mathbb{R}^{2k}$ and scores a pair with a
# skew-symmetric form (Def. 4.1-4.2, Eq. 4.1, Eq. 3.1):
#
# $$s(y_i \succ y_j) = \langle R\, v_i, v_j \rangle = v_i^\top R^\top v_j, \qquad
# R = \operatorname{blockdiag}\Big(\begin{bmatrix} 0 & -1 \\ 1 & 0 \end{bmatrix}, \dots\Big), \qquad
# P(y_i \succ y_j) = \sigma\big(s(y_i \succ y_j) / \tau\big),$$
#
# trained by the cross-entropy of App. A.2 (Eq. A.1). Since $s(y_i \succ y_j) = -s(y_j \succ y_i)$,
# $P(y_i \succ y_j) + P(y_j \succ y_i) = 1$ for any embeddings, and with $k = 1$ three vectors at 120° fit a 3-cycle.
#
# The paper's cyclic preference sets (Table 1) are built from UltraFeedback by judging each edge of a triple by a
# different criterion; it reports GPM at 100% and BT at 50.0-62.9%, and says any BT reward model "behaves like a
# random guess" on cyclic preferences. **The exact ceiling is 2 of 3 pairs**: any reward orders the three responses,
# and a cyclic majority disagrees with any order on at least one pair, while some order agrees on two
# (`tests/test_feature_raters.py`; the paper's own BT numbers sit near 2/3 on three of its four sets). This is true
# by construction, so it is a unit test, not a claim; the claims below measure how much of it shows up in fitted
# models, on held-out comparisons.
#
# **Where the toy makes the effect hold by construction.** In the cyclic worlds below BT *cannot* represent the
# majority (A1, A2, A5 and A8 measure a gap that exists by construction; what is tested is whether GPM, fitted to
# sampled labels, recovers it and how much BT loses). Each has a transitive control where the gap must vanish
# (A3 for the tabular worlds, A6 for LM states).
#
# Two settings. (1) Tabular: the rater-group world of `06_spo` (one embedding per response, `fit_preference_embeddings`,
# against `fit_bradley_terry` on the same comparisons). (2) LM states: rater groups over string-world responses
# keyed to the responses' length (`FeatureRaters`: short, medium and long answers, Condorcet's groups or a
# transitive control), a linear BT head and a linear GPM head (`fit_head`) on the frozen SFT model's last hidden
# state, fitted to the same labelled pairs.

# %%
from prefkit.gpm import (
    fit_head,
    fit_preference_embeddings,
    head_prob,
    preference_matrix,
    random_rater_groups,
    response_features,
)
from prefkit.losses.scorer import gpm_loss, gpm_score
from prefkit.selfplay import fit_bradley_terry
from prefkit.worlds.feature_raters import FeatureRaters
from prefkit.worlds.raters import RaterGroups

print(inspect.getsource(gpm_score))
print(inspect.getsource(gpm_loss))
print(inspect.getsource(fit_preference_embeddings))
print(inspect.getsource(FeatureRaters.prob))

if smoke:
    gpm_comparisons, gpm_large_comparisons, gpm_random_worlds = 100, 300, min(gpm_random_worlds, 2)
    gpm_prompts, gpm_train_pairs, gpm_test_pairs, gpm_head_steps = 150, 600, 300, min(gpm_head_steps, 80)
    gpm_triples = 100
# claim sizes, fixed before any reported run
GPM_GATE_AGREE = 0.75  # GA: GPM's agreement with the cyclic majorities (fitted P vs exact P) must beat 3/4 (chance 1/2)
GPM_DELTA_AGREE = 0.05  # A1: 5 points of majority pairs, half of one pair in a 5-response world's 10
GPM_MARGIN_AGREE = 0.05  # A3: non-inferiority, the same 5 points
GPM_DELTA_LL = 0.02  # A2: nats per held-out comparison; 0.02 nats is 1/35 of ln 2, a visible calibration gain
GPM_DELTA_LL_LARGE = 0.01  # A4: smaller, the majority in larger worlds is mostly transitive
GPM_GATE_BT = 0.70  # GA2: BT head's held-out accuracy on the transitive LM world (chance 1/2)
GPM_GATE_GAP = 0.02  # GA3: GPM - BT held-out accuracy floor on the cyclic LM world (set before the run, not lowered)
GPM_DELTA_ACC = 0.05  # A5: 5 points of held-out majority accuracy, the size a reward-model reader acts on
GPM_MARGIN_ACC = 0.03  # A6: non-inferiority of GPM's accuracy on the transitive control
GPM_DELTA_LL_LM = 0.01  # A7: nats per held-out label
GPM_DELTA_TRIPLES = 0.10  # A8: a tenth of held-out triples predicted as the full cycle (BT: 0 by construction)

# %% [markdown]
# ### A (1). Tabular: the rater-group worlds
#
# Per seed: the 3-response Condorcet world of `06_spo` and `gpm_random_worlds` random worlds of `gpm_random_n`
# responses with uniformly random group rankings and Dirichlet weights, drawn until their majority cycles
# (`random_rater_groups(..., transitive=False)`); as controls, the transitive 3-response world and as many random
# worlds whose majority is transitive; for A4, `gpm_random_worlds / 2` cyclic worlds of `gpm_large_n` responses.
# Each world gets `gpm_comparisons` (the larger ones `gpm_large_comparisons`, about as many per pair of responses as
# the 5-response worlds get) sampled comparisons of uniformly drawn distinct pairs (the fit) and as many more (held
# out, for log-likelihoods). BT and GPM ($k = \lfloor n/2 \rfloor$
# blocks, enough for any skew-symmetric preference over n responses) are fitted to the same rows. A unit is an
# unordered pair of a world: does the model's $P > 1/2$ follow the exact majority?


# %%
def gpm_rows(world, m, rng):
    """m comparisons (i, j, y) of uniformly drawn distinct pairs, each judged by one sampled rater."""
    i = rng.integers(world.n, size=m)
    j = (i + rng.integers(1, world.n, size=m)) % world.n
    return np.c_[i, j, [world.compare(int(a), int(b), rng) for a, b in zip(i, j)]]


def gpm_fit_both(world, rng, seed_, m):
    rows, held = gpm_rows(world, m, rng), gpm_rows(world, m, rng)
    r = fit_bradley_terry(rows, world.n)
    models = {"BT": 1 / (1 + np.exp(-(r[:, None] - r[None, :]))),
              "GPM": preference_matrix(fit_preference_embeddings(rows, world.n, k=world.n // 2, seed=seed_))}  # fmt: skip
    exact, iu = world.preference_matrix(), np.triu_indices(world.n, 1)
    i, j, y = held[:, 0].astype(int), held[:, 1].astype(int), held[:, 2]
    out = {}
    for name, P in models.items():
        out[name] = {"agree": ((P[iu] > 0.5) == (exact[iu] > 0.5)).astype(float),
                     "ll": y * np.log(P[i, j]) + (1 - y) * np.log(1 - P[i, j])}  # fmt: skip
    return out, models


if profile == "toy":
    gpm_tab = {}  # (kind, seed) -> {"BT"/"GPM": {"agree": units, "ll": units}}
    for s in seeds:
        rng = np.random.default_rng(s)
        worlds_ = {"3-cycle": [RaterGroups.cyclic()], "3-transitive": [RaterGroups.transitive()],
                   f"random cyclic (n={gpm_random_n})": [random_rater_groups(gpm_random_n, gpm_random_n, rng, False)
                                                         for _ in range(gpm_random_worlds)],
                   f"random transitive (n={gpm_random_n})": [random_rater_groups(gpm_random_n, gpm_random_n, rng, True)
                                                             for _ in range(gpm_random_worlds)],
                   f"random cyclic (n={gpm_large_n})": [random_rater_groups(gpm_large_n, gpm_large_n, rng, False)
                                                        for _ in range(max(1, gpm_random_worlds // 2))]}  # fmt: skip
        for kind, ws in worlds_.items():
            m = gpm_large_comparisons if f"n={gpm_large_n}" in kind else gpm_comparisons
            fits = [gpm_fit_both(w, rng, s, m)[0] for w in ws]
            gpm_tab[(kind, s)] = {m: {u: np.concatenate([f[m][u] for f in fits]) for u in ("agree", "ll")}
                                  for m in ("BT", "GPM")}  # fmt: skip
    gpm_tab_df = pd.DataFrame([{"world": k, "seed": s, "model": m, "agreement": v[m]["agree"].mean(),
                                "held-out log-lik": v[m]["ll"].mean()}
                               for (k, s), v in gpm_tab.items() for m in v])  # fmt: skip
    display(gpm_tab_df.groupby(["world", "model"])[["agreement", "held-out log-lik"]].mean().round(3))

# %% [markdown]
# The fitted 3-cycle: GPM's three embeddings (k = 1) sit at roughly 120° and each beats the one a third of a turn
# behind it, while BT's three scores order the responses and so get one pair wrong.

# %%
if profile == "toy":
    v3 = fit_preference_embeddings(gpm_rows(RaterGroups.cyclic(), gpm_comparisons, np.random.default_rng(seeds[0])),
                                   3, k=1, seed=seeds[0])  # fmt: skip
    fig, axes = plot.figure(2, width=4.0, height=3.4)
    kinds = list(dict.fromkeys(gpm_tab_df["world"]))
    means = gpm_tab_df.groupby(["world", "model"])["agreement"].mean()
    x = np.arange(len(kinds))
    for k, m in enumerate(("BT", "GPM")):
        axes[0].bar(x + (k - 0.5) * 0.38, [means[(w, m)] for w in kinds], 0.38, label=m, color=plot.PALETTE[k])
    axes[0].axhline(2 / 3, color="k", lw=0.8, ls=":", label="BT ceiling on a 3-cycle")
    axes[0].set_xticks(x, [w.replace(" ", "\n") for w in kinds], fontsize=6)
    axes[0].set_ylabel("agreement with the exact majority")
    axes[0].set_ylim(0, 1.25)
    axes[0].legend(fontsize=6, loc="upper left", ncol=3)
    axes[0].set_title("tabular worlds")
    for i, name in enumerate(RaterGroups.cyclic().names):
        axes[1].annotate("", xy=v3[i], xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": plot.PALETTE[i]})
        axes[1].text(*(1.1 * v3[i]), name, color=plot.PALETTE[i])
    lim = 1.3 * np.abs(v3).max()
    axes[1].set_xlim(-lim, lim)
    axes[1].set_ylim(-lim, lim)
    axes[1].set_aspect("equal")
    axes[1].set_title("GPM embeddings of the 3-cycle (k = 1)")
    fig.tight_layout()
    figures.append(plot.save(fig, out, "gpm_tabular.png"))

# %% [markdown]
# ### A (2). LM states: rater groups keyed to the response's length
#
# Per seed: `gpm_prompts` fresh prompts, two responses each sampled from the SFT base, and the base's last hidden
# state at each response's final token (`response_features`, frozen). Prompts are split 70/30; the length cut
# points (terciles) come from the training responses. A pair is any two responses of one split, answers to
# different prompts included (a rater judges two answers, each to its own prompt); `gpm_train_pairs` labelled pairs
# train both heads, `gpm_test_pairs` held-out pairs evaluate them. A unit is a held-out pair whose two responses
# differ in level (the others are exact ties): is the head's $P > 1/2$ on the majority's side? Both heads read the
# same standardised states: BT a linear reward, GPM a linear map to $\mathbb{R}^{2}$ (with a bias, see `fit_head`).

# %%
from prefkit.generate import sample

if profile == "toy":
    gpm_lm, gpm_levels = {}, {}  # (world, seed) -> {"BT"/"GPM": {"acc", "ll"}}; (seed, model) -> cyclic triples
    for s in seeds:
        prompts = world.fresh_prompts(gpm_prompts, seed=1000 + s)
        resp = sample(base, tok, prompts, n=2, seed=s, progress=False)
        feats = response_features(base, tok, prompts, resp).reshape(-1, base.config.hidden_size).double()
        ys = [y for r in resp for y in r]
        pid = np.repeat(np.arange(len(prompts)), 2)
        train_i, test_i = np.flatnonzero(pid < 0.7 * len(prompts)), np.flatnonzero(pid >= 0.7 * len(prompts))
        feats = (feats - feats[train_i].mean(0)) / (feats[train_i].std(0) + 1e-6)
        rng = np.random.default_rng(s)
        for wname, transitive in (("cyclic", False), ("transitive", True)):
            fr = FeatureRaters.make([ys[i] for i in train_i], transitive=transitive)
            a, b = rng.choice(train_i, gpm_train_pairs), rng.choice(train_i, gpm_train_pairs)
            y = fr.compare([ys[i] for i in a], [ys[i] for i in b], rng).astype(bool)
            ch, rj = torch.as_tensor(np.where(y, a, b)), torch.as_tensor(np.where(y, b, a))
            ta, tb = rng.choice(test_i, gpm_test_pairs), rng.choice(test_i, gpm_test_pairs)
            p_true = fr.prob([ys[i] for i in ta], [ys[i] for i in tb])
            strict, yt = p_true != 0.5, fr.compare([ys[i] for i in ta], [ys[i] for i in tb], rng)
            test_levels = fr.levels([ys[i] for i in test_i])  # held-out triples, one response per level (A8)
            tri = [torch.as_tensor(rng.choice(test_i[test_levels == lv], gpm_triples)) for lv in range(3)]
            gpm_lm[(wname, s)] = {}
            for mname, dim in (("BT", 1), ("GPM", gpm_head_dim)):
                head = fit_head(feats[ch], feats[rj], dim=dim, steps=gpm_head_steps, lr=gpm_head_lr, seed=s)
                p = head_prob(head, feats[torch.as_tensor(ta)], feats[torch.as_tensor(tb)]).numpy().clip(1e-6, 1 - 1e-6)
                gpm_lm[(wname, s)][mname] = {"acc": ((p > 0.5) == (p_true > 0.5))[strict].astype(float),
                                             "ll": yt * np.log(p) + (1 - yt) * np.log(1 - p)}  # fmt: skip
                if not transitive:  # is the whole cycle low > mid > high > low predicted on the triple?
                    cyc_ = [
                        head_prob(head, feats[tri[i]], feats[tri[j]]).numpy() > 0.5 for i, j in ((0, 1), (1, 2), (2, 0))
                    ]
                    gpm_levels[(s, mname)] = (cyc_[0] & cyc_[1] & cyc_[2]).astype(float)
    gpm_lm_df = pd.DataFrame([{"world": w, "seed": s, "model": m, "held-out accuracy": v[m]["acc"].mean(),
                               "held-out log-lik": v[m]["ll"].mean(),
                               "cyclic triples": gpm_levels[(s, m)].mean() if w == "cyclic" else np.nan}
                              for (w, s), v in gpm_lm.items() for m in v])  # fmt: skip
    display(gpm_lm_df.groupby(["world", "model"]).mean(numeric_only=True).drop(columns="seed").round(3))

# %%
if profile == "toy":
    fig, axes = plot.figure(1, width=4.4, height=3.2)
    acc = gpm_lm_df.groupby(["world", "model"])["held-out accuracy"]
    for k, m in enumerate(("BT", "GPM")):
        w = ["cyclic", "transitive"]
        axes[0].bar(np.arange(2) + (k - 0.5) * 0.38, [acc.mean()[(x, m)] for x in w], 0.38, label=m,
                    color=plot.PALETTE[k], yerr=[acc.std().fillna(0)[(x, m)] for x in w])  # fmt: skip
    axes[0].axhline(0.5, color="k", lw=0.8, ls=":")
    axes[0].set_xticks(np.arange(2), ["cyclic (length levels)", "transitive control"])
    axes[0].set_ylabel("held-out accuracy vs the majority")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7)
    axes[0].set_title("heads on frozen SFT states")
    fig.tight_layout()
    figures.append(plot.save(fig, out, "gpm_lm_heads.png"))

# %% [markdown]
# ### Part A claims
#
# Tabular claims take one unit per unordered pair of a world (agreement with the exact majority: A1, A3) or per
# held-out comparison (log-likelihood: A2, A4), pooled over a seed's worlds; LM-state claims one unit per held-out
# pair (accuracy on pairs of different levels: A5, A6; log-likelihood on all held-out labels: A7) or per held-out
# triple (A8). Hierarchical bootstrap over seeds, then units. Sizes (deltas, margins, gate thresholds) are the
# constants of the first cell, each with its reason; in smoke mode nothing in this part is asserted.

# %%
gpm_record = {}
if profile == "toy":
    tab = lambda kind, m, u: [gpm_tab[(kind, s)][m][u] for s in seeds]  # noqa: E731
    lm = lambda w, m, u: [gpm_lm[(w, s)][m][u] for s in seeds]  # noqa: E731
    rc, rt, lg = (f"random cyclic (n={gpm_random_n})", f"random transitive (n={gpm_random_n})",
                  f"random cyclic (n={gpm_large_n})")  # fmt: skip
    cyc = lambda m: [np.concatenate([gpm_tab[("3-cycle", s)][m]["agree"], gpm_tab[(rc, s)][m]["agree"]])  # noqa: E731
                     for s in seeds]  # fmt: skip
    trn = lambda m: [np.concatenate([gpm_tab[("3-transitive", s)][m]["agree"], gpm_tab[(rt, s)][m]["agree"]])  # noqa: E731
                     for s in seeds]  # fmt: skip
    paper_t1 = "Table 1 (cyclic preference sets: GPM 100%, BT 50.0-62.9%; BT 'behaves like a random guess')"
    claims.append(gate(
        "GA", "GPM fits the cyclic rater worlds: its preferences follow the exact majority", "agreement of GPM with "
        "the majority, unordered pairs of the 3-cycle and the random cyclic worlds", cyc("GPM"), GPM_GATE_AGREE,
        asserted=not smoke, paper="mechanism",
    ))  # fmt: skip
    claims.append(gate(
        "GA2", "a BT head learns the transitive length world from frozen SFT states", "BT head held-out accuracy vs "
        "the majority (transitive world, pairs of different levels)", lm("transitive", "BT", "acc"), GPM_GATE_BT,
        asserted=not smoke, paper="the baseline works where its model holds",
    ))  # fmt: skip
    claims.append(gate(
        "GA3", "the cycle is learnable from frozen SFT states: the GPM head beats the BT head on the cyclic world",
        "held-out accuracy: GPM head - BT head (cyclic length world)",
        [g - b for g, b in zip(lm("cyclic", "GPM", "acc"), lm("cyclic", "BT", "acc"))], GPM_GATE_GAP,
        asserted=not smoke, paper="mechanism (the features place the three levels apart)",
    ))  # fmt: skip
    claims.append(compare(
        "A1", "on cyclic rater worlds GPM follows the true majority on more pairs than BT fitted to the same "
        "comparisons", "agreement with the majority: GPM - BT (3-cycle + random cyclic worlds)", cyc("GPM"),
        cyc("BT"), delta=GPM_DELTA_AGREE, requires=["GA"], asserted=not smoke, paper=paper_t1,
    ))  # fmt: skip
    claims.append(compare(
        "A5", "on frozen LM states, a GPM head follows a cyclic majority on more held-out pairs than a BT head",
        "held-out accuracy: GPM head - BT head (cyclic length world)", lm("cyclic", "GPM", "acc"),
        lm("cyclic", "BT", "acc"), delta=GPM_DELTA_ACC, requires=["GA2", "GA3"], asserted=not smoke,
        paper=paper_t1 + "; GPM heads on LM states, Sec. 6",
    ))  # fmt: skip
    claims.append(compare(
        "A2", "3-cycle: GPM predicts held-out comparisons better than BT (BT can order at most 2 of the 3 pairs)",
        "held-out log-likelihood per comparison: GPM - BT (3-cycle)", tab("3-cycle", "GPM", "ll"),
        tab("3-cycle", "BT", "ll"), delta=GPM_DELTA_LL, kind="secondary", requires=["GA"], asserted=not smoke,
        paper=paper_t1,
    ))  # fmt: skip
    claims.append(compare(
        "A3", "transitive control: GPM follows the majority no worse than BT", "agreement with the majority: GPM - "
        "BT (3-transitive + random transitive worlds)", trn("GPM"), trn("BT"), margin=GPM_MARGIN_AGREE,
        kind="secondary", asserted=not smoke, paper="— (our control: the gap must vanish)",
    ))  # fmt: skip
    claims.append(compare(
        "A4", f"larger cyclic worlds (n = {gpm_large_n}): GPM predicts held-out comparisons better than BT",
        f"held-out log-likelihood per comparison: GPM - BT (random cyclic, n = {gpm_large_n})", tab(lg, "GPM", "ll"),
        tab(lg, "BT", "ll"), delta=GPM_DELTA_LL_LARGE, kind="secondary", requires=["GA"], asserted=not smoke,
        paper="Sec. 4 (GPM expresses any preference with enough blocks; our size)",
    ))  # fmt: skip
    claims.append(compare(
        "A6", "transitive control on LM states: the GPM head is no less accurate than the BT head",
        "held-out accuracy: GPM head - BT head (transitive length world)", lm("transitive", "GPM", "acc"),
        lm("transitive", "BT", "acc"), margin=GPM_MARGIN_ACC, kind="secondary", requires=["GA2"],
        asserted=not smoke, paper="— (our control: the gap must vanish)",
    ))  # fmt: skip
    claims.append(compare(
        "A7", "on the cyclic LM world the GPM head predicts held-out labels better (log-likelihood) than the BT head",
        "held-out log-likelihood per label: GPM head - BT head (cyclic)", lm("cyclic", "GPM", "ll"),
        lm("cyclic", "BT", "ll"), delta=GPM_DELTA_LL_LM, kind="secondary", requires=["GA3"], asserted=not smoke,
        paper="— (ours: calibration of the same heads)",
    ))  # fmt: skip
    claims.append(compare(
        "A8", "the GPM head recovers the cycle: on held-out triples (a short, a medium and a long answer) it predicts "
        "the full majority cycle; a BT head never can", "share of held-out triples predicted as the cycle (GPM head; BT "
        "is 0 by construction)", [gpm_levels[(s, "GPM")] for s in seeds], 0.0, delta=GPM_DELTA_TRIPLES,
        kind="secondary", requires=["GA3"], asserted=not smoke, paper=paper_t1 + " (the cycle itself)",
        extra={"bt_share": [float(gpm_levels[(s, "BT")].mean()) for s in seeds]},
    ))  # fmt: skip
    gpm_record = {"tabular": gpm_tab_df.to_dict("records"), "lm": gpm_lm_df.to_dict("records"),
                  "embeddings_3cycle": v3.tolist()}  # fmt: skip

# %% [markdown]
# ## Part B. GPO: self-play on the general preference score
#
# Zhang et al. (Sec. 5) align a policy to a learned general preference model by self-play. The GPM of Part A gives
# every response an embedding v_y ∈ ℝ^{2k} and every pair a skew-symmetric score
#
# $$s(y_i \succ y_j) = v_{y_i}^\top R^\top v_{y_j}, \qquad P(y_i \succ y_j) = \sigma\big(s(y_i \succ y_j)/\tau\big)
# \qquad \text{(Eq. 4.1, Eq. 3.1)}.$$
#
# General Preference Optimization (GPO) scores each response against the current policy's own samples and moves the
# policy towards the responses that score well,
#
# $$s(y \succ \pi_t) = \frac1K \sum_{k=1}^{K} s(y \succ y_k),\ y_k \sim \pi_t \quad \text{(Eq. 5.2)}, \qquad
# \pi_{t+1} = \arg\min_\pi \mathbb{E}_{y\sim\pi_t}\Big[\Big(\log\frac{\pi(y)}{\pi_t(y)} - \frac{s(y \succ \pi_t)}{\beta}
# + \log Z_t\Big)^2\Big] \quad \text{(Eq. 5.3)}.$$
#
# SPPO's squared loss with the score in place of P − ½. A tabular policy over n responses reaches zero loss at the
# multiplicative-weights step π_{t+1}(y) ∝ π_t(y) exp(s(y ≻ π_t)/β) (the paper's reading, App. B), and the
# *average* of the iterates approaches the Minimax Winner of the game with payoff s when β = Θ(√T) (Theorem 5.1).
#
# **The pipeline at a budget of rater comparisons.** GPO asks the raters about uniformly drawn pairs of responses,
# fits a GPM with k = `gpo_k` blocks to them, then plays `gpo_iterations` rounds of self-play on the fitted log-odds
# s/τ (the GPM is the judge; the raters are asked nothing more). Bradley-Terry + RL (`bt_rl`, as in `06_spo`) fits
# one reward per response to *the same* comparisons (the same random draws) and plays π ∝ π_ref exp(r/α). SPO
# (`spo`, as in `06_spo`) spends the same budget on comparisons among its own samples. All three start from the same
# policy (uniform on the random worlds; 06's (0.1, 0.1, 0.8) on the 3-cycle). Exploitability is measured against the
# exact preference matrix, which no method sees. Part B involves no language model.

# %%
# Fixed before any run. Exploitability: 0.02 is a best response winning 52% instead of 50%, the smallest gap we call
# less exploitable (as in 06_spo); GB counts a policy within that same resolution as having reached the Minimax Winner.
DELTA_EXPL = 0.02  # B1, B1c, B2, B3: minimum effect, exploitability
GATE_EXPL = 0.02  # GB: exploitability below which a pipeline has reached the Minimax Winner
MARGIN_EXPL = 0.02  # B4: non-inferiority margin, the size of DELTA_EXPL
GATE_AGREE = 0.9  # GG: no reward orders more than 9 of the 10 pairs of a 5-response cycle of clear pairs
GATE_AGREE3 = 2 / 3  # GG3: Bradley-Terry's exact ceiling on a 3-cycle, 2 of its 3 pairs
CLEAR = 0.05  # GG, GG3: pairs with |P - 1/2| >= 0.05 count (a near-tie's direction is noise, moves no exploitability)
if smoke:
    gpo_worlds, gpo_iterations, gpo_max_comparisons, gpo_budget = 2, 1000, 1000, 1000
if profile == "toy":
    from prefkit.gpm import gpo, gpo_selfplay, score_matrix

    print(inspect.getsource(score_matrix))
    print(inspect.getsource(gpo_selfplay))
    print(inspect.getsource(gpo))

# %% [markdown]
# ### Worlds
#
# Four kinds, `gpo_worlds` of each per seed (a seed draws the worlds, every rater answer and every sample):
# *Bradley-Terry* worlds, P[i, j] = σ(r_i − r_j) with r ~ N(0, `gpo_bt_scale`²), where a reward model is exactly
# right (gate GB); *cyclic* and *transitive* rater-group worlds (`random_rater_groups`: `gpo_groups` groups over
# `gpo_responses` responses, drawn until the majority cycles through the top, with no Condorcet winner, or until it
# does not cycle at all); and `06_spo`'s 3-cycle (`RaterGroups.cyclic()`, P(A ≻ B) = 0.65, P(B ≻ C) = 0.80,
# P(C ≻ A) = 0.55), run `gpo_worlds` times with fresh rater answers. On the cyclic worlds no reward model can order the majority, and the Minimax Winner is mixed: that is what
# makes GPO's advantage possible there, by construction of the world (a cycle below a Condorcet winner would leave a
# reward model's argmax unbeatable, so those worlds are redrawn); the Bradley-Terry and transitive worlds are the
# controls where the advantage must vanish.

# %%
if profile == "toy":
    from prefkit.gpm import PreferenceMatrixWorld, condorcet_winner, random_rater_groups
    from prefkit.selfplay import bt_rl, exploitability, spo
    from prefkit.worlds.raters import RaterGroups

    GPO_KINDS = ("Bradley-Terry", "cyclic", "transitive", "3-cycle")
    gpo_budgets = [b for b in (300, 1000, 3000, 10000) if b <= gpo_max_comparisons]
    if gpo_budget not in gpo_budgets:
        raise ValueError(f"gpo_budget = {gpo_budget} must be one of the budgets {gpo_budgets}")

    def gpo_top_cycle(rng: np.random.Generator) -> RaterGroups:
        """Random rater groups whose majority cycles through the top: no Condorcet winner, a mixed Minimax Winner."""
        while True:
            w = random_rater_groups(gpo_responses, gpo_groups, rng, transitive=False)
            if condorcet_winner(w.preference_matrix()) is None:
                return w

    def gpo_worlds_of(seed: int) -> dict:
        rng = np.random.default_rng([seed, 11])
        n = gpo_responses
        return {
            "Bradley-Terry": [PreferenceMatrixWorld.bradley_terry(gpo_bt_scale * rng.normal(size=n)) for _ in range(gpo_worlds)],
            "cyclic": [gpo_top_cycle(rng) for _ in range(gpo_worlds)],
            "transitive": [random_rater_groups(n, gpo_groups, rng, transitive=True) for _ in range(gpo_worlds)],
            "3-cycle": [RaterGroups.cyclic()] * gpo_worlds,
        }  # fmt: skip

    def gpo_agreement(P_hat: np.ndarray, P: np.ndarray, clear: float = 0.0) -> np.ndarray:
        """Per unordered pair whose majority is at least ``clear`` from 1/2: 1 if P_hat gets its direction right."""
        iu = np.triu_indices(len(P), 1)
        keep = np.abs(P[iu] - 0.5) >= clear
        return ((P_hat[iu] > 0.5) == (P[iu] > 0.5)).astype(float)[keep]

    def gpo_run_seed(s: int) -> tuple[list[dict], dict]:
        """Every method on every world of seed s at every budget: one row per (world, budget), and the per-pair
        majority agreement of the GPM fit."""
        rows, pairs = [], {}
        for ki, (kind, ws) in enumerate(gpo_worlds_of(s).items()):
            for u, w in enumerate(ws):
                P = np.clip(w.preference_matrix(), 0.0, 1.0)  # round-off: weights summing to 1 + 2e-16 give P > 1
                init = np.array([0.1, 0.1, 0.8]) if kind == "3-cycle" else np.full(w.n, 1 / w.n)
                # at most max/4 iterations: SPO asks about distinct pairs only, so once it has settled on one response
                # it stops asking and would otherwise loop for max iterations; its last iterate then stands for the rest
                sp = spo(w, iterations=gpo_max_comparisons // 4, batch_size=gpo_spo_batch, lr=gpo_spo_lr,
                         rng=np.random.default_rng([s, ki, u, 1]), init=init, max_comparisons=gpo_max_comparisons)  # fmt: skip
                for b in gpo_budgets:
                    key = [s, ki, u, b]  # the same rng state: GPO and BT + RL see the same comparisons
                    g = gpo(w, b, np.random.default_rng(key), gpo_iterations, gpo_beta, k=gpo_k, tau=gpo_tau,
                            l2=gpo_l2, max_iter=gpo_max_iter, init=init, samples=gpo_samples)  # fmt: skip
                    bt = bt_rl(w, b, np.random.default_rng(key), alpha=gpo_bt_alpha, reference=init)
                    r = bt["scores"]
                    t = min(int(np.searchsorted(sp["comparisons"], b)), len(sp["comparisons"]) - 1)
                    agree = gpo_agreement(g["P"], P, CLEAR)
                    bt_P = 1 / (1 + np.exp(r[None] - r[:, None]))
                    pairs[(kind, s, u, b)] = agree.tolist()
                    rows.append({
                        "world": kind, "seed": s, "unit": u, "comparisons": b,
                        "GPO average": exploitability(P, g["policy"]), "GPO last iterate": exploitability(P, g["last"]),
                        "BT + RL": exploitability(P, bt["policy"]), "SPO average": exploitability(P, sp["average"][t]),
                        "GPM agreement": float(agree.mean()),
                        "BT agreement": float(gpo_agreement(bt_P, P, CLEAR).mean()),
                        "GPM max |P̂ - P|": float(np.abs(g["P"] - P).max()),
                    })  # fmt: skip
        return rows, pairs

    gpo_runs = [gpo_run_seed(s) for s in seeds]
    gpo_rows = [row for rows, _ in gpo_runs for row in rows]
    gpo_pairs = {key: agree for _, pairs in gpo_runs for key, agree in pairs.items()}
    gpo_table = pd.DataFrame(gpo_rows)
    GPO_COLS = ["GPO average", "GPO last iterate", "BT + RL", "SPO average", "GPM agreement", "BT agreement"]
    display(gpo_table.groupby(["world", "comparisons"])[GPO_COLS].mean().round(3))

# %% [markdown]
# Exploitability against the number of rater comparisons, per kind of world (each seed's mean over its worlds; mean
# and band over seeds), and, right, how often the fitted models get the direction of a clear majority right on the
# cyclic worlds (GPM and Bradley-Terry fitted to the same comparisons; dashed: gate GG's threshold).

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=5, width=3.4, height=3.2)
    gpo_seed_mean = gpo_table.groupby(["world", "seed", "comparisons"])[GPO_COLS].mean()
    gpo_curve = lambda kind, col: gpo_seed_mean.loc[kind][col].unstack("comparisons").loc[seeds, gpo_budgets].to_numpy()  # noqa: E731
    for ax, kind in zip(axes[:4], GPO_KINDS):
        for i, col in enumerate(["GPO average", "BT + RL", "SPO average"]):
            plot.mean_band(ax, gpo_budgets, gpo_curve(kind, col), label=col, color=plot.PALETTE[i])
        ax.set(
            xscale="log",
            xlabel="comparisons",
            ylabel="exploitability",
            title=f"{kind} worlds" if kind != "3-cycle" else "3-cycle (06_spo's raters)",
        )
        ax.legend(fontsize=7)
    for i, col in enumerate(["GPM agreement", "BT agreement"]):
        plot.mean_band(axes[4], gpo_budgets, gpo_curve("cyclic", col), label=col.split()[0], color=plot.PALETTE[i])
    axes[4].axhline(GATE_AGREE, color="k", lw=0.8, ls="--")
    axes[4].set(xscale="log", xlabel="comparisons", ylabel="majority directions right", title="cyclic worlds: fits")
    axes[4].legend(fontsize=7)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "gpo_exploitability.png"))

# %% [markdown]
# ### Claims of Part B
#
# Units are worlds (or, on the 3-cycle, independent runs with fresh rater answers), paired: GPO and BT + RL are fitted
# to the same comparisons, and every method is evaluated on the same worlds; hierarchical bootstrap over seeds, then
# units. **delta = 0.02** exploitability, as in `06_spo`. The gates: GB asks both pipelines to come within **0.02**
# of the Minimax Winner on Bradley-Terry worlds (the larger of the two exploitabilities per world), so a failure of
# GPO on cyclic worlds cannot be a broken optimiser or fit; GG asks the GPM fit to get more than **0.9** of the
# clear majority directions (pairs at least `CLEAR` = 0.05 from ½; a near-tie's direction is sampling noise and moves
# no exploitability) right on the cyclic worlds: on a 5-response cycle of clear pairs no reward model gets more than
# 9 of the 10 pairs right; GG3 asks it to beat Bradley-Terry's exact ceiling of **2 of 3** pairs on the 3-cycle. B4
# is a non-inferiority claim with a **margin of 0.02**. All at `gpo_budget` comparisons, except B3 (first against last
# budget). In smoke mode (1000 comparisons, two worlds, 1000 iterations) nothing in Part B is asserted.

# %%
if profile == "toy":
    gpo_gt = gpo_table.set_index(["world", "comparisons", "seed"]).sort_index()
    gpo_units = lambda kind, b, col: [gpo_gt.loc[(kind, b, s), col].to_numpy() for s in seeds]  # noqa: E731
    claims.append(gate(
        "GB", f"Bradley-Terry worlds: GPO and BT + RL both reach the Minimax Winner (the Condorcet winner) from {gpo_budget} comparisons",
        f"exploitability, larger of GPO average and BT + RL, Bradley-Terry worlds, {gpo_budget} comparisons",
        [np.maximum(a, b) for a, b in zip(gpo_units("Bradley-Terry", gpo_budget, "GPO average"), gpo_units("Bradley-Terry", gpo_budget, "BT + RL"))],
        GATE_EXPL, direction="less", asserted=not smoke, paper="— (mechanism: both pipelines work where Bradley-Terry holds)",
    ))  # fmt: skip
    claims.append(gate(
        "GG", f"cyclic worlds: the GPM fit gets more than {GATE_AGREE:g} of the clear majority directions right",
        f"share of clear pairs (|P - 1/2| >= {CLEAR:g}) whose majority direction P̂ gets right, cyclic worlds, {gpo_budget} comparisons",
        gpo_units("cyclic", gpo_budget, "GPM agreement"), GATE_AGREE, asserted=not smoke,
        paper="Table 1 (GPM fits cyclic preferences: 100%)",
        extra={"bt_agreement": [float(x.mean()) for x in gpo_units("cyclic", gpo_budget, "BT agreement")]},
    ))  # fmt: skip
    claims.append(gate(
        "GG3", "3-cycle: the GPM fit gets the majority directions right beyond Bradley-Terry's exact ceiling (2 of 3 pairs)",
        f"majority direction right, per pair and run, 3-cycle, {gpo_budget} comparisons",
        [np.concatenate([gpo_pairs[("3-cycle", s, u, gpo_budget)] for u in range(gpo_worlds)]) for s in seeds],
        GATE_AGREE3, asserted=not smoke, paper="Table 1 (BT 50-63% vs GPM 100% on cyclic sets)",
    ))  # fmt: skip
    claims.append(compare(
        "B1", f"cyclic worlds: GPO's average policy is less exploitable than BT + RL's at {gpo_budget} comparisons",
        f"exploitability: BT + RL - GPO average, cyclic worlds, {gpo_budget} comparisons",
        gpo_units("cyclic", gpo_budget, "BT + RL"), gpo_units("cyclic", gpo_budget, "GPO average"), delta=DELTA_EXPL, requires=["GB", "GG"],
        asserted=not smoke, paper="Sec. 5 and Theorem 5.1 (GPO converges to the Minimax Winner of a general preference; a reward cannot express cycles)",
        extra={"gpo_last_iterate": [float(x.mean()) for x in gpo_units("cyclic", gpo_budget, "GPO last iterate")]},
    ))  # fmt: skip
    claims.append(compare(
        "B1c", f"3-cycle (06_spo's raters): GPO's average policy is less exploitable than BT + RL's at {gpo_budget} comparisons",
        f"exploitability: BT + RL - GPO average, 3-cycle, {gpo_budget} comparisons",
        gpo_units("3-cycle", gpo_budget, "BT + RL"), gpo_units("3-cycle", gpo_budget, "GPO average"), delta=DELTA_EXPL,
        requires=["GB", "GG3"], asserted=not smoke, paper="Sec. 5 and Theorem 5.1",
    ))  # fmt: skip
    claims.append(compare(
        "B2", f"cyclic worlds: at {gpo_budget} comparisons GPO's average is less exploitable than SPO's",
        f"exploitability: SPO average - GPO average, cyclic worlds, {gpo_budget} comparisons",
        gpo_units("cyclic", gpo_budget, "SPO average"), gpo_units("cyclic", gpo_budget, "GPO average"), delta=DELTA_EXPL, kind="secondary",
        requires=["GG"], asserted=not smoke,
        paper="— (ours: GPO pools every comparison into one preference model; SPO uses each batch once)",
    ))  # fmt: skip
    gpo_lo, gpo_hi = gpo_budgets[0], gpo_budgets[-1]
    claims.append(compare(
        "B3", f"GPO's average approaches the Minimax Winner as data grows: exploitability falls from {gpo_lo} to {gpo_hi} comparisons",
        f"exploitability (GPO average, cyclic worlds): at {gpo_lo} - at {gpo_hi}",
        gpo_units("cyclic", gpo_lo, "GPO average"), gpo_units("cyclic", gpo_hi, "GPO average"), delta=DELTA_EXPL, kind="secondary",
        requires=["GG"], asserted=not smoke, paper="Theorem 5.1 with a GPM that improves with data (ours)",
    ))  # fmt: skip
    claims.append(compare(
        "B4", f"transitive rater worlds (control): GPO's average is not more exploitable than BT + RL's at {gpo_budget} comparisons",
        f"exploitability: GPO average - BT + RL, transitive worlds, {gpo_budget} comparisons",
        gpo_units("transitive", gpo_budget, "GPO average"), gpo_units("transitive", gpo_budget, "BT + RL"), margin=MARGIN_EXPL,
        direction="less", kind="secondary", requires=["GB"], asserted=not smoke,
        paper="— (our control: where the majority is transitive the two must agree)",
    ))  # fmt: skip
    gpo_record = {
        "table": gpo_table.to_dict("records"),
        "budgets": gpo_budgets,
        "claim_budget": gpo_budget,
        "constants": {"delta_expl": DELTA_EXPL, "gate_expl": GATE_EXPL, "gate_agree": GATE_AGREE,
                      "gate_agree3": GATE_AGREE3, "margin_expl": MARGIN_EXPL},
    }  # fmt: skip

# %% [markdown]
# ## Part C. Accelerated Preference Optimization on a tabular bandit
#
# **APO** (He, Yuan & Gu 2024, "Accelerated Preference Optimization for Large Language Model Alignment",
# [arXiv:2410.06293](https://arxiv.org/abs/2410.06293); equation numbers of the ICLR 2025 submission). Iterative
# DPO is a proximal point method: round t fits DPO with the current policy π_t as reference, on comparisons sampled
# from π_t (Algorithm 1, Eq. 3.5). APO adds Nesterov's extrapolation in log space (Eq. 3.7, normalised as Eq. 3.6);
# the extrapolated policy is the next round's reference and sampler, the output is π̂_T; α = 0 is iterative DPO:
#
# $$\hat\pi_{t+1} = \arg\min_{\pi} \mathbb{E}_{(x, y_w, y_l) \sim \mathcal{D}_t}\Big[-\log\sigma\Big(\beta\log\frac{\pi(y_w|x)}{\pi_t(y_w|x)} - \beta\log\frac{\pi(y_l|x)}{\pi_t(y_l|x)}\Big)\Big] \quad (3.5), \qquad
# \log\pi_{t+1} = \log\hat\pi_{t+1} + \alpha\big(\log\hat\pi_{t+1} - \log\hat\pi_t\big) \quad (3.7).$$
#
# Unrolled (Theorem 4.1), $\hat\pi_T \propto \pi_\text{ref}\exp\big(\sum_{i<T}\frac{1-\alpha^{T-i}}{1-\alpha}\, r_i/\beta\big)$
# with $r_i = \beta\log\hat\pi_{i+1}/\pi_i$ the reward round i recovered. Theorem 4.4 bounds the suboptimality
# $\mathbb{E}_{\pi^*}r^* - \mathbb{E}_{\hat\pi_T}r^*$ by $\tilde O((1-\alpha)\beta/T)$ plus a statistical term that grows with T and
# with $1/(1-\alpha)$ (Remark 4.5); Theorem 4.8 (a minimal reward gap) gives $\exp(-O(T\Delta/((1-\alpha)\beta)))$.
#
# **The toy.** A bandit of `apo_prompts` prompts × `apo_responses` responses, true rewards r* ~ N(0, 1), a reference
# policy softmax(N(0, 1) logits) drawn independently, and a Bradley-Terry rater (Eq. 2.1). Each round samples
# `apo_pairs` comparisons per prompt from π_t and finds the DPO optimum over tabular softmax policies *exactly*
# (Newton's method on the convex objective; `dpo_optimum`). A seed draws the bandit and every comparison; the three
# α share the comparisons' random stream, so round 1 is identical for all of them, as in the paper's Table 1.
#
# **What holds by construction.** On the population (every pair, preferences known) each round recovers r* exactly,
# so Theorem 4.1 makes APO after T rounds *identical* to iterative DPO after
# $S_\alpha(T) = \sum_{m=1}^{T}\frac{1-\alpha^m}{1-\alpha}$ rounds (about $T/(1-\alpha)$): there the speed-up is an identity, a
# unit test (`tests/test_apo.py`), and the dashed lines of the figure. The claims below are measured on sampled
# comparisons, where each round's reward is noisy and the identity need not survive. The same identity predicts
# two things before any run: C2 should fail in the toy (2 APO rounds at α = 0.3 are worth S = 2.3 exact rounds, less
# than 3), and C5's control should hold (iterative DPO with β' = β·T/S_α(T) walks the same path).
#
# **β.** Chosen once on the development seed 100 from population curves only, by a rule fixed before looking: the
# β in {0.5, 1, 2, 4} whose iterative-DPO suboptimality at round 3 is closest to 30% of the start (neither converged
# nor barely moved at the paper's 3 iterations). Fractions at round 3 were 0.035, 0.14, 0.38, 0.64, so β = 2, the
# value an earlier version of this part had also chosen on the same seed.

# %%
from prefkit.apo import apo, dpo_optimum, effective_rounds, equivalent_rounds, extrapolate, make_bandit

DELTA_GAP = 0.05  # reward units (r* has sd 1, π_ref starts ~1.4 below the best): 5% of a reward sd
GATE_GAIN = 0.1  # GC: iterative DPO must lower the suboptimality by 0.1 (7% of the start) for C1-C6 to mean anything
MARGIN_RATE = 0.1  # C3: a measured speed-up within 0.1 of the predicted one (e.g. 1.32 vs 1.42) counts as matching
DELTA_KL = 0.05  # C6: nats; a KL change below 0.05 is invisible in the policy
if smoke:
    apo_prompts, apo_rounds = 16, 4
apo_alphas = [0.0, apo_alpha, apo_alpha_high]
print(inspect.getsource(dpo_optimum))
print(inspect.getsource(extrapolate))
print(inspect.getsource(apo))

# %%
apo_runs, apo_pop, apo_matched, apo_bandits = {}, {}, {}, {}
if profile == "toy":
    t_ev = apo_eval_round
    beta_matched = apo_beta * t_ev / float(effective_rounds(apo_alpha, t_ev))  # same total step at round t_ev (Thm 4.1)
    for s in seeds:
        b = apo_bandits[s] = make_bandit(apo_prompts, apo_responses, np.random.default_rng([s, 0]))
        for a in apo_alphas:
            apo_runs[(a, s)] = apo(b, a, apo_beta, apo_rounds, apo_pairs, np.random.default_rng([s, 1]), apo_ridge)
            apo_pop[(a, s)] = apo(b, a, apo_beta, apo_rounds)  # population: Theorem 4.1 exactly
        apo_matched[s] = apo(b, 0.0, beta_matched, t_ev, apo_pairs, np.random.default_rng([s, 1]), apo_ridge)
    rounds_ = np.arange(1, apo_rounds + 1)
    # equivalent exact rounds: how many population iterative-DPO rounds each run's mean suboptimality is worth
    apo_equiv = {k: [equivalent_rounds(apo_bandits[k[1]], g, apo_beta) for g in r["gap"].mean(1)[1:]]
                 for k, r in apo_runs.items()}  # fmt: skip
    slope = lambda y: float(np.polyfit(rounds_, y, 1)[0])  # noqa: E731
    apo_speedup = {a: [slope(apo_equiv[(a, s)]) / slope(apo_equiv[(0.0, s)]) for s in seeds] for a in apo_alphas[1:]}
    apo_predicted = {a: slope(effective_rounds(a, rounds_)) / slope(effective_rounds(0.0, rounds_)) for a in apo_alphas}
    table = pd.DataFrame([{"α": a, "seed": s, "round": t, "suboptimality": r["gap"][t].mean(),
                           "population (Thm 4.1)": apo_pop[(a, s)]["gap"][t].mean(), "KL(π̂‖π_ref)": r["kl"][t].mean()}
                          for (a, s), r in apo_runs.items() for t in range(apo_rounds + 1)])  # fmt: skip
    display(table.groupby(["α", "round"]).mean(numeric_only=True).drop(columns="seed").unstack(0).round(3))
    print(f"fitted speed-up over rounds 1-{apo_rounds}:", {a: np.round(v, 3).tolist() for a, v in apo_speedup.items()},
          "predicted (Thm 4.1):", {a: round(v, 3) for a, v in apo_predicted.items()})  # fmt: skip

# %% [markdown]
# Left: suboptimality of the output π̂_T per round; solid = sampled comparisons (mean ± sd over seeds), dashed = the
# population, where Theorem 4.1 holds exactly (π̂_T = π_ref exp(S_α(T) r*/β)), dotted = the optimisation term of
# Theorem 4.4 made explicit for this bandit, β log(1/π_ref(y*))/S_α(T) ≈ (1 - α)β log(1/π_ref(y*))/T, a bound on
# the population curve (the KL-regularised optimum is at least as good as putting all mass on y*). Right: the rate.
# Each sampled run's mean suboptimality is converted into the number of exact iterative-DPO rounds that reach it; the
# dashed lines are Theorem 4.1's S_α(T). C3 compares the fitted slopes.

# %%
if profile == "toy":
    fig, axes = plot.figure(2, width=4.6)
    best = lambda b: b.logp_ref[np.arange(len(b.reward)), b.reward.argmax(1)]  # noqa: E731
    apo_log_inv_best = np.mean([-best(apo_bandits[s]).mean() for s in seeds])
    for i, a in enumerate(apo_alphas):
        c = plot.PALETTE[i]
        plot.mean_band(axes[0], range(apo_rounds + 1), [apo_runs[(a, s)]["gap"].mean(1) for s in seeds],
                       f"α = {a:g}, sampled", color=c)  # fmt: skip
        axes[0].plot(range(apo_rounds + 1), np.mean([apo_pop[(a, s)]["gap"].mean(1) for s in seeds], 0), "--", color=c,
                     lw=1, label=f"α = {a:g}, population (Thm 4.1)" if i == 0 else None)  # fmt: skip
        bound = apo_beta * apo_log_inv_best / effective_rounds(a, rounds_)  # E_π r* >= r*_max - β log(1/π_ref(y*))/S
        axes[0].plot(rounds_, bound, ":", color=c, lw=1, label="bound β log(1/π_ref(y*))/S_α(T)" if i == 0 else None)
        plot.mean_band(axes[1], rounds_, [apo_equiv[(a, s)] for s in seeds], f"α = {a:g}, sampled", color=c)
        axes[1].plot(rounds_, effective_rounds(a, rounds_), "--", color=c, lw=1)
    axes[0].set_yscale("log")
    axes[0].set(xlabel="round T", ylabel="suboptimality of π̂_T", title=f"APO on a tabular bandit (β = {apo_beta:g})")
    axes[1].set(xlabel="round T", ylabel="equivalent exact iterative-DPO rounds",
                title="the rate: dashed = S_α(T) (Thm 4.1)")  # fmt: skip
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "apo_suboptimality.png"))

# %% [markdown]
# ### Part C claims
#
# Paired per prompt (the same prompts, bandit and comparison stream under every arm), hierarchical bootstrap over
# seeds, then prompts; C3 has one number per seed (t-interval over seeds). Suboptimality is in reward units (r* has
# standard deviation 1; the reference starts about 1.4 below the best response): **delta = 0.05**, 5% of a reward
# standard deviation. GC asks iterative DPO to gain at least **0.1** by round `apo_eval_round`: otherwise there is
# nothing to accelerate. C2 and C5 are "not worse" claims with a **margin of 0.05**. C3 compares APO's fitted rate,
# the slope over rounds 1-`apo_rounds` of the equivalent exact rounds, divided by iterative DPO's, with Theorem 4.1's
# prediction for the same rounds (1.42 for α = 0.3); it is reproduced when the interval's low end is above the
# prediction minus **0.1**. C6 uses **delta = 0.05 nats**. In smoke mode only GC is asserted.

# %%
if profile == "toy":
    te = apo_eval_round
    gap = lambda a, t: [apo_runs[(a, s)]["gap"][t] for s in seeds]  # noqa: E731
    paper_c1 = "Table 1: LC win rate 31.73 (APO) vs 29.95 (iterative DPO) after 3 iterations; Thm 4.4"
    claims.append(gate(
        "GC", f"iterative DPO (α = 0) lowers the suboptimality of π_ref by round {te}",
        f"suboptimality: π_ref - iterative DPO round {te}", [g0 - g for g0, g in zip(gap(0.0, 0), gap(0.0, te))],
        GATE_GAIN, paper="mechanism (there is something to accelerate)",
    ))  # fmt: skip
    claims.append(compare(
        "C1", f"APO (α = {apo_alpha:g}) reaches a lower suboptimality than iterative DPO after {te} rounds",
        f"suboptimality at round {te}: APO - iterative DPO", gap(apo_alpha, te), gap(0.0, te), delta=DELTA_GAP,
        direction="less", requires=["GC"], asserted=not smoke, paper=paper_c1,
        extra={"population_difference": [float(apo_pop[(apo_alpha, s)]["gap"][te].mean() - apo_pop[(0.0, s)]["gap"][te].mean()) for s in seeds]},
    ))  # fmt: skip
    claims.append(compare(
        "C2", "APO after 2 rounds is not worse than iterative DPO after 3",
        "suboptimality: APO round 2 - iterative DPO round 3", gap(apo_alpha, 2), gap(0.0, 3), margin=DELTA_GAP,
        direction="less", requires=["GC"], asserted=not smoke,
        paper="Sec. 1 and 5.2, Table 1: APO Iter2 37.53 vs DPO Iter3 37.64 raw win rate (LC 29.56 vs 29.95)",
        extra={"S_alpha_2": float(effective_rounds(apo_alpha, 2)), "note": "Thm 4.1 predicts failure: S = 2.3 < 3"},
    ))  # fmt: skip
    claims.append(per_seed(
        "C3", f"APO's rate (α = {apo_alpha:g}) matches Theorem 4.1's speed-up: fitted speed-up >= predicted - {MARGIN_RATE:g}",
        f"fitted speed-up (rounds 1-{apo_rounds}) - predicted {apo_predicted.get(apo_alpha, 0):.3f}",
        apo_speedup.get(apo_alpha, [0.0]), apo_predicted.get(apo_alpha, 0.0), margin=MARGIN_RATE, kind="secondary",
        requires=["GC"], asserted=not smoke, paper="Thm 4.1 and 4.4, Remark 4.5 (rate improved by 1/(1-α))",
        extra={"speedup": {str(a): v for a, v in apo_speedup.items()}, "predicted": {str(a): v for a, v in apo_predicted.items()}},
    ))  # fmt: skip
    claims.append(compare(
        "C4", f"α = {apo_alpha_high:g} reaches a lower suboptimality than α = {apo_alpha:g} at round {te}",
        f"suboptimality at round {te}: α = {apo_alpha_high:g} - α = {apo_alpha:g}", gap(apo_alpha_high, te),
        gap(apo_alpha, te), delta=DELTA_GAP, direction="less", kind="secondary", requires=["GC"], asserted=not smoke,
        paper="Remark 4.5 (larger α, smaller optimisation error, larger statistical error); Table 3",
    ))  # fmt: skip
    claims.append(compare(
        "C5", f"control: iterative DPO with β' = {beta_matched:.3g} (the same total step as APO at round {te}) is not worse than APO",
        f"suboptimality at round {te}: iterative DPO (β') - APO", [apo_matched[s]["gap"][te] for s in seeds],
        gap(apo_alpha, te), margin=DELTA_GAP, direction="less", kind="secondary", requires=["GC"], asserted=not smoke,
        paper="— (our control: by Thm 4.1 both follow the same path to the same fixed point)",
        extra={"kl_matched": [float(apo_matched[s]["kl"][te].mean()) for s in seeds]},
    ))  # fmt: skip
    claims.append(compare(
        "C6", f"APO's policy is further from π_ref than iterative DPO's at round {te}",
        f"KL(π̂‖π_ref) at round {te}: APO - iterative DPO", [apo_runs[(apo_alpha, s)]["kl"][te] for s in seeds],
        [apo_runs[(0.0, s)]["kl"][te] for s in seeds], delta=DELTA_KL, kind="secondary", requires=["GC"],
        asserted=not smoke, paper="— (our finding: the speed-up is a longer step along the same path)",
    ))  # fmt: skip
    apo_record = {
        "beta": apo_beta, "beta_matched": beta_matched, "alphas": apo_alphas,
        "gap": {str(a): [apo_runs[(a, s)]["gap"].mean(1).tolist() for s in seeds] for a in apo_alphas},
        "gap_population": {str(a): [apo_pop[(a, s)]["gap"].mean(1).tolist() for s in seeds] for a in apo_alphas},
        "kl": {str(a): [apo_runs[(a, s)]["kl"].mean(1).tolist() for s in seeds] for a in apo_alphas},
        "equivalent_rounds": {str(a): [list(map(float, apo_equiv[(a, s)])) for s in seeds] for a in apo_alphas},
        "speedup": {str(a): v for a, v in apo_speedup.items()}, "predicted_speedup": {str(a): v for a, v in apo_predicted.items()},
    }  # fmt: skip

# %% [markdown]
# ## Part D. Direct Nash Optimization and APO: on-policy rounds against a preference oracle
#
# **DNO** (Rosset, Cheng, Mitra, Santacroce, Awadallah, Xie 2024, [arXiv:2404.03715](https://arxiv.org/abs/2404.03715)).
# Alg. 1 aims at the Nash policy of a general preference P(y ≻ y' | x): round t rewards a response by its expected
# win rate against the current policy, r_t(x, y) = E_{y' ~ π_t} P(y ≻ y' | x), and takes a regression step towards
# π_t's improvement (Eq. 8). The practical version, DNO-Prct (Alg. 2), is what the paper runs: sample K responses
# from π_t, add a teacher's response (GPT-4-Turbo's), let an annotator judge them all, keep *large-margin* pairs, and
# take a DPO step with π_t as the reference (Eq. 13):
#
# $$\pi_{t+1} = \arg\max_\pi \; \mathbb{E}_{(x, y_w, y_l) \sim D_t} \log \sigma\Big(\eta \log \frac{\pi(y_w|x)}{\pi_t(y_w|x)} - \eta \log \frac{\pi(y_l|x)}{\pi_t(y_l|x)}\Big).$$
#
# Sec. 5.1's pairs: the annotator scores the samples and the teacher's response on a 6-point scale; the positive must
# score 5 or 6, and the negative at least 2 points lower (1 point when the positive is a student sample). Each round
# takes a fresh split of the prompts. The paper: Orca-2.5 (7B) rises from 7% to 33% win rate against GPT-4-Turbo on
# AlpacaEval 2 (Table 4, More-Data; the length-controlled win rate from 10.8% to 33.1%), above offline DPO on the same
# data (Table 1), and on its training prompts the annotator scores the student above its teacher (Table 2).
#
# **APO** (He, Yuan, Gu 2024, [arXiv:2410.06293](https://arxiv.org/abs/2410.06293)). Iterative DPO is a proximal
# point method, so Nesterov's momentum should speed it up. After each round's DPO step θ̂_{t+1}, the weights are
# extrapolated (Eq. 3.7, α = 0.3 in the LLM experiments),
#
# $$\theta_{t+1} = \hat\theta_{t+1} + \alpha\,(\hat\theta_{t+1} - \hat\theta_t),$$
#
# and θ_{t+1} samples, serves as the reference and starts the training of round t + 1. The paper: APO beats iterative
# DPO on AlpacaEval 2 and needs fewer iterations for the same result.
#
# **The toy.** The string world's SFT model is the student. The teacher writes the gold answer with a slip in each
# step with probability `dno_teacher_noise`: better than the student, and beatable (it is not the gold answer). The
# annotator (the paper's GPT-4-Turbo, our "general preference oracle") scores each response on the 1-6 scale from the
# oracle score plus Gaussian noise (`dno_judge_noise`): 1 + 5 x (score + noise), rounded and clipped. With a pointwise
# judge, judging all pairs of the K + 1 responses ranks them by score, so the (best, worst) pair is the pair with the
# largest win-rate gap. This judge is transitive by construction: the toy tests DNO's practical loop, not its
# advantage over Bradley-Terry on intransitive preferences (Part A's subject). Arms, all from the same SFT model with
# the same rounds, steps and prompt splits: **DNO** (samples + teacher, margin rule); **DNO without the margin
# filter** ((best, worst) whenever the best scores higher); **iterative DPO** (samples only, margin rule: DNO without
# its teacher); **APO** (iterative DPO + weight extrapolation, α = `dno_apo_alpha`); **offline DPO** (the SFT model's
# samples + teacher on all rounds' prompts, judged and filtered as in DNO's first round, subsampled to as many pairs
# as DNO trained on in all, one run of as many steps from the SFT model). In round 1, DNO, DNO without the filter,
# iterative DPO and APO draw the same samples; DNO and DNO without the filter see the same judgements.
#
# | id | kind | claim | from |
# |---|---|---|---|
# | GD | gate | the teacher beats the SFT model by more than `GATE_TEACHER` oracle score on the eval prompts | DNO-Prct's teacher is stronger than the student (Sec. 5.1) |
# | GF | gate | the margin rule drops more than `GATE_FILTER` of the round-1 (best, worst) pairs | needed by D5 (ours) |
# | D1 | headline | DNO's last round beats the SFT model | Rosset et al., Table 1, Fig. 2 |
# | D2 | headline | DNO's score rises in every iteration | Rosset et al., Fig. 2 (Table 4's LC dips once) |
# | D3 | headline | DNO beats offline DPO on as many pairs | Rosset et al., Table 1 |
# | D4 | headline | DNO passes its teacher | Rosset et al., Table 2 |
# | D5 | secondary | the margin filter helps inside the loop: DNO beats DNO without it | Rosset et al., Sec. 5.2 (shown for offline DPO only) |
# | D6 | secondary | the teacher's response helps: DNO beats iterative DPO on samples alone | — (our control) |
# | D7 | headline | APO beats iterative DPO at the last round | He, Yuan, Gu, Sec. 5 |
# | D8 | headline | APO needs fewer rounds: APO at round T - 1 is not worse than iterative DPO at round T | He, Yuan, Gu, abstract, Sec. 4 |

# %%
import time

from prefkit.generate import sample
from prefkit.losses import dpo_loss
from prefkit.online import extrapolate, margin_pair, online_rounds
from prefkit.train import TrainConfig

if smoke:  # a quick pass over every cell: two short rounds on a few prompts
    dno_rounds, dno_prompts_per_round, dno_steps, dno_batch_size, dno_eval_prompts = 2, 24, 3, 8, 48
    dno_k = 2
# fixed before any reported run
DELTA_D = 0.02  # oracle score: about one wrong letter in one step of every fifth response (as in 01_dpo, 07_osp)
DELTA_ROUND = 0.01  # D2, one round's rise: half of DELTA_D, since three such rounds add up to more than DELTA_D
GATE_TEACHER = 0.05  # GD: a teacher less than 0.05 better than the student adds little over its own best sample
GATE_FILTER = 0.1  # GF: a rule that drops fewer than 1 pair in 10 cannot make the difference D5 asks about
if profile == "toy":
    teacher_world = StringWorld(seed=world.seed, n_train=world.n_train, n_eval=world.n_eval,
                                demo_noise=dno_teacher_noise)  # fmt: skip
    dno_eval = world.eval_prompts[:dno_eval_prompts]

    def teacher_says(s: int, prompt: str) -> str:
        """The teacher's response: the gold answer with slips, one fixed draw per (seed, prompt)."""
        return teacher_world.demonstration(prompt, random.Random(f"dno-teacher {s} {prompt}"))

    def judge_scores(prompt: str, responses: list[str], rng: np.random.Generator) -> np.ndarray:
        """The annotator: 1 + 5 x (oracle score + noise), rounded to the 1-6 scale."""
        x = np.array([world.score(prompt, y) for y in responses]) + rng.normal(0, dno_judge_noise, len(responses))
        return np.floor(1.5 + 5 * np.clip(x, 0, 1))


# %%
print(inspect.getsource(margin_pair))
print(inspect.getsource(extrapolate))
print(inspect.getsource(online_rounds))

# %% [markdown]
# Each seed draws its own prompt splits (`dno_rounds` x `dno_prompts_per_round` training prompts), teacher responses,
# judge noise, samples and batch order; the SFT model is shared. Evaluation: one sample per eval prompt with the
# same seed in every round, scored by the oracle, and its win against the teacher's response to the same prompt
# (1, ½ on a tie, 0).

# %%
if profile == "toy":
    RULE = {"min_positive": dno_min_positive, "gap": dno_gap, "gap_student": dno_gap_student}
    NO_RULE = {"min_positive": -np.inf, "gap": 1, "gap_student": 1}  # any (best, worst) with a higher best

    def labeller(s: int, teacher: bool = True, rule: dict = RULE, stats: list | None = None, cap: int | None = None):
        """DNO-Prct's labelling: judge the samples (+ the teacher's response), keep the large-margin (best, worst)."""

        def label(policy, prompts, ys, t):
            rng, rows = np.random.default_rng([s, t]), []
            for p, group in zip(prompts, ys):
                cands = [*group, teacher_says(s, p)] if teacher else list(group)
                j, order, who = (
                    judge_scores(p, cands, rng),
                    rng.permutation(len(cands)),
                    len(group) if teacher else None,
                )
                pair, any_pair = margin_pair(j, who, order=order, **rule), margin_pair(j, who, order=order, **NO_RULE)
                if stats is not None:
                    stats.append({"round": t, "kept": pair is not None, "candidate": any_pair is not None,
                                  "teacher_chosen": pair is not None and pair[0] == who})  # fmt: skip
                if pair and cands[pair[0]] != cands[pair[1]]:
                    rows.append({"prompt": p, "chosen": cands[pair[0]], "rejected": cands[pair[1]]})
            return rows if cap is None or len(rows) <= cap else random.Random(s).sample(rows, cap)

        return label

    def evaluate(policy, s: int) -> np.ndarray:
        ys = sample(policy, tok, dno_eval, n=1, seed=30_000 + s)
        return np.array([world.score(p, y[0]) for p, y in zip(dno_eval, ys)])

    def rounds_from_base(s: int, prompts, label, rounds: int, steps: int, seed: int, momentum: float = 0.0):
        """Run ``rounds`` rounds from the SFT model; return the eval scores of rounds 0..rounds, pairs, seconds."""
        t0, c0, evals = time.time(), time.process_time(), [base_scores[s]]
        _, log = online_rounds(
            base, tok, prompts, label, dpo_loss,
            lambda t: TrainConfig(steps=steps, lr=dno_lr, seed=1000 * s + t, progress=False), rounds, dno_k,
            dno_batch_size, sample_seed=lambda t: seed + t, momentum=momentum,
            on_round=lambda t, policy, rows, hist: evals.append(evaluate(policy, s)), beta=dno_beta,
        )  # fmt: skip
        return evals, [r["pairs"] for r in log], (time.time() - t0, time.process_time() - c0)

    ARMS = {  # name -> (teacher in the pool, pair rule, APO momentum)
        "DNO": (True, RULE, 0.0),
        "DNO, no margin filter": (True, NO_RULE, 0.0),
        "iterative DPO": (False, RULE, 0.0),
        f"APO (α = {dno_apo_alpha})": (False, RULE, dno_apo_alpha),
    }
    scores, pairs, stats, timing, teacher_scores, base_scores = {}, {}, {}, {}, {}, {}
    for s in seeds:
        order = random.Random(s).sample(world.train_prompts, dno_rounds * dno_prompts_per_round)
        splits = {
            t: order[(t - 1) * dno_prompts_per_round : t * dno_prompts_per_round] for t in range(1, dno_rounds + 1)
        }
        teacher_scores[s] = np.array([world.score(p, teacher_says(s, p)) for p in dno_eval])
        base_scores[s] = evaluate(base, s)
        for name, (teacher, rule, momentum) in ARMS.items():
            stats[(name, s)] = []
            label = labeller(s, teacher, rule, stats[(name, s)])
            out_ = rounds_from_base(s, splits.__getitem__, label, dno_rounds, dno_steps, 10_000 * s, momentum)
            scores[(name, s)], pairs[(name, s)], timing[(name, s)] = out_
        # offline DPO: the SFT model's samples + teacher on every round's prompts, as many pairs and steps as DNO's
        label = labeller(s, cap=sum(pairs[("DNO", s)]))
        out_ = rounds_from_base(s, order, label, 1, dno_rounds * dno_steps, 20_000 * s + 10)
        scores[("offline DPO", s)], pairs[("offline DPO", s)], timing[("offline DPO", s)] = out_
    names = [*ARMS, "offline DPO"]
    table = pd.DataFrame([
        {"arm": a, "round": t, "seed": s, "score": float(np.mean(v)),
         "win_vs_teacher": float(np.mean((v > teacher_scores[s]) + 0.5 * (v == teacher_scores[s]))),
         "pairs": pairs[(a, s)][t - 1] if t else 0}
        for a in names for s in seeds for t, v in enumerate(scores[(a, s)])
    ])  # fmt: skip
    display(table.groupby(["arm", "round"], sort=False)[["score", "win_vs_teacher", "pairs"]].mean().round(3))
    print(f"teacher {np.mean([teacher_scores[s].mean() for s in seeds]):.3f}, "
          f"seconds per arm (wall, CPU): { {a: np.round(np.mean([timing[(a, s)] for s in seeds], 0), 1).tolist() for a in names} }")  # fmt: skip

# %% [markdown]
# Oracle score and win rate against the teacher per round (mean ± std over seeds; round 0 is the SFT model; offline
# DPO, one run as long as all rounds together, is drawn at the last round).

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=2, width=4.2, height=3.4)
    rounds = list(range(dno_rounds + 1))
    for i, name in enumerate(names):
        g = table[table["arm"] == name]
        x = rounds if name in ARMS else [0, dno_rounds]
        for ax, col in zip(axes, ["score", "win_vs_teacher"]):
            vals = g.pivot(index="seed", columns="round", values=col).loc[seeds].to_numpy()
            ls = "-" if name in ARMS else "--"  # offline DPO: one run, drawn from the SFT model to its end
            plot.mean_band(ax, x, vals, label=name, color=plot.PALETTE[i], marker="osD^v"[i], ls=ls)
    axes[0].axhline(np.mean([teacher_scores[s].mean() for s in seeds]), color="gray", ls=":", lw=1, label="teacher")
    axes[1].axhline(0.5, color="gray", ls=":", lw=1)
    for ax, title in zip(axes, ["oracle score of samples", "win rate against the teacher"]):
        ax.set(xlabel="round", title=f"{title} (n={len(seeds)})", xticks=rounds)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    figures.append(plot.save(fig, out, "dno_rounds.png"))

# %% [markdown]
# **Claims.** Paired per eval prompt (the same prompts and sampling seed under every arm), hierarchical bootstrap
# over seeds, then prompts. Deltas: `DELTA_D` = 0.02 oracle score, as in 01_dpo and 07_osp (about one wrong letter in
# one step of every fifth response); D2 asks every round to rise by `DELTA_ROUND` = 0.01, half of it, since three
# such rounds add up to more than `DELTA_D`; D2 reports the round whose rise came out worst (rules applied in order:
# reversed, not reproduced, inconclusive, reproduced), the others are in its record. D8 is a non-inferiority claim
# with margin `DELTA_D`. Gates: GD needs the teacher above the SFT model by more than `GATE_TEACHER` = 0.05 (a teacher
# barely better than the student adds little over the student's own best sample), GF needs the margin rule to drop
# more than `GATE_FILTER` = 0.1 of the round-1 (best, worst) pairs (units: DNO's round-1 prompts that had a pair).

# %%
if profile == "toy":
    last = dno_rounds
    apo = f"APO (α = {dno_apo_alpha})"
    u = lambda arm, t=last: [scores[(arm, s)][t] for s in seeds]  # noqa: E731
    claims.append(gate(
        "GD", f"the teacher beats the SFT model by more than {GATE_TEACHER} oracle score", "oracle score: teacher - SFT model",
        [teacher_scores[s] - scores[("DNO", s)][0] for s in seeds], GATE_TEACHER, asserted=not smoke,
        paper="DNO-Prct learns from a stronger teacher's responses (GPT-4-Turbo; Rosset et al., Sec. 5.1)",
        extra={"teacher_score": [float(teacher_scores[s].mean()) for s in seeds]},
    ))  # fmt: skip
    filt = [[float(not r["kept"]) for r in stats[("DNO", s)] if r["round"] == 1 and r["candidate"]] for s in seeds]
    claims.append(gate(
        "GF", f"the margin rule drops more than {GATE_FILTER} of the round-1 (best, worst) pairs",
        "share of DNO's round-1 prompts with a (best, worst) pair that the margin rule drops", filt, GATE_FILTER,
        asserted=not smoke, paper="— (our control: D5 needs a filter that filters)",
        extra={"teacher_chosen": [float(np.mean([r["teacher_chosen"] for r in stats[("DNO", s)] if r["kept"]] or [0]))
                                  for s in seeds]},  # share of DNO's pairs whose positive is the teacher's
    ))  # fmt: skip
    claims.append(compare(
        "D1", "DNO's last round beats the SFT model", "oracle score: DNO (last round) - SFT model", u("DNO"),
        u("DNO", 0), delta=DELTA_D, requires=["GD"], asserted=not smoke,
        paper="Rosset et al., Table 1 and Fig. 2: DNO lifts Orca-2.5's AlpacaEval 2 win rate far above SFT's",
    ))  # fmt: skip
    rank = {"reversed": 0, "not reproduced": 1, "inconclusive": 2, "reproduced": 3}
    rises = [compare(
        "D2", f"DNO's score rises in every iteration (worst round: {t} over {t - 1})",
        f"oracle score: DNO round {t} - round {t - 1}", u("DNO", t), u("DNO", t - 1), delta=DELTA_ROUND,
        requires=["GD"], asserted=not smoke,
        paper="Rosset et al., Fig. 2 (rises each iteration on UltraFeedback; Table 4's LC dips at iteration 1)",
    ) for t in range(1, last + 1)]  # fmt: skip
    d2 = min(rises, key=lambda c: (rank[c.own_status], c.estimate))
    d2.extra["rounds"] = [{"round": t, "estimate": c.estimate, "interval": c.interval, "status": c.own_status}
                          for t, c in enumerate(rises, 1)]  # fmt: skip
    claims.append(d2)
    claims.append(compare(
        "D3", "DNO beats offline DPO on as many pairs (the SFT model's samples + teacher, as many steps)",
        "oracle score: DNO - offline DPO, last round", u("DNO"), [scores[("offline DPO", s)][1] for s in seeds],
        delta=DELTA_D, requires=["GD"], asserted=not smoke,
        paper="Rosset et al., Table 1: DNO 22.59 vs offline DPO 19.49 LC win rate (equal-pairs Lookahead: 18.58)",
        extra={"pairs_dno": [sum(pairs[("DNO", s)]) for s in seeds],
               "pairs_offline": [pairs[("offline DPO", s)][0] for s in seeds]},
    ))  # fmt: skip
    claims.append(compare(
        "D4", "DNO passes its teacher", "oracle score: DNO (last round) - teacher", u("DNO"),
        [teacher_scores[s] for s in seeds], delta=DELTA_D, requires=["GD"], asserted=not smoke,
        paper="Rosset et al., Table 2: annotator score of the student 5.25 vs its teacher 4.59 (iteration 2)",
        extra={"win_vs_teacher": [float(table.query("arm == 'DNO' and round == @last and seed == @s")["win_vs_teacher"]
                                        .iloc[0]) for s in seeds]},
    ))  # fmt: skip
    claims.append(compare(
        "D5", "the margin filter helps inside the loop: DNO beats DNO without it",
        "oracle score: DNO - DNO without the margin filter, last round", u("DNO"), u("DNO, no margin filter"),
        delta=DELTA_D, kind="secondary", requires=["GD", "GF"], asserted=not smoke,
        paper="Rosset et al., Sec. 5.2: shown for offline DPO only (42k filtered pairs 11.60 vs 63k 9.60 win rate)",
    ))  # fmt: skip
    claims.append(compare(
        "D6", "the teacher's response helps: DNO beats iterative DPO on its own samples",
        "oracle score: DNO - iterative DPO (no teacher), last round", u("DNO"), u("iterative DPO"), delta=DELTA_D,
        kind="secondary", requires=["GD"], asserted=not smoke, paper="— (our control)",
    ))  # fmt: skip
    claims.append(compare(
        "D7", f"APO (α = {dno_apo_alpha}) beats iterative DPO at the last round",
        "oracle score: APO - iterative DPO, last round", u(apo), u("iterative DPO"), delta=DELTA_D, asserted=not smoke,
        paper="He, Yuan, Gu, Sec. 5: APO above iterative DPO on AlpacaEval 2",
    ))  # fmt: skip
    claims.append(compare(
        "D8", f"APO needs fewer rounds: APO at round {last - 1} is not worse than iterative DPO at round {last}",
        f"oracle score: APO round {last - 1} - iterative DPO round {last}", u(apo, last - 1), u("iterative DPO"),
        margin=DELTA_D, asserted=not smoke, paper="He, Yuan, Gu, abstract and Sec. 4: a faster rate than iterative DPO",
    ))  # fmt: skip
    dno_record = {
        "rounds": table.to_dict("records"),
        "seconds_per_arm": {a: [timing[(a, s)][0] for s in seeds] for a in names},
        "cpu_seconds_per_arm": {a: [timing[(a, s)][1] for s in seeds] for a in names},
        "round1_pairs": {a: [pairs[(a, s)][0] for s in seeds] for a in names},
        "teacher": {"demo_noise": dno_teacher_noise, "score": [float(teacher_scores[s].mean()) for s in seeds]},
    }

# %% [markdown]
# ## Part E. Pairwise-RL: a pairwise reward model and RL against an anchor
#
# Xu et al. (2025) replace the pointwise Bradley-Terry reward model of RLHF with a *pairwise* one, which reads the
# prompt and two responses and says how likely the first is to be better, and reward RL by the preference of a
# policy sample over an anchor response of the same prompt. Their argument: a pointwise score has to be calibrated
# across prompts and responses, a comparison only within one pair. We had the abstract only, so the reward below,
# with both presentation orders averaged, is our formula (the abstract gives no equation numbers):
#
# $$r(x, y) = \tfrac12\left[P_\phi(y \succ a \mid x) + 1 - P_\phi(a \succ y \mid x)\right],$$
#
# with $a$ the anchor (here the SFT model's greedy response) and $P_\phi$ the pairwise reward model. The baseline is a
# BT reward model $r_\psi$ with $P(y \succ a) = \sigma(r_\psi(y) - r_\psi(a))$; for it the same formula gives
# $\sigma(r_\psi(y) - r_\psi(a))$, a monotone function of $r_\psi(y)$ for each prompt, so the BT arm optimises the
# pointwise reward on the pairwise arm's [0, 1] scale. Both reward models are small MLPs on the same frozen
# features of the SFT model (hidden state at the response's last token, mean and summed log-probability), fitted to
# the same rater-labelled pairs with early stopping on a validation split. Then RLOO with a KL penalty
# ($\beta$ = `pw_beta`) trains a copy of the SFT model with each reward for the same number of steps.

# %%
from prefkit.generate import greedy, sample
from prefkit.losses.rl import rloo_loss
from prefkit.models import Reference
from prefkit.pairwise_rl import (
    AnchoredReward,
    PairwiseHead,
    RewardMLP,
    anchored_reward,
    anchored_score,
    expected_calibration_error,
    fit_preference_model,
    judge_features,
    reliability_table,
)
from prefkit.rl import OnPolicyBatches
from prefkit.train import preference_objective, train

DELTA_E = 0.02  # oracle score, win rate, accuracy, ECE: 2 points on a 0-1 scale, the least a reader would act on
GATE_ACC_E = 0.5  # a reward model must beat a coin flip on held-out pairs
GATE_GAIN_E = 0.0  # RL must raise its own reward model's score: the loop works
if smoke:
    pw_n_prompts, pw_rm_steps, pw_rl_steps, pw_batch, pw_n_eval, pw_n_rm_eval = 64, 100, 2, 4, 16, 16
print(inspect.getsource(anchored_reward))
print(inspect.getsource(PairwiseHead))

# %%
if profile == "toy":
    import copy
    import time

    def label_pairs(prompts, samples, rng):
        """Pairs (0, 1) and (2, 3) of each prompt's samples, labelled by the world's rater; identical pairs dropped."""
        rows = []
        for p, ys in zip(prompts, samples):
            for i, j in ((0, 1), (2, 3)):
                if ys[i] != ys[j]:
                    q = world.rater_prob(p, ys[i], ys[j])
                    rows.append({"prompt": p, "i": i, "j": j, "y": float(rng.random() < q), "p_true": q,
                                 "s_a": world.score(p, ys[i]), "s_b": world.score(p, ys[j])})  # fmt: skip
        return rows

    def pair_tensors(rows, index, feats):
        a = torch.stack([feats[index[r["prompt"]], r["i"]] for r in rows])
        b = torch.stack([feats[index[r["prompt"]], r["j"]] for r in rows])
        return a, b, torch.tensor([r["y"] for r in rows])

    featurize = lambda ps, rs: judge_features(base, tok, ps, rs)  # noqa: E731  (the frozen SFT model)
    t_part = time.time()
    rl_prompts = world.train_prompts[:pw_n_prompts]
    rm_eval_prompts = world.eval_prompts[:pw_n_rm_eval]
    eval_prompts = world.eval_prompts[:pw_n_eval]
    anchors = dict(zip(rl_prompts + eval_prompts, greedy(base, tok, rl_prompts + eval_prompts)))
    eval_anchor_scores = np.array([world.score(p, anchors[p]) for p in eval_prompts])
    pw = {}  # per seed: reward models, held-out predictions, RL curves and evaluations
    for s in seeds:
        seed_everything(s)
        rng = np.random.default_rng(s)
        train_samples = sample(base, tok, rl_prompts, n=4, seed=s, progress=False)
        test_samples = sample(base, tok, rm_eval_prompts, n=4, seed=10_000 + s, progress=False)
        f_train, f_test = featurize(rl_prompts, train_samples), featurize(rm_eval_prompts, test_samples)
        order = rng.permutation(len(rl_prompts))
        n_val = int(pw_val_frac * len(rl_prompts))
        val_p, fit_p = {rl_prompts[i] for i in order[:n_val]}, {rl_prompts[i] for i in order[n_val:]}
        pair_rows = label_pairs(rl_prompts, train_samples, rng)
        idx = {p: i for i, p in enumerate(rl_prompts)}
        fit_pairs = pair_tensors([r for r in pair_rows if r["prompt"] in fit_p], idx, f_train)
        val_pairs = pair_tensors([r for r in pair_rows if r["prompt"] in val_p], idx, f_train)
        test_rows = label_pairs(rm_eval_prompts, test_samples, rng)
        test_pairs = pair_tensors(test_rows, {p: i for i, p in enumerate(rm_eval_prompts)}, f_test)
        dim = f_train.shape[-1]
        rms, hists = {}, {}
        for name, rm_model in (("pairwise", PairwiseHead(dim, pw_hidden, antisymmetric=pw_antisymmetric)),
                            ("BT", RewardMLP(dim, pw_hidden))):  # fmt: skip
            rms[name], hists[name] = fit_preference_model(rm_model, *fit_pairs, val_pairs, steps=pw_rm_steps,
                                                          lr=pw_rm_lr, patience=pw_patience, seed=s)  # fmt: skip
        pw[s] = {"rms": rms, "hist": hists, "test_rows": test_rows, "n_pairs": len(fit_pairs[0])}
        for name, rm in rms.items():  # the pairwise head is read in both orders (the anchored form); BT is symmetric
            pw[s][f"p_{name}"] = anchored_score(rm, test_pairs[0], test_pairs[1]).numpy()
        print(f"seed {s}: {len(fit_pairs[0])} training pairs, {len(val_pairs[0])} validation, {len(test_rows)} test; "
              f"best steps {hists['pairwise']['best_step']} (pairwise), {hists['BT']['best_step']} (BT)")  # fmt: skip

# %%
if profile == "toy":

    def hard(x, y):
        """1 where x > y, ½ where equal, 0 where less."""
        return (np.sign(np.asarray(x) - np.asarray(y)) + 1) / 2

    def evaluate(policy, s, rms, rewards):
        """Per eval prompt: oracle score, oracle and reward-model win rates against the anchor, and each reward
        model's mean anchored score, over `pw_eval_samples` samples; plus the samples' features for E6."""
        ys = sample(policy, tok, eval_prompts, n=pw_eval_samples, seed=20_000 + s, progress=False)
        f = featurize(eval_prompts, ys)  # (P, n, D)
        fa = rewards["pairwise"].anchor_features(eval_prompts)[:, None].expand_as(f)  # (P, n, D)
        score = np.array([[world.score(p, y) for y in yy] for p, yy in zip(eval_prompts, ys)])  # (P, n)
        out = {"oracle": score.mean(1), "oracle_win": hard(score, eval_anchor_scores[:, None]).mean(1),
               "scores": score}  # fmt: skip
        for name, rm in rms.items():
            r = anchored_score(rm, f, fa).numpy()  # (P, n)
            out[f"rm_{name}"], out[f"win_{name}"] = r.mean(1), hard(r, 0.5).mean(1)
            out[f"r_{name}"] = r
        return out

    for s in seeds:
        rms = pw[s]["rms"]
        rms_reward = {name: AnchoredReward(rm, featurize, anchors) for name, rm in rms.items()}
        pw[s]["start"] = evaluate(base, s, rms, rms_reward)
        for name in ("pairwise", "BT"):
            t0 = time.time()
            policy = copy.deepcopy(base)
            curve = {"rm": [], "oracle": []}  # win rates against the anchor on each step's training samples

            def reward_fn(ps, rs, reward=rms_reward[name], curve=curve):
                r = reward(ps, rs)  # the policy sees only its reward model; the oracle is only logged
                sc = np.array([[world.score(p, y) - world.score(p, anchors[p]) for y in yy]
                               for p, yy in zip(ps, rs)])  # fmt: skip
                curve["rm"].append(float(hard(r, 0.5).mean()))
                curve["oracle"].append(float(hard(sc, 0).mean()))
                return r

            batches = OnPolicyBatches(policy, tok, rl_prompts, reward_fn, k=pw_k, batch_size=pw_batch, seed=s)
            cfg = TrainConfig(steps=pw_rl_steps, lr=pw_lr, seed=s, progress=False, desc=f"RL {name} s{s}")
            hist = train(policy, preference_objective(rloo_loss, Reference(policy), beta=pw_beta), batches, cfg)
            pw[s][f"curve_{name}"] = curve
            pw[s][f"end_{name}"] = evaluate(policy, s, rms, rms_reward)
            e, b = pw[s][f"end_{name}"], pw[s]["start"]
            print(f"seed {s} {name}: RL {time.time() - t0:.0f}s; oracle {b['oracle'].mean():.3f} -> "
                  f"{e['oracle'].mean():.3f}; own RM score {b['rm_' + name].mean():.3f} -> "
                  f"{e['rm_' + name].mean():.3f};"
                  f" win vs anchor: RM {b['win_' + name].mean():.3f} -> {e['win_' + name].mean():.3f}, oracle "
                  f"{b['oracle_win'].mean():.3f} -> {e['oracle_win'].mean():.3f}")  # fmt: skip
    print(f"Part E: {time.time() - t_part:.0f}s")

# %%
if profile == "toy":

    def rm_accuracy(s, name):
        """Per held-out pair with distinct oracle scores: 1 if the model's side of ½ is the rater's majority side."""
        rows, p = pw[s]["test_rows"], pw[s][f"p_{name}"]
        keep = np.array([r["s_a"] != r["s_b"] for r in rows])
        truth = np.array([r["s_a"] > r["s_b"] for r in rows])
        return np.where(p == 0.5, 0.5, (p > 0.5) == truth)[keep].astype(float)

    def shifted_accuracy(s, name):
        """E6: on (RL sample, anchor) pairs of both arms' final policies, agreement with the rater's majority."""
        accs = []
        for arm in ("pairwise", "BT"):
            e = pw[s][f"end_{arm}"]
            sc, r = e["scores"], e[f"r_{name}"]
            keep = sc != eval_anchor_scores[:, None]
            accs.append(((r > 0.5) == (sc > eval_anchor_scores[:, None]))[keep].astype(float))
        return np.concatenate(accs)

    p_true = {s: np.array([r["p_true"] for r in pw[s]["test_rows"]]) for s in seeds}
    label = {s: np.array([r["y"] for r in pw[s]["test_rows"]]) for s in seeds}
    e_ece = {name: [expected_calibration_error(pw[s][f"p_{name}"], p_true[s], pw_bins) for s in seeds]
           for name in ("pairwise", "BT")}  # fmt: skip
    ece_hard = {name: [expected_calibration_error(pw[s][f"p_{name}"], label[s], pw_bins) for s in seeds]
                for name in ("pairwise", "BT")}  # fmt: skip
    e_acc = {name: [rm_accuracy(s, name) for s in seeds] for name in ("pairwise", "BT")}
    pairwise_record = {
        "accuracy": {k: [float(a.mean()) for a in v] for k, v in e_acc.items()},
        "ece_soft": e_ece, "ece_hard": ece_hard,
        "reliability": {name: [{k: (None if v != v else v) for k, v in row.items()}  # empty bin: NaN -> None
                               for row in reliability_table(np.concatenate([pw[s][f"p_{name}"] for s in seeds]),
                                                            np.concatenate([p_true[s] for s in seeds]), pw_bins)]
                        for name in ("pairwise", "BT")},
        "best_step": {k: [pw[s]["hist"][k]["best_step"] for s in seeds] for k in ("pairwise", "BT")},
        "n_train_pairs": [pw[s]["n_pairs"] for s in seeds],
        "start": {k: [float(pw[s]["start"][k].mean()) for s in seeds] for k in ("oracle", "oracle_win", "rm_pairwise",
                                                                            "rm_BT", "win_pairwise", "win_BT")},
        "end": {arm: {k: [float(pw[s][f"end_{arm}"][k].mean()) for s in seeds]
                      for k in ("oracle", "oracle_win", f"rm_{arm}", f"win_{arm}")} for arm in ("pairwise", "BT")},
        "curves": {arm: {k: [pw[s][f"curve_{arm}"][k] for s in seeds] for k in ("rm", "oracle")}
                   for arm in ("pairwise", "BT")},
    }  # fmt: skip
    display(pd.DataFrame({"accuracy": {k: np.mean(v) for k, v in pairwise_record["accuracy"].items()},
                          "ECE (rater P)": {k: np.mean(v) for k, v in e_ece.items()},
                          "ECE (sampled labels)": {k: np.mean(v) for k, v in ece_hard.items()}}).round(3))  # fmt: skip

# %%
if profile == "toy":
    fig, axes = plot.figure(ncols=4, width=3.6, height=3.3)
    for i, name in enumerate(("pairwise", "BT")):
        ax, t = axes[i], pd.DataFrame(pairwise_record["reliability"][name])
        t = t[t["count"] > 0].astype(float)
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":")
        ax.plot(t["confidence"], t["frequency"], "o-", color=plot.PALETTE[i], label=f"ECE {np.mean(e_ece[name]):.3f}")
        ax.set(title=f"{name} reward model", xlabel="predicted P(a ≻ b)", ylabel="rater's P(a ≻ b), bin mean",
               xlim=(0, 1), ylim=(0, 1))  # fmt: skip
        ax.legend(loc="upper left")
    for i, arm in enumerate(("pairwise", "BT")):
        ax, c = axes[2 + i], pairwise_record["curves"][arm]
        steps_ = np.arange(1, len(c["rm"][0]) + 1)
        smooth = lambda v: pd.Series(v).rolling(10, min_periods=1).mean().to_numpy()  # noqa: E731
        for j, (key, lab) in enumerate((("rm", "by its own reward model"), ("oracle", "by the oracle"))):
            plot.mean_band(ax, steps_, [smooth(v) for v in c[key]], label=lab, color=plot.PALETTE[2 + j])
        ax.set(title=f"RL with the {arm} reward", xlabel="RL step", ylabel="win rate vs anchor (batch, 10-step mean)")
        ax.legend(loc="upper left")
    fig.tight_layout()
    figures.append(plot.save(fig, out, "pairwise_rl.png"))

# %% [markdown]
# Left: reliability diagrams of the two reward models on the held-out SFT pairs (the pairwise head read in both
# orders), against the rater's probability, pooled over seeds. Right: during RL, the share of each step's samples
# that the arm's own reward model judges better than the anchor, next to the share the oracle does (ties count ½).
# A reward model being hacked shows as its curve rising while the oracle's does not; the claims below measure the
# same gap on held-out prompts at the start and end of RL.

# %%
if profile == "toy":
    e_u = lambda key, arm, when="end": [pw[s][f"{when}_{arm}"][key] for s in seeds]  # noqa: E731
    e_gain = lambda key, arm: [pw[s][f"end_{arm}"][key] - pw[s]["start"][key] for s in seeds]  # noqa: E731

    def e_hack(arm):  # reward-model gain - oracle gain, in win rate against the anchor, per seed
        end, start = [pw[s][f"end_{arm}"] for s in seeds], [pw[s]["start"] for s in seeds]
        return [(e[f"win_{arm}"] - b[f"win_{arm}"]) - (e["oracle_win"] - b["oracle_win"]) for e, b in zip(end, start)]

    paper_rm = "Xu et al. 2025, abstract (the pairwise generative RM improves 'performance and score calibration')"
    paper_rl = "Xu et al. 2025, abstract (Pairwise-RL outperforms traditional RLHF)"
    e_gates = ["GE-A", "GE-B", "GE-RLa", "GE-RLb"]
    claims.append(gate("GE-A", "the pairwise reward model beats chance on held-out pairs",
                       "accuracy vs the rater's majority, held-out SFT pairs", e_acc["pairwise"], GATE_ACC_E,
                       paper="— (our control)", asserted=not smoke))  # fmt: skip
    claims.append(gate("GE-B", "the BT reward model beats chance on held-out pairs",
                       "accuracy vs the rater's majority, held-out SFT pairs", e_acc["BT"], GATE_ACC_E,
                       paper="— (our control)", asserted=not smoke))  # fmt: skip
    claims.append(gate("GE-RLa", "RL with the pairwise anchored reward raises that reward on held-out prompts",
                       "pairwise RM anchored score: end - start, per eval prompt", e_gain("rm_pairwise", "pairwise"),
                       GATE_GAIN_E, paper="— (our control)", asserted=not smoke))  # fmt: skip
    claims.append(gate("GE-RLb", "RL with the BT reward raises that reward on held-out prompts",
                       "BT RM score σ(r(y) - r(a)): end - start, per eval prompt", e_gain("rm_BT", "BT"), GATE_GAIN_E,
                       paper="— (our control)", asserted=not smoke))  # fmt: skip
    claims.append(compare("E1", "RL with the pairwise anchored reward reaches a higher oracle score than RL with BT",
                          "oracle score after RL: pairwise - BT, per eval prompt", e_u("oracle", "pairwise"),
                          e_u("oracle", "BT"), delta=DELTA_E, requires=e_gates, paper=paper_rl,
                          asserted=not smoke))  # fmt: skip
    claims.append(compare("E2", "RL with the pairwise reward hacks its reward model less: a smaller gap between "
                          "reward-model gain and oracle gain (win rates against the anchor) than with BT",
                          "(RM win-rate gain - oracle win-rate gain): pairwise - BT, per eval prompt",
                          e_hack("pairwise"), e_hack("BT"), delta=DELTA_E, direction="less", kind="secondary",
                          requires=e_gates,
                          paper="— (ours; the paper's calibration argument, measured as reward hacking)",
                          asserted=not smoke))  # fmt: skip
    claims.append(compare("E3", "the pairwise reward model is more accurate than BT on the same held-out pairs",
                          "accuracy vs the rater's majority: pairwise - BT, per pair", e_acc["pairwise"], e_acc["BT"],
                          delta=DELTA_E, kind="secondary", requires=["GE-A", "GE-B"], paper=paper_rm,
                          asserted=not smoke))  # fmt: skip
    claims.append(per_seed("E4", "the pairwise reward model is better calibrated than BT on the same held-out pairs",
                           f"ECE ({pw_bins} bins, against the rater's P): pairwise - BT",
                           e_ece["pairwise"], e_ece["BT"],
                           delta=DELTA_E, direction="less", kind="secondary", requires=["GE-A", "GE-B"],
                           paper=paper_rm, asserted=not smoke))  # fmt: skip
    claims.append(compare("E5", "RL with the pairwise anchored reward raises the oracle score over the SFT model",
                          "oracle score: end - start of RL (pairwise arm), per eval prompt",
                          e_gain("oracle", "pairwise"), [np.zeros(len(eval_prompts)) for _ in seeds], delta=DELTA_E,
                          kind="secondary", requires=["GE-A", "GE-RLa"], paper=paper_rl,
                          asserted=not smoke))  # fmt: skip
    claims.append(compare("E6", "on the RL policies' own samples against the anchor (a shifted distribution), the "
                          "pairwise reward model agrees with the rater more often than BT",
                          "accuracy vs the rater's majority on (RL sample, anchor) pairs: pairwise - BT",
                          [shifted_accuracy(s, "pairwise") for s in seeds], [shifted_accuracy(s, "BT") for s in seeds],
                          delta=DELTA_E, kind="secondary", requires=e_gates,
                          paper="— (ours; the paper's argument that pairwise judgements are robust to shift)",
                          asserted=not smoke))  # fmt: skip

# %% [markdown]
# ## The `hf` profile: a GPM head on a 4-bit model's states, and DNO rounds judged by a reward model
#
# With `profile="hf"`, `model_name` names any causal LM (hub id or local folder), loaded in 4-bit NF4 with LoRA
# adapters, and `dataset` a pairwise preference file. Two things run. (1) Part A's comparison on real states: a BT
# head and a GPM head (k = 2) are fitted on the frozen model's last-token states of the chosen and rejected
# responses, and their held-out accuracy is reported. (2) Part D's loop: `hf_rounds` DNO rounds over the file's
# prompts, `hf_k` samples per prompt plus the file's chosen response as the teacher's, all scored by the reward model
# `reward_model` (a sequence-classification model with one output), (best, worst) pairs kept by DNO's margin rule (a reward model has no 1-6 scale, so the
# rule keeps a pair whose score gap is at least `hf_gap`, half that when a sample beats the teacher),
# DPO on the LoRA adapters with π_t as reference. No oracle exists here, so nothing is asserted; the numbers are
# for the user to read.

# %%
if profile == "hf":
    import math

    from prefkit.data import load_pairwise, split_held_out
    from prefkit.generate import sample_table
    from prefkit.gpm import fit_head, head_prob, response_features
    from prefkit.losses import dpo_loss
    from prefkit.models import LoraSpec, load_lm
    from prefkit.online import margin_pair, online_rounds
    from prefkit.reward import load_reward_model, reward_scores
    from prefkit.train import TrainConfig

    base, tok = load_lm(model_name, quantize=quantize, lora=LoraSpec(r=lora_r), device=device)
    rows = load_pairwise(dataset, limit=200 if smoke else None)
    train_rows, held_out = split_held_out(rows)

    def pair_states(rs):
        f = response_features(base, tok, [r["prompt"] for r in rs], [[r["chosen"], r["rejected"]] for r in rs])
        return f[:, 0], f[:, 1]

    (fc, fr), (hc, hr) = pair_states(train_rows), pair_states(held_out)
    heads = {
        "BT head": fit_head(fc, fr, dim=1, seed=seeds[0]),
        "GPM head (k = 2)": fit_head(fc, fr, dim=4, seed=seeds[0]),
    }
    head_acc = {name: float((head_prob(h, hc, hr) > 0.5).float().mean()) for name, h in heads.items()}
    display(pd.DataFrame({"held-out accuracy": head_acc}))

# %%
if profile == "hf":
    rm, rm_tok = load_reward_model(reward_model, device=device)
    teacher = {r["prompt"]: r["chosen"] for r in train_rows}
    pool = list(teacher)[: 16 if smoke else 256]

    def judged_pairs(policy, prompts, samples, t):  # DNO's selection, the reward model as the judge
        cands = [list(dict.fromkeys([*ys, teacher[p]])) for p, ys in zip(prompts, samples)]
        flat = [(p, y) for p, ys in zip(prompts, cands) for y in ys]
        scores = iter(reward_scores(rm, rm_tok, [p for p, _ in flat], [y for _, y in flat]))
        rows = []
        for p, ys in zip(prompts, cands):
            judged = [next(scores) for _ in ys]
            pair = margin_pair(judged, ys.index(teacher[p]), min_positive=-math.inf, gap=hf_gap, gap_student=hf_gap / 2)
            if pair:
                rows.append({"prompt": p, "chosen": ys[pair[0]], "rejected": ys[pair[1]]})
        return rows

    policy, hf_log = online_rounds(
        base, tok, pool, judged_pairs, dpo_loss,
        lambda t: TrainConfig(steps=5 if smoke else 50, lr=lora_lr, seed=seeds[0] + t, desc=f"DNO (hf) round {t}"),
        rounds=1 if smoke else hf_rounds, k=hf_k, batch_size=8, sample_seed=lambda t: seeds[0] * 1000 + t,
        on_round=lambda t, policy, rows, hist: {"loss": float(hist.steps["loss"].iloc[-1])}, beta=0.1,
    )  # fmt: skip
    display(pd.DataFrame(hf_log))
    display(sample_table(policy, tok, [r["prompt"] for r in held_out[:3]], seed=seeds[0]))

# %% [markdown]
# ## Paper vs ours

# %%
if profile == "hf":
    claims.append(per_seed(
        "hf-heads", "GPM head vs BT head, held-out accuracy on the user's pairs (no oracle: not asserted)",
        "held-out accuracy: GPM head - BT head", [head_acc["GPM head (k = 2)"]], [head_acc["BT head"]], delta=0.02,
        asserted=False,
    ))  # fmt: skip
display(claims_table(claims))

# %%
names = [
    "seed",
    "n_seeds",
    "smoke",
    "profile",
    "model_name",
    "quantize",
    "dataset",
    "reward_model",
    "lora_r",
    "lora_lr",
    "hf_rounds",
    "hf_k",
    "hf_gap",
    "gpm_comparisons",
    "gpm_random_worlds",
    "gpm_random_n",
    "gpm_large_n",
    "gpm_large_comparisons",
    "gpm_prompts",
    "gpm_train_pairs",
    "gpm_test_pairs",
    "gpm_head_dim",
    "gpm_head_steps",
    "gpm_head_lr",
    "gpm_triples",
    "gpo_responses",
    "gpo_groups",
    "gpo_worlds",
    "gpo_bt_scale",
    "gpo_k",
    "gpo_tau",
    "gpo_l2",
    "gpo_max_iter",
    "gpo_iterations",
    "gpo_beta",
    "gpo_samples",
    "gpo_bt_alpha",
    "gpo_spo_batch",
    "gpo_spo_lr",
    "gpo_budget",
    "gpo_max_comparisons",
    "apo_beta",
    "apo_alpha",
    "apo_alpha_high",
    "apo_prompts",
    "apo_responses",
    "apo_pairs",
    "apo_ridge",
    "apo_rounds",
    "apo_eval_round",
    "dno_k",
    "dno_rounds",
    "dno_prompts_per_round",
    "dno_steps",
    "dno_batch_size",
    "dno_lr",
    "dno_beta",
    "dno_teacher_noise",
    "dno_judge_noise",
    "dno_min_positive",
    "dno_gap",
    "dno_gap_student",
    "dno_apo_alpha",
    "dno_eval_prompts",
    "pw_n_prompts",
    "pw_val_frac",
    "pw_hidden",
    "pw_antisymmetric",
    "pw_rm_lr",
    "pw_rm_steps",
    "pw_patience",
    "pw_rl_steps",
    "pw_k",
    "pw_batch",
    "pw_beta",
    "pw_lr",
    "pw_n_eval",
    "pw_eval_samples",
    "pw_bins",
    "pw_n_rm_eval",
]
params = {k: globals()[k] for k in names}
params.update({k: v for k, v in globals().items() if k.isupper() and isinstance(v, (int, float))})  # deltas, gates
extra = {"notebook": "11_general_preferences"}
if profile == "toy":
    params.update(base=asdict(base_cfg))
    extra.update(model=describe(base))
    extra.update({k: v for k, v in globals().items() if k.endswith("_record") and isinstance(v, dict)})
else:
    extra.update(hf_heads=head_acc, hf_rounds=hf_log)
path = write_result(
    out,
    "general_preferences",
    {
        "arxiv": "2410.02197; 2404.03715; 2410.06293; 2504.04950",
        "title": "General Preference Modeling / GPO (Zhang et al. 2024); Direct Nash Optimization (Rosset et al. 2024); "
        "Accelerated Preference Optimization (He, Yuan, Gu 2024); A Unified Pairwise Framework for RLHF (2025)",
        "claim": "general preference embeddings express cyclic preferences BT cannot; self-play on them is less "
        "exploitable; DNO improves every round past its teacher; APO's extrapolation converges faster; pairwise "
        "anchored rewards hack less than BT rewards",
        "number": "GPM: BT 'like a random guess' on cyclic preferences, up to +5.6% RewardBench; DNO: 7% -> 33% LC win "
        "rate vs GPT-4-Turbo; APO: 31.73 vs 29.95 LC win rate (AlpacaEval 2) after 3 rounds",
    },
    claims,
    params,
    figures,
    smoke=smoke,
    seeds=seeds,
    extra=extra,
)
print(f"wrote {path}")

# %% [markdown] tags=["findings"]
# ## What we found
#
# The claims as this run judged them, read back from `result.json` (no number here is typed by hand), with our note on
# each claim that did not reproduce. A note names the status it was written for and is withdrawn if a re-run changes
# that status.

# %% tags=["findings"]
from IPython.display import Markdown

from prefkit.repro import what_we_found

why = {  # claim id -> (the status a note was written for, why the claim came out that way in the toy setting)
    "A7": ("reversed", "the GPM head sides with the cyclic majority more often than the BT head (A5), but it is "
           "overconfident where it is wrong: its held-out log-likelihood falls below that of a constant 1/2, while "
           "the BT head, which cannot express the cycle, stays near 1/2 everywhere. The heads are fitted without "
           "regularisation or early stopping on noisy labels (a third of the pairs are ties between responses of "
           "one length level), and a bilinear head can grow its scale freely. Accuracy and likelihood disagree "
           "here; the paper reports accuracy only."),
    "C2": ("reversed", "predicted before the run (the claim's record says so): in the population limit Thm 4.1 makes "
           "APO after T rounds equal to iterative DPO after S_α(T) = Σ_m (1 - α^m)/(1 - α) rounds, and S_0.3(2) is "
           "below 3, so two APO rounds cannot match three DPO rounds in a world where every round is solved "
           "exactly. The paper's Iter2-vs-Iter3 comparison is between LLM runs whose β and data change per round."),
    "C3": ("inconclusive", "APO is faster than iterative DPO on every seed (C1, C4), but by less than Thm 4.1's "
           "noiseless speed-up: with sampled comparisons and the ridge that keeps each round's optimum finite, a "
           "round recovers only part of the true reward, and the extrapolation multiplies that partial step. The "
           "fitted rate sits below the prediction by about the claim's margin, so the interval straddles it."),
    "GF": ("failed", "the margin rule drops about as many round-1 pairs as the gate's floor (its interval straddles "
           "it): on the judge's 1-6 scale most prompts' (best, worst) pairs already have the gap the rule asks for, "
           "since the worst of four student samples is usually well below the best candidate. D5 (the filter "
           "helps) is therefore not judged."),
    "D1": ("not reproduced", "three rounds of DNO leave the oracle score where the SFT model started (the figure: "
           "DNO rises a little in round 2 and falls back in round 3). We have not isolated the cause; what the "
           "record shows is that each round is a short DPO run (40 steps) on about one (best, worst) pair per "
           "prompt, that a sizeable share of those pairs have the teacher's response as the chosen side (GF's "
           "record), a sequence the student does not sample, and that iterative DPO on the student's own samples "
           "does better (D6). The paper's DNO-Prct trains on every pair passing the rule, with replay from earlier "
           "rounds, and a 7B student that can imitate GPT-4's answers; our ~0.5M-parameter model in this budget "
           "does not show the gain."),
    "D2": ("reversed", "the rise is not monotone: round 2 gains a little, round 3 loses more than it gained (the "
           "claim reports the worst round). See D1 for why each round moves the policy so little."),
    "D3": ("inconclusive", "DNO ends near the SFT model, and offline DPO on as many pairs ends slightly below it; "
           "the difference between the two is within the seeds' spread."),
    "D4": ("reversed", "the teacher (noisy demonstrations, gate GD) stays far above every arm in every round: in "
           "this budget nothing closes most of the gap, let alone passes it. The paper's student passes its "
           "teacher on the training prompts' annotator scores after several rounds at a far larger scale."),
    "D6": ("reversed", "iterative DPO on the student's own samples ends above DNO, which adds the teacher's "
           "response to the candidates: in this world, pairs between on-policy samples moved the policy further "
           "than pairs whose chosen side is often an off-policy teacher response (see D1). This is our reading of "
           "the curves, not a tested mechanism."),
    "D7": ("reversed", "weight extrapolation with α = 0.3 hurts here: APO's score drops in round 2 and does not "
           "recover. Our reading: extrapolating the whole weight difference of a round overshoots in a tiny model "
           "whose round steps are already noisy; Part C shows extrapolation working where each round's optimum is "
           "exact (there on the logits of a tabular policy, its weights). The "
           "paper extrapolates 7B weights after full-epoch rounds, whose differences are smoother."),
    "D8": ("reversed", "APO at round 2 is below iterative DPO at round 3 by more than the margin, for the reason "
           "given under D7."),
    "E1": ("not reproduced", "RL with the pairwise anchored reward and RL with the BT reward raise the oracle score "
           "by about the same amount (E5 and gate GE-RLb): both reward models are about equally accurate and "
           "calibrated on these pairs (E3, E4), so the reward signal they give the policy is about the same. The "
           "paper's pairwise model is a generative LLM judge reading both responses as text; ours is a small head "
           "on frozen SFT features, which may not capture what a comparison gains over a score."),
    "E2": ("inconclusive", "both reward models overstate the policy's gain against the anchor by similar amounts "
           "(the figure: each arm's own reward model rises more than the oracle does), and the difference between "
           "the two gaps is small next to the seeds' spread."),
    "E3": ("inconclusive", "the pairwise head is slightly more accurate than the BT model on every seed, by less "
           "than the claim's minimum effect; both read the same frozen features."),
    "E4": ("inconclusive", "the two models' ECE differ by seed in either direction: on one seed the pairwise head "
           "is better calibrated, on the others BT is."),
}  # fmt: skip
display(Markdown(what_we_found(path, why if profile == "toy" and not smoke else {})))
