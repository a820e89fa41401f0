"""Typed configs of the trainers: embedder, reranker, LEAR (GRPO) and SEER (LPO)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from rayapp.config import RayConfig, StrictModel, worker_env_field

__all__ = ["DeepSpeedConfig", "ColdStartConfig", "LoraConfig", "StageConfig", "TrainEmbedderConfig", "SoupConfig", "TrainRerankerConfig",
           "RolloutConfig", "LearRewardConfig", "TrainLearConfig", "TrainSeerConfig"]

class DeepSpeedConfig(StrictModel):
    """ZeRO stage 0-2 on CPU (gloo); 3 and bf16 need GPUs."""

    zero_stage: int = Field(default=1, ge=0, le=3)
    bf16: bool = False
    gradient_clipping: float = Field(default=1.0, ge=0)


class LoraConfig(StrictModel):
    """LoRA adapters (peft) on the attention/MLP projections; merged into the weights on save."""

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value"]


class StageConfig(StrictModel):
    """One training stage (KaLM: weakly supervised pre-training, then supervised fine-tuning).

    ``data``: JSONL training rows ``{query, pos, negs, task, instruction}`` (the pairs job writes
    them); rows with ``pos_score``/``neg_scores`` feed the distillation term."""

    name: str
    data: Path
    steps: int = Field(ge=1)
    batch_size: int = Field(default=32, ge=1, description="global batch (all workers)")
    lr: float = Field(default=2e-5, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    loss: str = "infonce"
    tau: float = Field(default=0.02, gt=0)
    gamma: float = Field(default=0.5, ge=0)
    hard_negatives: int = Field(default=7, ge=0, description="per row; 0 = in-batch negatives only")
    mix_negatives: int = Field(default=0, ge=0, description="synthetic mixed negatives per query")
    matryoshka_dims: list[int] = []
    matryoshka_weights: list[float] = []
    homogeneous_ratio: float = Field(default=1.0, ge=0, le=1)
    #: what a semi-homogeneous batch shares: the row's ``task``, its ``domain`` (e.g. a document label
    #: from the label-corpus job) or both
    batch_by: Literal["task", "domain", "task_domain"] = "task"
    cross_device_negatives: bool = True
    distill_weight: float = Field(default=0.0, ge=0)
    #: weight of the contrastive loss; 0 with ``distill_weight > 0`` trains on the teacher's scores
    #: only (FunnelRAG's local-to-global distillation)
    contrastive_weight: float = Field(default=1.0, ge=0)
    max_query_tokens: int = Field(default=64, ge=4)
    max_passage_tokens: int = Field(default=256, ge=4)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, v: str) -> str:
        from rayapp.train.losses import LOSSES

        if v not in LOSSES:
            raise ValueError(f"unknown loss {v!r}; choose one of {sorted(LOSSES)}")
        return v

    @model_validator(mode="after")
    def _matryoshka(self):
        if self.contrastive_weight == 0 and self.distill_weight == 0:
            raise ValueError("contrastive_weight and distill_weight are both 0: nothing to train")
        if len(self.matryoshka_dims) != len(self.matryoshka_weights):
            raise ValueError(f"matryoshka_dims has {len(self.matryoshka_dims)} entries but "
                             f"matryoshka_weights has {len(self.matryoshka_weights)}")
        return self


class TrainEmbedderConfig(StrictModel):
    """Multi-stage embedder training on Ray Train + DeepSpeed. Each stage starts from the previous
    stage's output folder (the first from ``model``) and writes a sentence-transformers folder to
    ``output_dir/<stage name>``."""

    model: str = "minilm"
    pooling: Optional[Literal["mean", "cls", "lasttoken"]] = None
    bidirectional: Optional[bool] = None
    gradient_checkpointing: bool = False
    lora: Optional[LoraConfig] = None
    stages: list[StageConfig] = Field(min_length=1)
    workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    use_gpu: bool = False
    torch_threads: int = Field(default=1, ge=1)
    worker_env: dict[str, str] = worker_env_field()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    checkpoint_every: int = Field(default=50, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    max_failures: int = Field(default=1, ge=0)
    log_every: int = Field(default=10, ge=1)
    #: MLflow tracking URI (``file:./mlruns``, ``http://host:5000``); rank 0 logs each stage as a run
    #: of the experiment ``mlflow_experiment`` (a ``file:`` URI uses MLflow's file store, which needs no
    #: server or database). TensorBoard scalars are always written.
    mlflow_uri: Optional[str] = None
    mlflow_experiment: str = "rayapp-train-embedder"
    seed: int = 0
    output_dir: Path = Path("results/train_embedder")
    ray: RayConfig = RayConfig()
    inject_failure_at_step: Optional[int] = Field(
        default=None, description="testing: rank 0 raises once when it reaches this step of the first stage")

    @model_validator(mode="after")
    def _cpu_limits(self):
        if not self.use_gpu and (self.deepspeed.zero_stage == 3 or self.deepspeed.bf16):
            raise ValueError("deepspeed: ZeRO stage 3 and bf16 need use_gpu: true (CPU runs ZeRO 0-2 in float32)")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stages: names must be unique, got {names}")
        return self


class SoupConfig(StrictModel):
    """Model soup: the (weighted) average of the parameters of fine-tuned embedders of one shape."""

    models: list[str] = Field(min_length=2)
    weights: Optional[list[float]] = None
    output: Path

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None:
            if len(self.weights) != len(self.models):
                raise ValueError(f"weights: {len(self.weights)} weights for {len(self.models)} models")
            if min(self.weights) < 0 or sum(self.weights) <= 0:
                raise ValueError("weights: must be >= 0 with a positive sum")
        return self


class TrainRerankerConfig(StrictModel):
    """Cross-encoder reranker training on Ray Train (DDP over gloo on CPU, nccl on GPUs).

    ``data``: JSONL training rows ``{query, pos, negs}`` (the pairs job's format); each step takes
    ``batch_size`` groups of 1 positive + ``hard_negatives`` negatives (filled with random other
    positives when a row has fewer). The model starts from ``model`` (an encoder folder or
    ``minilm``) with a new one-logit head and is written to ``output_dir/<name>`` as a Hugging Face
    sequence-classification folder."""

    name: str = "reranker"
    model: str = "minilm"
    data: Path
    steps: int = Field(default=200, ge=1)
    batch_size: int = Field(default=16, ge=1, description="global groups per step (all workers)")
    hard_negatives: int = Field(default=3, ge=1)
    lr: float = Field(default=3e-5, gt=0)
    warmup_steps: int = Field(default=10, ge=0)
    max_length: int = Field(default=256, ge=16, le=4096)
    gradient_clipping: float = Field(default=1.0, ge=0)
    workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    use_gpu: bool = False
    torch_threads: int = Field(default=1, ge=1)
    worker_env: dict[str, str] = worker_env_field()
    checkpoint_every: int = Field(default=100, ge=1)
    max_failures: int = Field(default=1, ge=0)
    log_every: int = Field(default=10, ge=1)
    seed: int = 0
    output_dir: Path = Path("results/train_reranker")
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _divisible(self):
        if self.batch_size % self.workers:
            raise ValueError(f"batch_size: {self.batch_size} is not a multiple of workers={self.workers}")
        return self


class RolloutConfig(StrictModel):
    """Generation actors for RL rollouts and preference sampling. ``resources`` are Ray custom
    resources (``ray start --resources='{"rollout": 1}'``): with them the actors go to the nodes
    that offer them; without, Ray places them anywhere, sharing the trainer's nodes."""

    actors: int = Field(default=1, ge=1)
    backend: Literal["hf"] = "hf"
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    resources: dict[str, float] = {}
    torch_threads: int = Field(default=1, ge=1)
    batch_size: int = Field(default=16, ge=1, description="prompts per generate call")


class LearRewardConfig(StrictModel):
    """LEAR's reward R = w_ans R_ans + w_len R_len + w_fmt R_fmt (defaults: the paper's)."""

    tau: float = Field(default=1.0, gt=0)
    gamma: float = Field(default=0.5, gt=0)
    omega: float = Field(default=0.9, gt=0, le=1)
    w_ans: float = Field(default=0.8, ge=0)
    w_len: float = Field(default=0.1, ge=0)
    w_fmt: float = Field(default=0.1, ge=0)


class ColdStartConfig(StrictModel):
    """LEAR's supervised format stage before GRPO (:mod:`rayapp.extract.cold_start`): ``steps``
    optimizer steps of ``batch_size`` examples drawn from the targets of the first ``rows``
    training rows, token-mean NLL (:func:`rayapp.train.rl.sft_loss`) at ``lr``. GRPO then starts
    from the result, which is also its KL reference."""

    steps: int = Field(default=20, ge=1)
    batch_size: int = Field(default=8, ge=1, description="examples per step (all workers)")
    rows: int = Field(default=64, ge=1, description="the first rows of data give the targets")
    lr: float = Field(default=1e-4, gt=0)
    max_rationale_words: int = Field(default=16, ge=1)
    max_evidence_words: int = Field(default=20, ge=1)


class _PolicyTrainConfig(StrictModel):
    """What the GRPO and LPO trainers share: the policy, the workers, DeepSpeed, checkpoints."""

    name: str
    model: str = "smollm2"
    data: Path
    lora: Optional[LoraConfig] = None
    gradient_checkpointing: bool = False
    lr: float = Field(default=1e-6, gt=0)
    micro_batch_size: int = Field(default=4, ge=1, description="sequences per forward pass")
    workers: int = Field(default=1, ge=1)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    #: Ray custom resources each trainer worker needs (to split trainer and rollout nodes)
    trainer_resources: dict[str, float] = {}
    use_gpu: bool = False
    torch_threads: int = Field(default=1, ge=1)
    worker_env: dict[str, str] = worker_env_field()
    deepspeed: DeepSpeedConfig = DeepSpeedConfig()
    rollout: RolloutConfig = RolloutConfig()
    #: Two-phase rollouts for small models: sample the rationale (at most ``max_reason_tokens``,
    #: up to ``</reason>``), insert ``</reason>`` if the model did not write it and ``<extract>``,
    #: then sample the evidence (``max_extract_tokens``). Inserted tokens are not in the loss and (LEAR) a
    #: forced ``</reason>`` makes R_fmt 0. Off (the paper's free-form rollouts) by default.
    scaffold: bool = False
    max_reason_tokens: int = Field(default=64, ge=4)
    checkpoint_every: int = Field(default=10, ge=1)
    keep_checkpoints: int = Field(default=2, ge=1)
    max_failures: int = Field(default=1, ge=0)
    log_every: int = Field(default=1, ge=1)
    seed: int = 0
    output_dir: Path
    ray: RayConfig = RayConfig()
    inject_failure_at_step: Optional[int] = Field(
        default=None, description="testing: rank 0 raises once when it reaches this step")

    @model_validator(mode="after")
    def _cpu_limits(self):
        if not self.use_gpu and (self.deepspeed.zero_stage == 3 or self.deepspeed.bf16):
            raise ValueError("deepspeed: ZeRO stage 3 and bf16 need use_gpu: true (CPU runs ZeRO 0-2 in float32)")
        return self


class TrainLearConfig(_PolicyTrainConfig):
    """LEAR (arXiv 2507.15586): GRPO on the extractor, which is also the answerer. Each step takes
    ``questions_per_step`` rows (all workers), samples ``group_size`` extractions per row from the
    rollout actors, answers under the three knowledge masks, scores the LEAR reward and updates."""

    name: str = "lear"
    output_dir: Path = Path("results/train_lear")
    steps: int = Field(default=100, ge=1)
    questions_per_step: int = Field(default=4, ge=1, description="global (all workers)")
    group_size: int = Field(default=4, ge=2)
    max_extract_tokens: int = Field(default=160, ge=8)
    max_answer_tokens: int = Field(default=16, ge=2)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    #: sampling temperature of the three answers (0: greedy, a deterministic reward)
    answer_temperature: float = Field(default=0.0, ge=0)
    clip: float = Field(default=0.2, gt=0)
    beta: float = Field(default=1e-2, ge=0)
    min_std: float = Field(default=0.1, gt=0)
    reward: LearRewardConfig = LearRewardConfig()
    #: a supervised format stage first (small models that never close the tags themselves)
    cold_start: Optional[ColdStartConfig] = None

    @model_validator(mode="after")
    def _divisible(self):
        if self.questions_per_step % self.workers:
            raise ValueError(f"questions_per_step: {self.questions_per_step} is not a multiple of workers={self.workers}")
        if self.cold_start and self.cold_start.batch_size % self.workers:
            raise ValueError(f"cold_start.batch_size: {self.cold_start.batch_size} is not a multiple of "
                             f"workers={self.workers}")
        return self


class TrainSeerConfig(_PolicyTrainConfig):
    """SEER (arXiv 2410.11315): sample ``candidates`` extractions per row from the base extractor,
    drop near-duplicates, score them with three experts (faithfulness, helpfulness, conciseness),
    weight the experts by their smoothed coefficient of variation, and train with lambda-weighted
    DPO on the ranked pairs."""

    name: str = "seer"
    output_dir: Path = Path("results/train_seer")
    limit: Optional[int] = Field(default=None, ge=1, description="use the first rows of data only")
    lr: float = Field(default=1e-5, gt=0)
    candidates: int = Field(default=10, ge=2)
    max_extract_tokens: int = Field(default=160, ge=8)
    temperature: float = Field(default=1.0, gt=0)
    top_p: float = Field(default=1.0, gt=0, le=1)
    embedder: str = "minilm"
    cv_tau: float = Field(default=1.0, gt=0)
    beta: float = Field(default=0.1, gt=0)
    max_pairs_per_row: int = Field(default=8, ge=1)
    epochs: int = Field(default=1, ge=1)
    pairs_per_step: int = Field(default=4, ge=1, description="global (all workers)")

    @model_validator(mode="after")
    def _divisible(self):
        if self.pairs_per_step % self.workers:
            raise ValueError(f"pairs_per_step: {self.pairs_per_step} is not a multiple of workers={self.workers}")
        return self
