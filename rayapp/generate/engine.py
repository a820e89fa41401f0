"""Chat completion engines behind one request/response type, picked by ``generator.backend``.

- ``hf``: a Hugging Face causal LM (CPU float32; CUDA bfloat16 when a GPU is visible). A batch of
  requests shares forward passes: requests with the same sampling settings go through one
  left-padded ``generate`` call. Tokens stream through ``TextIteratorStreamer``.
- ``vllm``: vLLM's offline engine (GPU clusters; continuous batching inside vLLM). Selected by
  config when the ``vllm`` package is installed; it streams the finished text as one chunk.

Both take :class:`ChatMessage` lists and :class:`Sampling` and return :class:`Completion`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Optional

from pydantic import Field, StrictStr

from rayapp.config import GeneratorConfig, StrictModel
from rayapp._internal.registry import registrar

__all__ = ["ChatMessage", "Sampling", "Completion", "BACKENDS", "register_backend", "make_backend",
           "HFBackend", "VLLMBackend", "BackendUnavailableError"]


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
