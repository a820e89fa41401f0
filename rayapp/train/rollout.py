"""Rollout actors: generation workers for RL and preference-data sampling, with weight sync.

A :class:`RolloutWorker` holds its own copy of the policy (Hugging Face ``generate``; CPU float32 or
CUDA bfloat16). The trainer pushes its weights after every update (:meth:`RolloutWorker.load_weights`,
the full state dict, or only the LoRA adapter's), so the next rollouts sample from the current
policy. The driver creates the actors with their own resources (``rollout.num_cpus``/``num_gpus``/
``resources``), so they can share the trainer's nodes or sit on others.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = ["RolloutWorker", "cut_at_stop", "start_rollout_actors"]


def cut_at_stop(tok, ids: list[int], stop: list[str], eos_id: Optional[int]) -> tuple[list[int], str, str]:
    """(ids, text, finish): the tokens up to and including the first stop string (kept in the text:
    LEAR's format reward needs the closing tag) or the EOS token; else all of them ("length")."""
    if eos_id is not None and eos_id in ids:
        ids = ids[: ids.index(eos_id) + 1]
        finish = "stop"
    else:
        finish = "length"
    text = tok.decode(ids, skip_special_tokens=True)
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if not hits:
        return ids, text, finish
    at, s = min(hits)
    end = at + len(s)
    for k in range(1, len(ids) + 1):  # the shortest token prefix that holds the stop string
        if len(tok.decode(ids[:k], skip_special_tokens=True)) >= end:
            return ids[:k], text[:end], "stop"
    return ids, text[:end], "stop"


class RolloutWorker:
    """One policy copy for sampling. ``generate`` takes chat prompts and returns, per sample, the
    prompt's token ids, the completion's token ids and text: the trainer scores exactly the tokens
    that were sampled (no re-tokenisation)."""

    def __init__(self, model_path: str, torch_threads: int = 1, lora: Optional[dict[str, Any]] = None,
                 device: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(torch_threads)
        self.tok = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path)
        if lora:
            from rayapp.train._policy import apply_lora

            model = apply_lora(model, lora)
        self.device = device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda":
            model = model.to(device="cuda", dtype=torch.bfloat16)
        self.model = model.eval()
        self.lora = bool(lora)
        self.version = -1
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id

    def prompt_ids(self, messages: list[dict[str, str]], prefix: str = "") -> list[int]:
        """The chat prompt's ids, the assistant's turn opened with ``prefix``."""
        from rayapp.train._policy import chat_prompt_ids

        return chat_prompt_ids(self.tok, messages, prefix)

    def ready(self) -> bool:
        return True

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def load_weights(self, state: dict[str, Any], version: int) -> int:
        """Replace the weights (a full state dict, or the LoRA adapter's when built with ``lora``)."""
        import torch

        with torch.no_grad():
            if self.lora:
                from peft import set_peft_model_state_dict

                set_peft_model_state_dict(self.model, state)
            else:
                missing, unexpected = self.model.load_state_dict(state, strict=False)
                missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
                if missing or unexpected:
                    raise ValueError(f"weight sync: missing {missing[:3]}, unexpected {unexpected[:3]}")
        self.version = version
        return version

    def score(self, prompts: list[list[dict[str, str]]], targets: list[str], batch_size: int = 8) -> list[float]:
        """log p(target | prompt) summed over the target's tokens, the assistant's turn after ``prompt``
        (teacher forcing; SEER's helpfulness expert)."""
        import torch

        from rayapp.train._policy import pad_sequences, sequence_logprobs

        pairs = [(self.prompt_ids(p), self.tok(t, add_special_tokens=False)["input_ids"]) for p, t in zip(prompts, targets)]
        out: list[float] = []
        with torch.inference_mode():
            for b in range(0, len(pairs), batch_size):
                ids, attn, mask = pad_sequences(pairs[b: b + batch_size], self.pad)
                out += sequence_logprobs(self.model, ids.to(self.device), attn.to(self.device),
                                         mask.to(self.device)).tolist()
        return out

    def generate(self, prompts: list[list[dict[str, str]]], max_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, stop: Optional[list[str]] = None, seed: Optional[int] = None,
                 batch_size: int = 16, prefix: str = "") -> list[dict[str, Any]]:
        """Per prompt: ``prompt_ids`` (with ``prefix``), the sampled ``ids``, ``text`` (``prefix`` +
        the decoded ids, cut after the first stop string) and ``finish``."""
        out = self.generate_ids([self.prompt_ids(p, prefix) for p in prompts], max_tokens, temperature, top_p, stop,
                                seed, batch_size)
        return [{**o, "text": prefix + o["text"]} for o in out]

    def generate_ids(self, prompt_ids: list[list[int]], max_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                     stop: Optional[list[str]] = None, seed: Optional[int] = None,
                     batch_size: int = 16) -> list[dict[str, Any]]:
        """:meth:`generate` from token ids (``text`` is the decoded completion only)."""
        import torch

        stop = list(stop or [])
        out = []
        for b in range(0, len(prompt_ids), batch_size):
            chunk = prompt_ids[b: b + batch_size]
            width = max(map(len, chunk))
            ids = torch.tensor([[self.pad] * (width - len(p)) + p for p in chunk], device=self.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=self.device)
            kw: dict[str, Any] = {"do_sample": temperature > 0, "pad_token_id": self.pad,
                                  "max_new_tokens": max_tokens}
            if temperature > 0:
                kw.update(temperature=temperature, top_p=top_p, top_k=0)
            if stop:
                kw.update(stop_strings=stop, tokenizer=self.tok)
            with torch.inference_mode():
                if seed is not None:
                    torch.manual_seed(seed + b)
                gen = self.model.generate(input_ids=ids, attention_mask=mask, **kw)
            for r, p in enumerate(chunk):
                new = gen[r, width:].tolist()
                while new and new[-1] == self.pad and self.pad != self.tok.eos_token_id:
                    new.pop()  # padding after a sequence that ended early in the batch
                new, text, finish = cut_at_stop(self.tok, new, stop, self.tok.eos_token_id)
                out.append({"prompt_ids": list(p), "ids": new, "text": text, "finish": finish})
        return out

    def generate_scaffolded(self, prompts: list[list[dict[str, str]]], max_first: int, max_second: int,
                            temperature: float, top_p: float, seed: Optional[int], batch_size: int, prefix: str,
                            first_stop: str, bridge_closed: str, bridge_open: str,
                            second_stop: str) -> list[dict[str, Any]]:
        """Two-phase sampling for small models: sample up to ``first_stop`` (at most ``max_first``
        tokens), insert a bridge (``bridge_closed`` when the model wrote ``first_stop`` itself, else
        ``bridge_open``, which closes it), then sample up to ``second_stop``. ``sampled`` marks the
        completion tokens the policy sampled (inserted ones are 0, and stay out of the loss);
        ``forced`` says that the first section's closing tag was inserted."""
        eos = self.tok.eos_token_id
        first = self.generate(prompts, max_first, temperature, top_p, [first_stop], seed, batch_size, prefix)
        bridges = []
        for o in first:
            if o["ids"] and o["ids"][-1] == eos:
                o["ids"] = o["ids"][:-1]  # ended early: continue after the text, not after EOS
            closed = o["finish"] == "stop" and o["text"].endswith(first_stop)
            bridge = bridge_closed if closed else bridge_open
            bridges.append((closed, bridge, self.tok(bridge, add_special_tokens=False)["input_ids"]))
        second = self.generate_ids([o["prompt_ids"] + o["ids"] + b for o, (_, _, b) in zip(first, bridges)],
                                   max_second, temperature, top_p, [second_stop],
                                   None if seed is None else seed + 7919, batch_size)
        out = []
        for o, (closed, bridge, bids), s2 in zip(first, bridges, second):
            out.append({"prompt_ids": o["prompt_ids"], "ids": o["ids"] + bids + s2["ids"],
                        "sampled": [1] * len(o["ids"]) + [0] * len(bids) + [1] * len(s2["ids"]),
                        "text": o["text"] + bridge + s2["text"], "finish": s2["finish"], "forced": not closed})
        return out


def start_rollout_actors(model_path: str, rollout, lora: Optional[dict[str, Any]] = None) -> list:
    """``rollout.actors`` :class:`RolloutWorker` actors with ``rollout``'s resources."""
    import ray

    cls = ray.remote(RolloutWorker)
    opts: dict[str, Any] = {"num_cpus": rollout.num_cpus, "num_gpus": rollout.num_gpus}
    if rollout.resources:
        opts["resources"] = dict(rollout.resources)
    actors = [cls.options(**opts).remote(model_path, rollout.torch_threads, lora) for _ in range(rollout.actors)]
    ray.get([a.ready.remote() for a in actors])
    return actors
