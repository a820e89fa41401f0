"""What a recommender replica loads, prepared once per trained folder.

:func:`prepare_serving` writes ``serving-<fingerprint>/`` next to the trained files (or under the
model cache when that folder is read-only): RaSeRec's memory bank over every prefix of the users'
histories, already indexed (encoding 176k prefixes took 12 s of a 15 s replica start on Amazon
Beauty), the item embeddings as ``.npy``, and SASRec and the retrieval module exported to ONNX. The
fingerprint covers the trained files' identities, so retraining (or a new ``stage2.pt``) gives a new
folder. With these, a replica on the ``onnx`` backend imports neither torch nor the models' code.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from rayapp._internal.artifacts import read_manifest, staging_dir, write_json_atomic
from rayapp._internal.hashing import stable_hash
from rayapp.recommend.config import TrainRecConfig

log = logging.getLogger(__name__)

_FORMAT = 1
_SOURCES = ("manifest.json", "items.json", "histories.json", "stage1.pt", "stage2.pt")


def _fingerprint(model_dir: Path) -> str:
    ids = []
    for name in _SOURCES:
        p = model_dir / name
        if p.is_file():
            st = p.stat()
            ids.append((name, st.st_size, st.st_mtime_ns))
    return stable_hash(_FORMAT, ids, length=12)


def serving_dir(model_dir: Path) -> Path:
    """Where :func:`prepare_serving` puts (or finds) the serving files of ``model_dir``."""
    model_dir = Path(model_dir).resolve()
    name = f"serving-{_fingerprint(model_dir)}"
    if os.access(model_dir, os.W_OK) or (model_dir / name).is_dir():
        return model_dir / name
    from rayapp.models._loading import model_cache_dir

    return model_cache_dir() / f"recommender-{stable_hash(str(model_dir), length=8)}-{name}"


def prune_serving(model_dir: Path, keep: Path) -> list[Path]:
    """Remove ``model_dir``'s other ``serving-*`` folders: a retrain in place gives a new fingerprint,
    and the files of the model it replaced can never be loaded again (a running replica holds them
    in memory already). Builds in flight (``.tmp-`` folders) are left alone. Returns what was removed."""
    import shutil

    gone = []
    for d in Path(model_dir).glob("serving-*"):
        if d.is_dir() and ".tmp-" not in d.name and d.resolve() != Path(keep).resolve():
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def _load_models(model_dir: Path, cfg: TrainRecConfig, n_items: int):
    import torch

    from rayapp.recommend.raserec import RetrievalAugmentedModule
    from rayapp.recommend.sasrec import SASRec

    m = cfg.model
    model = SASRec(n_items, m.hidden, m.layers, m.heads, m.inner, m.dropout, m.max_len)
    model.load_state_dict(torch.load(model_dir / "stage1.pt", weights_only=True))
    model.eval()
    ra = None
    if (model_dir / "stage2.pt").is_file() and cfg.stage2 is not None:
        ra = RetrievalAugmentedModule(m.hidden, m.heads, m.inner, m.dropout)
        ra.load_state_dict(torch.load(model_dir / "stage2.pt", weights_only=True))
        ra.eval()
    return model, ra


def read_trained(model_dir: Path) -> tuple[TrainRecConfig, list[str], dict[str, list[str]]]:
    """(config, item ids with the padding id first, every user's history) of a trained folder."""
    manifest = model_dir / "manifest.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"recommender.model_dir: {model_dir} has no manifest.json (train it with rayapp train-rec)")
    cfg = TrainRecConfig(**json.loads(manifest.read_text(encoding="utf-8"))["config"])
    items = json.loads((model_dir / "items.json").read_text(encoding="utf-8"))
    hist = json.loads((model_dir / "histories.json").read_text(encoding="utf-8"))
    return cfg, items, hist


def prepare_serving(model_dir: str | Path) -> Path:
    """The serving folder of ``model_dir``, built first if missing (this needs torch; loading it
    does not). Several processes may build it at once: the first rename wins, the rest discard theirs."""
    model_dir = Path(model_dir).resolve()
    final = serving_dir(model_dir)
    if read_manifest(final) is not None:
        return final
    import torch

    from rayapp.recommend.train import _memory_bank

    cfg, items, hist = read_trained(model_dir)
    index = {x: i for i, x in enumerate(items) if i}
    model, ra = _load_models(model_dir, cfg, len(items) - 1)
    m = cfg.model
    log.info("preparing the serving files of %s under %s (once)", model_dir, final)
    with staging_dir(final) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are checked by the tests instead
        np.save(tmp / "item_emb.npy", model.item_emb.weight.detach().numpy())
        memories, fastpath = 0, torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder-layer op has no ONNX export
        try:
            ids = torch.zeros((2, m.max_len), dtype=torch.int64)
            ids[:, 0] = 1
            torch.onnx.export(model, (ids, torch.tensor([1, 1])), str(tmp / "sasrec.onnx"),
                              input_names=["ids", "lengths"], output_names=["h"],
                              dynamic_axes={"ids": {0: "batch"}, "lengths": {0: "batch"}, "h": {0: "batch"}},
                              opset_version=17, dynamo=False)
            if ra is not None:
                h, mem = torch.zeros((2, m.hidden)), torch.zeros((2, 3, m.hidden))
                torch.onnx.export(ra, (h, mem, mem), str(tmp / "ra.onnx"), input_names=["h", "mem_seq", "mem_tgt"],
                                  output_names=["h_s", "h_t"],
                                  dynamic_axes={"h": {0: "batch"}, "mem_seq": {0: "batch", 1: "k"},
                                                "mem_tgt": {0: "batch", 1: "k"}, "h_s": {0: "batch"},
                                                "h_t": {0: "batch"}},
                                  opset_version=17, dynamo=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        if ra is not None:  # encoded with the fast path back on, as training encodes its banks
            bank = _memory_bank(model, [[index[i] for i in s] for s in hist.values()], cfg)
            bank.save(tmp)
            memories = len(bank)
        write_json_atomic(tmp / "manifest.json", {"kind": "recommender-serving", "source": str(model_dir),
                                                  "memories": memories, "raserec": ra is not None})
    return final


class TorchEngine:
    """SASRec and the retrieval module in torch, on numpy in and out."""

    def __init__(self, model_dir: Path, cfg: TrainRecConfig, n_items: int):
        import torch

        torch.set_num_threads(cfg.torch_threads)
        self.model, self.ra = _load_models(model_dir, cfg, n_items)
        self.item_emb = self.model.item_emb.weight.detach().numpy()

    def encode(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(ids), torch.from_numpy(lengths)).numpy()

    def augment(self, h: np.ndarray, mem_seq: np.ndarray, mem_tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            h_s, h_t = self.ra(*(torch.from_numpy(x) for x in (h, mem_seq, mem_tgt)))
        return h_s.numpy(), h_t.numpy()


class OnnxEngine:
    """The same two models exported to ONNX (:func:`prepare_serving`), run by ONNX Runtime: no torch."""

    def __init__(self, folder: Path, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1

        def session(name: str) -> Optional["ort.InferenceSession"]:
            p = folder / name
            return ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) if p.is_file() else None

        self.sasrec, self.ra = session("sasrec.onnx"), session("ra.onnx")
        self.item_emb = np.load(folder / "item_emb.npy")

    def encode(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.sasrec.run(None, {"ids": ids, "lengths": lengths})[0]

    def augment(self, h: np.ndarray, mem_seq: np.ndarray, mem_tgt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h_s, h_t = self.ra.run(None, {"h": h.astype(np.float32), "mem_seq": mem_seq, "mem_tgt": mem_tgt})
        return h_s, h_t
