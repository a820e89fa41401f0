"""Chat completion engines behind one request/response type, picked by ``generator.backend``.

- ``hf``: a Hugging Face causal LM (CPU float32; CUDA bfloat16 when a GPU is visible). A batch of
  requests shares forward passes: requests with the same sampling settings go through one
  left-padded ``generate`` call. Tokens stream through ``TextIteratorStreamer``.
- ``onnx``: ONNX Runtime GenAI on CPU (the model exported once by its model builder). A replica
  loads in about a second without torch or transformers; greedy answers equal ``hf``'s at fp32.
  Requests with the same sampling settings share one batched generator.
- ``vllm``: vLLM's offline engine (GPU clusters; continuous batching inside vLLM). Selected by
  config when the ``vllm`` package is installed; it streams the finished text as one chunk.

All take :class:`ChatMessage` lists and :class:`Sampling` and return :class:`Completion`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Optional

import numpy as np
from pydantic import Field, StrictStr

from rayapp.config import GeneratorConfig, StrictModel
from rayapp._internal.registry import registrar

__all__ = ["ChatMessage", "Sampling", "Completion", "BACKENDS", "register_backend", "make_backend",
           "HFBackend", "OnnxBackend", "VLLMBackend", "BackendUnavailableError"]


class ChatMessage(StrictModel):
    role: Literal["system", "user", "assistant"]
    content: StrictStr


class Sampling(StrictModel):
    """Sampling settings; ``temperature == 0`` is greedy decoding (``top_p`` and ``seed`` unused)."""

    max_tokens: int = Field(default=64, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: Optional[int] = None
    stop: list[str] = []

    def group_key(self) -> tuple:
        """Requests with equal keys can share one ``generate`` call."""
        sampled = self.temperature > 0
        return (sampled, self.temperature if sampled else 0.0, self.top_p if sampled else 1.0,
                self.seed if sampled else None, tuple(self.stop))


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class BackendUnavailableError(RuntimeError):
    pass


BACKENDS: dict[str, Callable[..., Any]] = {}


#: Register a chat engine class under ``name`` (``generator.backend``).
register_backend = registrar(BACKENDS, "backend")


def make_backend(cfg: GeneratorConfig, **kw):
    if cfg.backend not in BACKENDS:
        raise ValueError(f"generator.backend: unknown backend {cfg.backend!r} (known: {sorted(BACKENDS)})")
    return BACKENDS[cfg.backend](cfg, **kw)


def _cut(text: str, stop: list[str]) -> tuple[str, bool]:
    at = [text.find(s) for s in stop if s and s in text]
    return (text[: min(at)], True) if at else (text, False)


@register_backend("hf")
class HFBackend:
    """A transformers causal LM; pass ``tokenizer`` and ``model`` to share an already loaded one."""

    def __init__(self, cfg: GeneratorConfig, tokenizer=None, model=None):
        import torch

        torch.set_num_threads(cfg.torch_threads)
        if model is None:
            from rayapp.models import load_causal_lm

            tokenizer, model = load_causal_lm(cfg.model)
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda":
            model = model.to(device="cuda", dtype=torch.bfloat16)
        self.cfg, self.tok, self.model, self.device = cfg, tokenizer, model, device
        self.model_id = cfg.served_name or cfg.model
        self._lock = threading.Lock()  # one generate at a time per replica

    def prompt_ids(self, messages: list[ChatMessage], prefix: str = "") -> list[int]:
        """Token ids of the chat prompt; ``prefix`` opens the assistant's turn (part of the answer)."""
        text = self.tok.apply_chat_template([m.model_dump() for m in messages], add_generation_prompt=True,
                                            tokenize=False)
        return self.tok(text + prefix, add_special_tokens=False)["input_ids"]

    def _gen_kwargs(self, s: Sampling) -> dict[str, Any]:
        kw: dict[str, Any] = {"do_sample": s.temperature > 0, "repetition_penalty": self.cfg.repetition_penalty,
                              "pad_token_id": self.tok.pad_token_id if self.tok.pad_token_id is not None
                              else self.tok.eos_token_id}
        if s.temperature > 0:
            kw.update(temperature=s.temperature, top_p=s.top_p)
        if s.stop:
            kw.update(stop_strings=list(s.stop), tokenizer=self.tok)
        return kw

    def complete(self, batch: list[tuple[list[ChatMessage], Sampling]]) -> list[Completion]:
        """Completions in request order; one ``generate`` per group of equal sampling settings."""
        import torch

        groups: dict[tuple, list[int]] = {}
        for i, (_, s) in enumerate(batch):
            groups.setdefault(s.group_key(), []).append(i)
        out: list[Optional[Completion]] = [None] * len(batch)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        for rows in groups.values():
            prompts = [self.prompt_ids(batch[i][0]) for i in rows]
            width = max(map(len, prompts))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.model.device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.model.device)
            s0 = batch[rows[0]][1]
            with self._lock, torch.inference_mode():
                if s0.seed is not None and s0.temperature > 0:
                    torch.manual_seed(s0.seed)
                gen = self.model.generate(input_ids=ids, attention_mask=mask,
                                          max_new_tokens=max(batch[i][1].max_tokens for i in rows),
                                          **self._gen_kwargs(s0))
            for r, i in enumerate(rows):
                new = gen[r, width:].tolist()[: batch[i][1].max_tokens]
                eos = next((k for k, t in enumerate(new) if t == self.tok.eos_token_id), None)
                if eos is not None:
                    new = new[: eos + 1]
                text, stopped = _cut(self.tok.decode(new, skip_special_tokens=True), s0.stop)
                reason = "stop" if stopped or eos is not None else "length"
                out[i] = Completion(text, reason, len(prompts[r]), len(new))
        return out  # type: ignore[return-value]

    def stream(self, messages: list[ChatMessage], s: Sampling, prefix: str = "") -> Iterator[dict[str, Any]]:
        """``{"delta": text}`` chunks as tokens are decoded, then ``{"finish_reason", "usage"}``.
        Text that might be the start of a stop string is held back until it is decided. ``prefix``
        opens the assistant's turn; it is not yielded (the caller has it)."""
        import torch
        from transformers import TextIteratorStreamer

        ids = self.prompt_ids(messages, prefix)
        streamer = TextIteratorStreamer(self.tok, skip_prompt=True, skip_special_tokens=True)
        counter = _TokenCounter(len(ids))
        x = torch.tensor([ids], device=self.model.device)

        failed: list[BaseException] = []

        def run():
            try:
                with self._lock, torch.inference_mode():
                    if s.seed is not None and s.temperature > 0:
                        torch.manual_seed(s.seed)
                    self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=s.max_tokens,
                                        streamer=streamer, logits_processor=[counter], **self._gen_kwargs(s))
            except BaseException as e:  # end the stream, then re-raise in the caller
                failed.append(e)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        text, sent, stopped = "", 0, False
        hold = max((len(t) for t in s.stop), default=1) - 1
        for piece in streamer:
            text += piece
            cut, stopped = _cut(text, s.stop)
            upto = len(cut) if stopped else max(sent, len(text) - hold)
            if upto > sent:
                yield {"delta": cut[sent:upto]}
                sent = upto
            if stopped:
                break
        if stopped:  # drain what is left (generation itself ends on the stop string)
            for _ in streamer:
                pass
        worker.join()
        if failed:
            raise failed[0]
        if not stopped and len(text) > sent:
            yield {"delta": text[sent:]}
        n = counter.generated
        reason = "stop" if stopped or n < s.max_tokens else "length"
        yield {"finish_reason": reason, "usage": {"prompt_tokens": len(ids), "completion_tokens": n}}


class _TokenCounter:
    """A logits processor that only counts decoding steps (tokens generated)."""

    def __init__(self, prompt_len: int):
        self.prompt_len, self.generated = prompt_len, 0

    def __call__(self, input_ids, scores):
        self.generated = input_ids.shape[1] - self.prompt_len + 1
        return scores


def onnx_model_dir(cfg: GeneratorConfig):
    """The ONNX Runtime GenAI folder of ``cfg.model`` at ``cfg.onnx_precision``: the model resolved
    (the GGUF conversion for ``smollm2``) and exported once, both cached; a cache hit loads nothing."""
    from pathlib import Path

    from rayapp.models import model_cache_dir, resolve_generator
    from rayapp.models._onnx import export_genai

    folder = Path(resolve_generator(cfg.model))
    if not folder.is_dir():
        raise BackendUnavailableError(f"generator.backend: 'onnx' needs a local model folder, not {cfg.model!r}")
    return export_genai(folder, cfg.onnx_precision, model_cache_dir())


@register_backend("onnx")
class OnnxBackend:
    """ONNX Runtime GenAI on CPU. The model is exported once by onnxruntime-genai's model builder
    (:func:`onnx_model_dir`, cached by the weights and ``onnx_precision``); a
    replica then loads it in about a second and imports neither torch nor transformers.

    At ``fp32`` greedy answers are token for token those of ``hf`` (same chat template, same
    repetition penalty; the tests compare them). Requests with equal sampling settings share one
    batched generator (right-padded prompts). :meth:`answer` is the RAG answer with the answer prefix
    and the first-citation constraint (the first token's logits masked to the source numbers).
    Not PICA, which hooks torch modules."""

    def __init__(self, cfg: GeneratorConfig, tokenizer=None, model=None):
        if tokenizer is not None or model is not None:
            raise ValueError("generator.backend 'onnx' loads its own model; it cannot share a torch one")
        if cfg.device == "cuda":
            raise BackendUnavailableError("generator.backend: 'onnx' runs on CPU; use hf or vllm on a GPU")
        try:
            import onnxruntime_genai as og
        except ImportError as e:
            raise BackendUnavailableError("generator.backend: 'onnx' needs the onnxruntime-genai package "
                                          "(pip install onnxruntime-genai)") from e
        config = og.Config(str(onnx_model_dir(cfg)))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {
            "intra_op_num_threads": cfg.torch_threads, "inter_op_num_threads": 1}}}}))
        self.og, self.cfg = og, cfg
        self.model = og.Model(config)
        self.tok = og.Tokenizer(self.model)
        self.eos = {int(t) for t in self.tok.eos_token_ids}
        self.pad = int(self.tok.pad_token_id)
        self.model_id = cfg.served_name or cfg.model
        self.device = "cpu"
        self._lock = threading.Lock()  # one generator at a time per replica

    def prompt_ids(self, messages: list, prefix: str = "") -> list[int]:
        """Token ids of the chat prompt (messages as :class:`ChatMessage` or dicts); ``prefix``
        opens the assistant's turn."""
        rows = [m if isinstance(m, dict) else m.model_dump() for m in messages]
        text = self.tok.apply_chat_template(json.dumps(rows), add_generation_prompt=True)
        return [int(t) for t in self.tok.encode(text + prefix)]

    def _decode(self, ids: list[int]) -> str:
        return self.tok.decode(np.asarray(ids, dtype=np.int32)) if ids else ""

    def _steps(self, prompts: list[list[int]], s: Sampling, first: Optional[list[int]] = None) -> Iterator[list[int]]:
        """Each decoding step's new token of every row; ``first`` restricts the first token."""
        params = self.og.GeneratorParams(self.model)
        width = max(map(len, prompts))
        opts: dict[str, Any] = {"batch_size": len(prompts), "max_length": width + s.max_tokens,
                                "do_sample": s.temperature > 0, "repetition_penalty": self.cfg.repetition_penalty}
        if s.temperature > 0:
            opts.update(temperature=s.temperature, top_p=s.top_p)
            if s.seed is not None:
                opts["random_seed"] = s.seed
        params.set_search_options(**opts)
        gen = self.og.Generator(self.model, params)
        gen.append_tokens(prompts[0] if len(prompts) == 1 else
                          np.array([p + [self.pad] * (width - len(p)) for p in prompts], dtype=np.int32))
        if first:
            logits = gen.get_logits()
            masked = np.full_like(logits, -1e30)
            masked[..., first] = logits[..., first]
            gen.set_logits(masked)
        while not gen.is_done():
            gen.generate_next_token()
            yield [int(t) for t in gen.get_next_tokens()]

    def _complete(self, prompts: list[list[int]], s: Sampling, limits: list[int],
                  first: Optional[list[int]] = None) -> list[list[int]]:
        """New tokens of each row (its EOS included), each cut at its limit, EOS or stop string."""
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        with self._lock:
            for step in self._steps(prompts, s, first):
                for r, t in enumerate(step):
                    if done[r]:
                        continue
                    new[r].append(t)
                    done[r] = (t in self.eos or len(new[r]) >= limits[r]
                               or bool(s.stop) and _cut(self._decode(new[r]), s.stop)[1])
                if all(done):
                    break
        return new

    def _completion(self, prompt: list[int], new: list[int], stop: list[str]) -> Completion:
        text, stopped = _cut(self._decode(new), stop)
        eos = any(t in self.eos for t in new)
        return Completion(text, "stop" if stopped or eos else "length", len(prompt), len(new))

    def complete(self, batch: list[tuple[list[ChatMessage], Sampling]]) -> list[Completion]:
        """Completions in request order; one batched generator per group of equal sampling settings."""
        groups: dict[tuple, list[int]] = {}
        for i, (_, s) in enumerate(batch):
            groups.setdefault(s.group_key(), []).append(i)
        out: list[Optional[Completion]] = [None] * len(batch)
        for rows in groups.values():
            prompts = [self.prompt_ids(batch[i][0]) for i in rows]
            limits = [batch[i][1].max_tokens for i in rows]
            s0 = batch[rows[0]][1].model_copy(update={"max_tokens": max(limits)})
            for r, new in enumerate(self._complete(prompts, s0, limits)):
                out[rows[r]] = self._completion(prompts[r], new, s0.stop)
        return out  # type: ignore[return-value]

    def answer(self, question: str, hits: list, max_new_tokens: Optional[int] = None) -> dict[str, Any]:
        """The RAG answer, as :meth:`rayapp.generate.Generator.generate` gives it (greedy, the answer
        prefix, the first token constrained to a source number when the prefix ends in "[")."""
        from rayapp.generate import build_messages, parse_citations

        t0 = time.perf_counter()
        messages, used = build_messages(question, hits, self.cfg)
        prefix = self.cfg.answer_prefix
        ids = self.prompt_ids(messages, prefix)
        first = None
        if self.cfg.constrain_first_citation and prefix.endswith("["):
            first = sorted({int(self.tok.encode(str(i))[0]) for i in range(1, len(used) + 1)})
        n = max_new_tokens or self.cfg.max_new_tokens
        (new,) = self._complete([ids], Sampling(max_tokens=n), [n], first)
        text = (prefix + self._decode(new)).strip()
        return {"text": text, "citations": parse_citations(text, used), "context_ids": [h.id for h in used],
                "n_prompt_tokens": len(ids), "n_new_tokens": len(new), "seconds": round(time.perf_counter() - t0, 6)}

    def stream(self, messages: list[ChatMessage], s: Sampling, prefix: str = "") -> Iterator[dict[str, Any]]:
        """``{"delta": text}`` chunks as tokens are decoded, then ``{"finish_reason", "usage"}``, with
        :class:`HFBackend.stream`'s rules (stop strings held back until decided; ``prefix`` not yielded).
        Text ending in an incomplete UTF-8 character waits for the next token."""
        ids = self.prompt_ids(messages, prefix)
        new: list[int] = []
        text, sent, stopped, eos = "", 0, False, False
        hold = max((len(t) for t in s.stop), default=1) - 1
        with self._lock:
            for (t,) in self._steps([ids], s):
                new.append(t)
                eos = t in self.eos
                text = self._decode(new)
                cut, stopped = _cut(text, s.stop)
                upto = len(cut) if stopped else max(sent, len(text) - hold)
                if upto > sent and not cut[:upto].endswith("\ufffd"):
                    yield {"delta": cut[sent:upto]}
                    sent = upto
                if stopped or eos or len(new) >= s.max_tokens:
                    break
        if not stopped and len(text) > sent:
            yield {"delta": text[sent:]}
        reason = "stop" if stopped or eos else "length"
        yield {"finish_reason": reason, "usage": {"prompt_tokens": len(ids), "completion_tokens": len(new)}}


@register_backend("vllm")
class VLLMBackend:
    """vLLM's offline ``LLM`` (GPU). Untested on this project's CPU machines: no GPU here."""

    def __init__(self, cfg: GeneratorConfig, tokenizer=None, model=None):
        try:
            from vllm import LLM
        except ImportError as e:
            raise BackendUnavailableError("generator.backend: 'vllm' needs the vllm package on a GPU machine "
                                          "(pip install vllm); use backend: hf elsewhere") from e
        from rayapp.models import resolve_generator

        self.cfg = cfg
        self.llm = LLM(model=resolve_generator(cfg.model), dtype="bfloat16", seed=0)
        self.tok = self.llm.get_tokenizer()
        self.model_id = cfg.served_name or cfg.model

    def _params(self, s: Sampling):
        from vllm import SamplingParams

        return SamplingParams(max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p, seed=s.seed,
                              stop=list(s.stop) or None, repetition_penalty=self.cfg.repetition_penalty)

    def complete(self, batch: list[tuple[list[ChatMessage], Sampling]]) -> list[Completion]:
        outs = self.llm.chat([[m.model_dump() for m in msgs] for msgs, _ in batch],
                             [self._params(s) for _, s in batch], use_tqdm=False)
        return [Completion(o.outputs[0].text, "length" if o.outputs[0].finish_reason == "length" else "stop",
                           len(o.prompt_token_ids), len(o.outputs[0].token_ids)) for o in outs]

    def stream(self, messages: list[ChatMessage], s: Sampling, prefix: str = "") -> Iterator[dict[str, Any]]:
        if prefix:
            raise ValueError("vllm backend: an answer prefix is not supported; set generator.answer_prefix: ''")
        c = self.complete([(messages, s)])[0]
        yield {"delta": c.text}
        yield {"finish_reason": c.finish_reason, "usage": {"prompt_tokens": c.prompt_tokens,
                                                           "completion_tokens": c.completion_tokens}}
