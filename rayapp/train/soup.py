"""Model soup (Wortsman et al., 2022; KaLM-Embedding V1 merges fine-tuned checkpoints this way).

theta_soup = sum_m w_m theta_m / sum_m w_m over embedders of one architecture (uniform weights by
default). The result is a sentence-transformers folder like its ingredients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

__all__ = ["model_soup", "SoupError"]


class SoupError(ValueError):
    """The ingredients do not have the same parameters."""


def model_soup(models: Sequence[str], output: Path, weights: Optional[Sequence[float]] = None) -> Path:
    from rayapp._internal.artifacts import staging_dir, write_json_atomic
    from rayapp.embed import Embedder
    from rayapp.models import resolve_embedder

    if len(models) < 2:
        raise SoupError("a soup needs at least two models")
    w = [1.0] * len(models) if weights is None else [float(x) for x in weights]
    if len(w) != len(models) or min(w) < 0 or sum(w) <= 0:
        raise SoupError(f"weights {list(w)} do not fit {len(models)} models (>= 0, positive sum)")
    paths = [resolve_embedder(m) for m in models]
    base = Embedder.from_pretrained(paths[0])
    acc = {k: v.detach().double() * w[0] for k, v in base.backbone.state_dict().items()}
    for path, wi in zip(paths[1:], w[1:]):
        sd = Embedder.from_pretrained(path).backbone.state_dict()
        if sd.keys() != acc.keys():
            diff = sorted(set(sd) ^ set(acc))[:3]
            raise SoupError(f"{path}: parameters differ from {paths[0]} (e.g. {diff})")
        for k, v in sd.items():
            if v.shape != acc[k].shape:
                raise SoupError(f"{path}: {k} has shape {tuple(v.shape)}, {paths[0]} has {tuple(acc[k].shape)}")
            acc[k] += v.detach().double() * wi
    total = sum(w)
    ref = base.backbone.state_dict()
    base.backbone.load_state_dict({k: (v / total).to(ref[k].dtype) for k, v in acc.items()})
    with staging_dir(Path(output)) as tmp:
        base.save(tmp)
        write_json_atomic(tmp / "manifest.json", {"kind": "embedder", "soup": list(paths), "weights": w})
    return Path(output)
