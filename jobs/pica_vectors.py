"""PICA task vectors: compute each task's ICL vector (averaged over dummy queries) and store it.

    python -m jobs.pica_vectors --config configs/pica_vectors.yaml
The Generator deployment loads them from the same folder (generator.pica_vectors_dir) by task name;
a vector whose model, PICA settings or demonstrations changed is recomputed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from rayapp._internal.jobs import run_job
from rayapp.config import Demo, PicaConfig, StrictModel


class PicaVectorsConfig(StrictModel):
    model: str = "smollm2"
    pica: PicaConfig = PicaConfig(mode="task")
    tasks: dict[str, list[Demo]]
    out_dir: Optional[Path] = None  # default: <model cache>/pica


def _run(cfg: PicaVectorsConfig, _path) -> None:
    from rayapp.generate import Pica, TaskVectorStore
    from rayapp.models import load_causal_lm, model_cache_dir

    tok, model = load_causal_lm(cfg.model)
    p = Pica(tok, model, cfg.pica)
    store = TaskVectorStore(cfg.out_dir or model_cache_dir() / "pica")
    for task, demos in cfg.tasks.items():
        key = p.task_key(demos)
        if store.load(task, key) is not None:
            print(f"{task}: up to date")
            continue
        vec = p.task_vector(demos)
        path = store.save(task, key, vec, {"model": cfg.model, "demos": len(demos)})
        print(f"{task}: vector {tuple(vec.shape)} -> {path}")


def main(argv=None) -> int:
    return run_job("rayapp pica-vectors", PicaVectorsConfig, "configs/pica_vectors.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
