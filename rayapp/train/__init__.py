"""Training stage. Embedders with the KaLM-Embedding V1/V2 recipe on Ray Train + DeepSpeed:

- :mod:`rayapp.train.losses`: InfoNCE, focal InfoNCE (registry ``LOSSES``), hard-negative mixing,
  Matryoshka, KL distillation;
- :mod:`rayapp.train.sampler`: semi-homogeneous task batches;
- :mod:`rayapp.train.embedder`: :func:`train_embedder` (multi-stage, checkpoints, resume);
- :mod:`rayapp.train.soup`: :func:`model_soup`.
"""

from rayapp.train.config import SoupConfig, StageConfig, TrainEmbedderConfig

__all__ = ["TrainEmbedderConfig", "StageConfig", "SoupConfig"]
