"""Recommend stage: sequential recommendation, SASRec -> DuoRec -> RaSeRec (issue 8, in progress).

- :mod:`~rayapp.recommend.data`: sequence and RecBole atomic readers, k-core, leave-one-out;
- :mod:`~rayapp.recommend.sasrec`: the SASRec backbone, next-item CE and DuoRec's contrastive loss;
- :mod:`~rayapp.recommend.raserec`: the memory bank, the retrieval-augmented module, the fusion;
- :mod:`~rayapp.recommend.train`: stage 1 / stage 2 on Ray Train, full-ranking evaluation;
- :mod:`~rayapp.recommend.service`: top-k and online memory appends (``/v1/recommend``).
"""

from rayapp.recommend.config import TrainRecConfig
from rayapp.recommend.metrics import full_ranking_metrics, target_ranks
from rayapp.recommend.service import RecommenderService, RecommendRequestError
from rayapp.recommend.train import evaluate, train_rec

__all__ = ["TrainRecConfig", "full_ranking_metrics", "target_ranks", "RecommenderService", "RecommendRequestError",
           "evaluate", "train_rec"]
