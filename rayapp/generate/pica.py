"""PICA: progressive in-context alignment (arXiv 2503.09958; official code HITsz-TMG/PICA).

ICL pays for its demonstrations at every decoding step (a long KV cache). PICA keeps them only as
long as it needs them:

1. **Few-shot stage.** The prompt ``system + demos + "# Query:\\n" + query + "\\n\\n" + separator``
   (demos written as ``# Query:`` ... ``# Answer:`` plus a code fence, the separator being
   ``"# Answer:\\n```\\n"``) is decoded greedily for ``prior_tokens`` tokens (default 10). If the
   stop sequence or EOS appears within them, that is the answer.
2. **ICL vector.** In the same prefill pass, the outputs of ``self_attn.o_proj`` of layers
   ``0..L-1`` and of ``embed_tokens`` are read at the query's separator positions: a tensor
   ``[L+1, n_sep, hidden]`` (row 0 is the embedding output). In *task* mode the vector is instead
   the mean over a fixed set of dummy queries, computed once per task and stored
   (:class:`TaskVectorStore`).
3. **Zero-shot stage.** ``system + "# Query:\\n" + query + "\\n\\n" + separator + prior tokens``
   with no demonstrations; in the prefill pass only, those layers' ``o_proj`` outputs at the
   separator positions are replaced by the vector (torch forward hooks); then greedy decoding
   continues from a KV cache that never held the demonstrations.

``L`` defaults to the paper's 9 of 32 layers scaled to the model's depth (``round(9/32 * layers)``).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from rayapp.config import Demo, PicaConfig

__all__ = ["Demo", "PicaConfig", "PicaResult", "Pica", "TaskVectorStore", "greedy_decode"]


@dataclass
class PicaResult:
    text: str
    token_ids: list[int]
    finish_reason: str  # "stop" or "length"
    stage: str  # "few_shot" when the few-shot stage finished the answer, else "zero_shot"
    prompt_tokens: int
    cache_len: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _layers(model) -> list:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not all(hasattr(getattr(lay, "self_attn", None), "o_proj") for lay in layers):
        raise ValueError(f"PICA needs a decoder whose layers have self_attn.o_proj "
                         f"(Llama, Qwen2, Mistral ...); {type(model).__name__} has none")
    return list(layers)


def _hook_modules(model, n_layers: int) -> list:
    return [model.get_input_embeddings()] + [lay.self_attn.o_proj for lay in _layers(model)[:n_layers]]


@contextmanager
def _hooks(modules: list, fn) -> Iterator[None]:
    """``fn(i, output) -> output or None`` as a forward hook on ``modules[i]`` for the block; it runs
    before any hook registered earlier, so other observers see what PICA replaced."""
    handles = [m.register_forward_hook(lambda _m, _inp, out, i=i: fn(i, out), prepend=True)
               for i, m in enumerate(modules)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _eos_ids(model, tokenizer) -> set[int]:
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return {t for t in (gen if isinstance(gen, list) else [gen]) + [tokenizer.eos_token_id] if t is not None}


def _cache_kw(model) -> str:
    """The KV-cache argument's name: ``cache`` in recent transformers, ``past_key_values`` before."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def _stopped(tokenizer, ids: list[int], stop: list[str], eos: set[int]) -> bool:
    if ids and ids[-1] in eos:
        return True
    tail = tokenizer.decode(ids[-12:], skip_special_tokens=True)
    return any(s in tail for s in stop)


def greedy_decode(model, tokenizer, ids: list[int], max_new_tokens: int, stop: list[str],
                  hook_modules: Optional[list] = None, prefill_hook=None) -> tuple[list[int], int, float, float]:
    """Greedy decoding of ``ids`` with a KV cache; ``prefill_hook`` (``fn(i, output)``) runs on
    ``hook_modules`` during the prefill pass only. Returns (new ids, KV cache length, prefill
    seconds, decode seconds); stops after EOS or a stop string (both kept in the ids)."""
    import torch

    eos = _eos_ids(model, tokenizer)
    kw = _cache_kw(model)
    t0 = time.perf_counter()
    new: list[int] = []
    with torch.inference_mode():
        x = torch.tensor([ids], dtype=torch.long, device=model.device)
        if prefill_hook is not None:
            with _hooks(hook_modules, prefill_hook):
                out = model(input_ids=x, use_cache=True)
        else:
            out = model(input_ids=x, use_cache=True)
        t1 = time.perf_counter()
        past = _cache_of(out)
        for _ in range(max_new_tokens):
            nxt = int(out.logits[0, -1].argmax())
            new.append(nxt)
            if _stopped(tokenizer, new, stop, eos) or len(new) == max_new_tokens:
                break
            out = model(input_ids=torch.tensor([[nxt]], device=model.device), use_cache=True, **{kw: past})
            past = _cache_of(out)
    return new, int(past.get_seq_length()), t1 - t0, time.perf_counter() - t1


class _Capture:
    """A prefill hook (``fn(i, output)``) that keeps module ``i``'s outputs at ``pos``; ``vector()``
    stacks them in module order: ``[L+1, n_sep, hidden]``."""

    def __init__(self, pos: list[int]):
        self.pos, self.got = pos, {}

    def __call__(self, i: int, out) -> None:
        self.got[i] = out[0, self.pos].float().clone()

    def vector(self):
        import torch

        return torch.stack([self.got[i] for i in range(len(self.got))])


class TaskVectorStore:
    """Task-level ICL vectors on disk: ``<root>/<task>.safetensors`` plus ``<task>.json`` (the key:
    model, config and demonstrations it was computed from). A vector whose key no longer matches
    is recomputed, never silently reused."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def load(self, task: str, key: str):
        from safetensors.torch import load_file

        meta = self.root / f"{task}.json"
        if not meta.is_file() or json.loads(meta.read_text(encoding="utf-8")).get("key") != key:
            return None
        return load_file(self.root / f"{task}.safetensors")["vector"]

    def save(self, task: str, key: str, vector, info: dict[str, Any]) -> Path:
        from safetensors.torch import save_file

        from rayapp._internal.artifacts import write_json_atomic

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{task}.safetensors.tmp"
        save_file({"vector": vector.contiguous()}, str(tmp))
        tmp.replace(self.root / f"{task}.safetensors")
        write_json_atomic(self.root / f"{task}.json", {"key": key, "task": task, "shape": list(vector.shape), **info})
        return self.root / f"{task}.safetensors"


class Pica:
    """PICA over a Hugging Face decoder (batch size 1, greedy). ``icl`` and ``zero_shot`` run the
    same decoding loop, so the three modes are comparable token for token and second for second."""

    def __init__(self, tokenizer, model, cfg: PicaConfig = PicaConfig()):
        self.tok, self.model, self.cfg = tokenizer, model, cfg
        depth = len(_layers(model))
        self.n_layers = min(depth, cfg.layers or max(1, round(9 / 32 * depth)))
        self.modules = _hook_modules(model, self.n_layers)
        self.sep_ids = tokenizer(cfg.separator, add_special_tokens=False)["input_ids"]
        self.eos = _eos_ids(model, tokenizer)

    # ------------------------------------------------------------------------------------ prompts
    def prompt(self, query: str, demos: list[Demo], system: Optional[str] = None) -> tuple[list[int], list[int]]:
        """Token ids of the prompt and the positions of the query's separator tokens (the last
        ``n_sep``). The separator is tokenised on its own so its positions are exact."""
        c = self.cfg
        head = (system if system is not None else c.system_prompt) + "\n\n"
        head += "".join(f"{c.query_prefix}{d.query}\n\n{c.separator}{d.answer}\n{c.stop[0] if c.stop else ''}\n\n"
                        for d in demos)
        head += f"{c.query_prefix}{query}\n\n"
        ids = self.tok(head)["input_ids"] + self.sep_ids
        return ids, list(range(len(ids) - len(self.sep_ids), len(ids)))

    # ---------------------------------------------------------------------------------- vectors
    def icl_vector(self, query: str, demos: list[Demo], system: Optional[str] = None):
        """The ``[L+1, n_sep, hidden]`` activations at the separator of the few-shot prompt."""
        import torch

        ids, pos = self.prompt(query, demos, system)
        capture = _Capture(pos)
        with torch.inference_mode(), _hooks(self.modules, capture):
            self.model(input_ids=torch.tensor([ids], device=self.model.device), use_cache=False)
        return capture.vector()

    def task_vector(self, demos: list[Demo], system: Optional[str] = None):
        """Task mode: the ICL vector averaged over ``cfg.dummy_queries``."""
        import torch

        return torch.stack([self.icl_vector(q, demos, system) for q in self.cfg.dummy_queries]).mean(0)

    def task_key(self, demos: list[Demo], system: Optional[str] = None) -> str:
        from rayapp._internal.hashing import stable_hash

        return stable_hash(str(getattr(self.model, "name_or_path", "")), self.cfg.model_dump(mode="json"),
                           [d.model_dump() for d in demos], system)

    # -------------------------------------------------------------------------------- decoding
    def _finish(self, ids: list[int], prompt_len: int, max_new: int, stage: str, cache: dict, secs: dict) -> PicaResult:
        text = self.tok.decode(ids, skip_special_tokens=True)
        stops = [text.find(s) for s in self.cfg.stop if s in text]
        eos = bool(ids) and ids[-1] in self.eos
        reason = "stop" if stops or eos else ("length" if len(ids) >= max_new else "stop")
        return PicaResult(text[: min(stops)] if stops else text, ids, reason, stage, prompt_len, cache, secs)

    def icl(self, query: str, demos: list[Demo], max_new_tokens: Optional[int] = None,
            system: Optional[str] = None) -> PicaResult:
        """Vanilla in-context learning: the few-shot prompt decoded to the end."""
        n = max_new_tokens or self.cfg.max_new_tokens
        ids, _ = self.prompt(query, demos, system)
        new, cache, p, d = greedy_decode(self.model, self.tok, ids, n, self.cfg.stop)
        return self._finish(new, len(ids), n, "few_shot", {"few_shot": cache}, {"prefill": p, "decode": d})

    def zero_shot(self, query: str, max_new_tokens: Optional[int] = None, system: Optional[str] = None,
                  prior: tuple[int, ...] = (), vector=None) -> PicaResult:
        """The zero-shot prompt (+ ``prior`` tokens), with ``vector`` injected at the separator in
        the prefill pass when given."""
        n = max_new_tokens or self.cfg.max_new_tokens
        ids, pos = self.prompt(query, [], system)
        hook = None
        if vector is not None:
            if tuple(vector.shape) != (len(self.modules), len(pos), vector.shape[-1]):
                raise ValueError(f"PICA vector shape {tuple(vector.shape)} != "
                                 f"({len(self.modules)}, {len(pos)}, hidden)")

            def inject(i, out):
                out = out.clone()
                out[0, pos] = vector[i].to(out.dtype)
                return out

            hook = inject
        new, cache, p, d = greedy_decode(self.model, self.tok, ids + list(prior), n - len(prior), self.cfg.stop,
                                         self.modules, hook) if n > len(prior) else ([], len(ids) + len(prior), 0.0, 0.0)
        return self._finish(list(prior) + new, len(ids) + len(prior), n, "zero_shot", {"zero_shot": cache},
                            {"prefill": p, "decode": d})

    def generate(self, query: str, demos: list[Demo], max_new_tokens: Optional[int] = None,
                 system: Optional[str] = None, vector=None) -> PicaResult:
        """PICA: the few-shot stage for ``prior_tokens`` tokens, then the zero-shot stage with the
        ICL vector (``vector`` when given, as in task mode; else this query's own)."""
        n = max_new_tokens or self.cfg.max_new_tokens
        k = min(self.cfg.prior_tokens, n)
        t0 = time.perf_counter()
        prior: list[int] = []
        secs: dict[str, float] = {}
        cache: dict[str, int] = {}
        if k > 0:
            ids, pos = self.prompt(query, demos, system)
            capture = _Capture(pos) if vector is None else None
            prior, cache["few_shot"], _, _ = greedy_decode(self.model, self.tok, ids, k, self.cfg.stop,
                                                           self.modules, capture)
            secs["few_shot"] = time.perf_counter() - t0
            done = _stopped(self.tok, prior, self.cfg.stop, self.eos) if prior else False
            if done or len(prior) >= n:
                r = self._finish(prior, len(ids), n, "few_shot", cache, secs)
                r.seconds["total"] = time.perf_counter() - t0
                return r
            if capture is not None:
                vector = capture.vector()
        t1 = time.perf_counter()
        r = self.zero_shot(query, n, system, tuple(prior), vector)
        r.cache_len = {**cache, **r.cache_len}
        r.seconds = {**secs, "zero_shot": time.perf_counter() - t1, "total": time.perf_counter() - t0}
        return r
