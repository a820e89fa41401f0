"""Train an embedder with the KaLM-Embedding recipe on Ray Train + DeepSpeed (multi-stage).

    python -m jobs.train_embedder --config configs/train_embedder.yaml
    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.train_embedder --config ...
Each stage writes a sentence-transformers folder to <output_dir>/<stage>; the summary goes to
<output_dir>/summary.json.
"""

from __future__ import annotations

import sys

from rayapp._internal.jobs import run_job
from rayapp.train.config import TrainEmbedderConfig


def _run(cfg: TrainEmbedderConfig, _path) -> None:
    from rayapp._internal.artifacts import write_json_atomic
    from rayapp._internal.ray_utils import init_ray
    from rayapp.train.embedder import train_embedder

    init_ray(cfg.ray)
    summaries = train_embedder(cfg)
    write_json_atomic(cfg.output_dir / "summary.json", {"stages": summaries})
    for s in summaries:
        m = s.get("metrics", {})
        print(f"stage {s['stage']}: {'reused' if s['reused'] else 'trained'} -> {s['path']}"
              + (f" (steps {m.get('step')}, loss {m.get('loss', float('nan')):.4f}, "
                 f"{m.get('samples_per_s', 0):.1f} samples/s, {s['seconds']} s)" if m else ""))


def main(argv=None) -> int:
    return run_job("rayapp train-embedder", TrainEmbedderConfig, "configs/train_embedder.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
