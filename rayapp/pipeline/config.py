"""Typed config of ``rayapp pipeline``: one YAML for the whole loop, each step's block in the schema
of its own job, less the paths the pipeline fills in (training data, output folders, models
produced by earlier steps). A path the pipeline owns cannot be set (an error names it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from rayapp.config import (AppConfig, CorpusConfig, EmbedConfig, FunnelConfig, IndexConfig, RayConfig, StrictModel,
                           default_home)
from rayapp.data.pairs import PairsConfig
from rayapp.retrieve.l2g import L2GConfig
from rayapp.train.config import StageConfig, TrainEmbedderConfig, TrainLearConfig, TrainRerankerConfig, TrainSeerConfig

__all__ = ["PipelineConfig", "PairsStep", "EmbedderStep", "RerankerStep", "L2GStep", "SeerStep", "LearStep",
           "DeployStep"]

#: a field the pipeline fills in: setting it in the YAML is an error naming it
Owned = Literal[None]


class PairsStep(StrictModel):
    """Training rows from the corpus (weak title -> body / summary -> rest pairs, mined negatives)."""

    weak_tasks: list[Literal["title-body", "summary-body"]] = Field(
        default_factory=lambda: ["title-body", "summary-body"])
    pairs: PairsConfig = Field(default_factory=PairsConfig)


class PipelineStage(StageConfig):
    data: Owned = None  # the pairs step's rows


class EmbedderStep(TrainEmbedderConfig):
    """The embedder's stages (``TrainEmbedderConfig``), trained on the pairs step's rows; with
    ``soup`` and two or more stages the stages' outputs are averaged (``weights``) into the model
    the index uses."""

    stages: list[PipelineStage] = Field(min_length=1)
    output_dir: Owned = None
    ray: Owned = None
    soup: bool = True
    soup_weights: Optional[list[float]] = None


class RerankerStep(TrainRerankerConfig):
    """The cross-encoder (``TrainRerankerConfig``) on the pairs step's rows."""

    data: Owned = None
    output_dir: Owned = None
    ray: Owned = None


class L2GStep(L2GConfig):
    """Local-to-global distillation (``L2GConfig``) over the index step's funnel index, with the
    pairs' queries; ``funnel`` defaults to the cross-encoder post-ranker from the reranker step.
    The distilled embedder then re-embeds the corpus (the ``reindex`` step)."""

    index: Owned = None
    queries: Owned = None
    funnel: Optional[FunnelConfig] = None
    output_dir: Owned = None
    ray: Owned = None


class SeerStep(TrainSeerConfig):
    """A SEER extractor; ``data`` (extraction rows) defaults to rows made from the pairs (see
    :func:`rayapp.pipeline.extraction_rows`)."""

    method: Literal["seer"]
    data: Optional[Path] = None
    output_dir: Owned = None
    ray: Owned = None


class LearStep(TrainLearConfig):
    """A LEAR extractor (GRPO); ``data`` as for SEER."""

    method: Literal["lear"]
    data: Optional[Path] = None
    output_dir: Owned = None
    ray: Owned = None


class DeployStep(StrictModel):
    """Roll the Serve application to the versions the run produced. ``app`` is the AppConfig (inline,
    or ``app_config``, a YAML path relative to the pipeline config); the pipeline sets its index,
    its reranker (``rerank.model``, and the funnel's ``reranker``) and its extractor (``lm``).
    The step deploys (or, when the app already runs, rolls it in place: no request fails) and asks
    ``question``. With ``keep_serving`` (on a cluster: ``RAY_ADDRESS`` / ``ray job submit``) the app
    stays up and the step is skipped only while it still serves this run's index version; without
    it the app is torn down after the answer, a smoke test of the new versions."""

    enabled: bool = True
    app: AppConfig = Field(default_factory=AppConfig)
    app_config: Optional[Path] = None
    question: str = "How do I read a JSON file?"
    keep_serving: bool = False
    timeout_s: float = Field(default=600.0, gt=0)


class PipelineConfig(StrictModel):
    """``rayapp pipeline``: corpus -> pairs -> embedder (stages + soup) -> index -> reranker -> L2G ->
    reindex -> extractor -> deploy. A step whose block is absent (``null``) is not run and later
    steps use what it would have replaced (the base embedder, no reranker, the app's extractor)."""

    name: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]+$")
    ray: RayConfig = Field(default_factory=RayConfig)
    home: Path = Field(default_factory=default_home)
    corpus: CorpusConfig = Field(default_factory=CorpusConfig)
    #: the base embedder: mines the pairs' negatives, and embeds the index when no embedder is trained
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    index: IndexConfig = Field(default_factory=lambda: IndexConfig(funnel=True))
    pairs: Optional[PairsStep] = Field(default_factory=PairsStep)
    embedder: Optional[EmbedderStep] = None
    reranker: Optional[RerankerStep] = None
    l2g: Optional[L2GStep] = None
    extractor: Optional[Annotated[Union[SeerStep, LearStep], Field(discriminator="method")]] = None
    deploy: DeployStep = Field(default_factory=DeployStep)
    results_dir: Path = Path("results/pipeline")
    #: testing: raise after this step finishes (the state file has it), as a crash would
    fail_after: Optional[str] = None
