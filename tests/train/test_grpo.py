"""LEAR's GRPO trainer: sequences in the loss, rollout actors with weight sync, a 2-worker run that
resumes from its checkpoint after a failure."""

from __future__ import annotations

import json

import pytest

from rayapp.extract.data import read_extract_rows, write_extract_rows
from rayapp.train.config import TrainLearConfig
from rayapp.train.grpo import lear_sequences, question_order


def rows(n=8):
    return [{"id": str(i), "question": f"Is fact {i} true?",
             "passages": [f"Fact {i} is true according to study {i}.", f"Unrelated sentence {i}."],
             "answers": ["yes"]} for i in range(n)]


def test_loss_sequences_cover_extraction_and_o_f_only():
    from rayapp.train._policy import pad_sequences

    ext = [{"prompt_ids": [1, 2, 3], "ids": [10, 11]}]
    o_f = [{"prompt_ids": [4, 5], "ids": [20, 21, 22]}]
    seqs = lear_sequences(ext, o_f, [0.5])
    assert [(p, c) for p, c, _, _ in seqs] == [([1, 2, 3], [10, 11]), ([4, 5], [20, 21, 22])]
    assert all(a == 0.5 for *_, a in seqs)
    ids, attn, mask = pad_sequences([(p, c) for p, c, _, _ in seqs], pad_id=0, masks=[m for _, _, m, _ in seqs])
    assert ids[mask.bool()].tolist() == [10, 11, 20, 21, 22]  # only completion tokens
    assert attn.sum().item() == 10 and mask.sum().item() == 5
    # tokens a scaffold inserted (sampled = 0) stay out of the loss
    scaffolded = lear_sequences([{"prompt_ids": [1], "ids": [10, 99, 11], "sampled": [1, 0, 1]}], o_f, [1.0])
    ids, _, mask = pad_sequences([(p, c) for p, c, _, _ in scaffolded], 0, [m for _, _, m, _ in scaffolded])
    assert ids[mask.bool()].tolist() == [10, 11, 20, 21, 22]


def test_question_order_covers_every_row_each_epoch():
    order = question_order(5, 12, seed=3)
    assert len(order) == 12 and sorted(order[:5]) == list(range(5)) and sorted(order[5:10]) == list(range(5))
    assert order == question_order(5, 12, seed=3)


def test_extract_rows_quarantine_bad_lines(tmp_path):
    p = write_extract_rows(rows(2), tmp_path / "x.jsonl")
    with open(p, "a") as f:
        f.write("not json\n" + json.dumps({"question": "q", "passages": [], "answers": ["a"]}) + "\n")
    good, bad = read_extract_rows(p)
    assert len(good) == 2 and [b["line"] for b in bad] == [3, 4]
    assert "passages" in bad[1]["error"]
    with pytest.raises(ValueError, match="no usable extraction row"):
        read_extract_rows(write_extract_rows([], tmp_path / "empty.jsonl"))


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="questions_per_step: 3 is not a multiple of workers=2"):
        TrainLearConfig(data=tmp_path / "x", questions_per_step=3, workers=2)
    with pytest.raises(ValueError, match="extra_forbidden|Extra inputs"):
        TrainLearConfig(data=tmp_path / "x", grup_size=2)


def test_rollout_worker_generates_and_syncs_weights(tiny_lm_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from rayapp.train.rollout import RolloutWorker

    w = RolloutWorker(tiny_lm_dir)
    prompt = [{"role": "user", "content": "hello"}]
    out = w.generate([prompt, prompt], max_tokens=6, temperature=1.0, seed=1)
    assert len(out) == 2 and all(len(o["ids"]) <= 6 and o["prompt_ids"] == w.prompt_ids(prompt) for o in out)
    assert out == w.generate([prompt, prompt], max_tokens=6, temperature=1.0, seed=1)  # seeded
    other = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.0)
    assert w.load_weights(other.state_dict(), 7) == 7
    assert all(float(p.detach().abs().sum()) == 0 for p in w.model.parameters())
    with pytest.raises(ValueError, match="weight sync: missing"):
        w.load_weights({}, 8)


def test_scaffolded_rollout_inserts_tags_outside_the_loss(tiny_lm_dir):
    from rayapp.extract.lear import EXTRACT_OPEN, EXTRACT_PREFIX, EXTRACT_STOP, REASON_STOP
    from rayapp.train.rollout import RolloutWorker

    w = RolloutWorker(tiny_lm_dir)
    prompt = [{"role": "user", "content": "q"}]
    out = w.generate_scaffolded([prompt] * 2, 3, 4, 1.0, 1.0, 0, 8, EXTRACT_PREFIX, REASON_STOP, EXTRACT_OPEN,
                                REASON_STOP + EXTRACT_OPEN, EXTRACT_STOP)
    bridge = w.tok(REASON_STOP + EXTRACT_OPEN, add_special_tokens=False)["input_ids"]
    for o in out:
        assert o["forced"] and o["text"].startswith("<reason>") and "</reason><extract>" in o["text"]
        assert len(o["sampled"]) == len(o["ids"]) and o["sampled"].count(0) == len(bridge)
        k = o["sampled"].index(0)
        assert o["ids"][k: k + len(bridge)] == bridge and o["prompt_ids"] == w.prompt_ids(prompt, "<reason>")


def test_cut_at_stop_keeps_the_closing_tag(tiny_lm_dir):
    from transformers import AutoTokenizer

    from rayapp.train.rollout import cut_at_stop

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    ids = tok("<reason>a</reason><extract>b</extract> trailing words", add_special_tokens=False)["input_ids"]
    cut, text, finish = cut_at_stop(tok, ids, ["</extract>"], tok.eos_token_id)
    assert text == "<reason>a</reason><extract>b</extract>" and finish == "stop"
    assert tok.decode(cut).startswith(text) and len(cut) < len(ids)
    assert cut_at_stop(tok, ids, [], None)[2] == "length"


def _target_nll(model_dir, data_rows):
    """Mean token NLL of the cold-start targets of ``data_rows`` under the model in ``model_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rayapp.extract.cold_start import cold_start_targets
    from rayapp.train._policy import chat_prompt_ids, pad_sequences, sequence_logprobs

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    pairs = [(chat_prompt_ids(tok, m, pre), tok(t, add_special_tokens=False)["input_ids"])
             for r in data_rows for m, pre, t in cold_start_targets({**r, "reference": r["answers"][0]})]
    ids, attn, mask = pad_sequences(pairs, tok.pad_token_id or 0)
    with torch.no_grad():
        return float(-sequence_logprobs(model, ids, attn, mask).sum() / mask.sum())


def test_two_step_grpo_two_workers_rollout_actor_resumes(ray_session, tiny_lm_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from rayapp._internal.artifacts import read_manifest
    from rayapp.train.grpo import train_lear

    data = write_extract_rows(rows(), tmp_path / "rows.jsonl")
    with open(data, "a") as f:
        f.write("{broken\n")
    cfg = TrainLearConfig(model=tiny_lm_dir, data=data, steps=2, questions_per_step=2, group_size=2, workers=2,
                          cpus_per_worker=0.5, rollout={"num_cpus": 0.5, "batch_size": 8}, max_extract_tokens=8,
                          max_answer_tokens=4, micro_batch_size=2, lr=1e-3, checkpoint_every=1, scaffold=True,
                          max_reason_tokens=4, cold_start={"steps": 3, "batch_size": 4, "rows": 2, "lr": 3e-3},
                          inject_failure_at_step=1, deepspeed={"zero_stage": 1}, output_dir=tmp_path / "out")
    out = train_lear(cfg)
    assert (tmp_path / "out" / ".injected-failure").exists()
    assert out["metrics"]["step"] == 2 and out["metrics"]["resumed_from"] == 1  # restarted from step 1's checkpoint
    assert out["metrics"]["world_size"] == 2 and out["bad_rows"] == 1
    lines = [json.loads(x) for x in open(out["metrics_file"])]
    assert [m["step"] for m in lines] == [1, 2]
    for m in lines:
        assert 0 <= m["mean_reward"] <= 1 and 0 <= m["mean_format"] <= 1
        assert all(m[k] >= 0 for k in ("sync_s", "rollout_s", "reward_s", "update_s"))
        assert m["actor_weights_version"] == m["step"] - 1  # the actor sampled the policy of this step
    trained = AutoModelForCausalLM.from_pretrained(out["path"])
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    diff = sum(float((a - b).abs().sum()) for a, b in zip(trained.parameters(), base.parameters()))
    # the scaffold gives every rollout evidence of its own length, so rewards differ within a group
    assert any(m["mean_abs_advantage"] > 0 for m in lines) and diff > 0  # the updates changed the policy
    assert all(m["mean_compression"] is not None for m in lines)
    # the cold start ran first on both workers, lowered the targets' NLL, and GRPO started from it
    warm = out["cold_start"]
    assert read_manifest(warm["path"])["method"] == "lear-cold-start" and warm["reused"] is False
    sft = [json.loads(x) for x in open(warm["metrics_file"])]
    assert [m["step"] for m in sft] == [1, 2, 3] and all(m["world_size"] == 2 and m["examples"] == 8 for m in sft)
    assert _target_nll(warm["path"], rows()[:2]) < _target_nll(tiny_lm_dir, rows()[:2])
    again = train_lear(cfg)
    assert again["reused"] is True


def test_left_padded_logprobs_match_each_sequence_alone(tiny_lm_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from rayapp.train._policy import pad_sequences, sequence_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    pairs = [([5, 6, 7, 8, 9], [10, 11]), ([12, 13], [14, 15, 16, 17])]
    ids, attn, mask = pad_sequences(pairs, pad_id=0)
    with torch.no_grad():
        batched = sequence_logprobs(model, ids, attn, mask)
        for i, (p, c) in enumerate(pairs):
            x = torch.tensor([p + c])
            full = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), -1)
            alone = full[torch.arange(len(p) - 1, len(p) + len(c) - 1), torch.tensor(c)].sum()
            assert float(batched[i]) == pytest.approx(float(alone), abs=1e-4)


def test_lora_weight_sync_sends_only_the_adapter(tiny_lm_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from rayapp.train._policy import apply_lora, policy_state
    from rayapp.train.config import LoraConfig
    from rayapp.train.rollout import RolloutWorker

    lora = LoraConfig(r=2, alpha=4, dropout=0.0).model_dump()
    policy = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_lm_dir), lora)
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.fill_(0.5)  # a trained adapter (B starts at 0)
    state = policy_state(policy, lora=True, zero3=False)
    assert state and all("lora_" in k for k in state)
    w = RolloutWorker(tiny_lm_dir, lora=lora)
    prompt = [{"role": "user", "content": "hi"}]
    w.load_weights(state, 1)
    x = torch.tensor([w.prompt_ids(prompt)])
    with torch.no_grad():
        assert torch.allclose(w.model(input_ids=x).logits, policy(input_ids=x).logits, atol=1e-5)
    assert w.version == 1
