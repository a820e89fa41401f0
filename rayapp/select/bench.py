"""Benchmark of the select stage: feature selectors x labelled ratios x seeds, scored by ML-kNN.

Protocol, per data set, labelled ratio r and seed: ``test_ratio`` of the rows are held out; of the
training rows a share r keeps its labels (:func:`rayapp.select.data.semi_supervised_split`). Each
selector scores the features from the training rows (labelled + unlabelled, see
:mod:`rayapp.select.selectors`); for each feature count m, ML-kNN is trained on the labelled rows'
m best features (z-scored with training statistics) and scored on the test rows with the seven
metrics of :mod:`rayapp.select.metrics`. One Ray task per (data set, ratio, seed, selector).
The report keeps, per (data set, ratio, selector), the feature count with the best mean average
precision (and, separately, macro-F1) over the seeds, with the standard deviation over seeds. Each
proposed selector (``PROPOSED``: ``sgmfs``, ``sgmfs_cv``) is compared with every baseline (every
other selector of the run), cell by cell and seed by seed; the proposed ones are not each other's
baselines.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, field_validator, model_validator

from rayapp.config import RayConfig, StrictModel
from rayapp.select.label import LabelingConfig

__all__ = ["SelectDataConfig", "SelectorSpec", "BenchSelectConfig", "load_dataset", "evaluate_selection",
           "run_configuration", "paired_seeds", "PROPOSED", "bench_select", "summarize", "plot_curves", "BenchLabelConfig", "mesh_documents", "bench_label"]


class SelectDataConfig(StrictModel):
    name: str
    path: Path
    format: Literal["arff", "csv"] = "arff"
    n_labels: Optional[int] = Field(default=None, ge=1)  # csv only
    label_position: Literal["first", "last"] = "last"  # csv only

    @model_validator(mode="after")
    def _csv_needs_labels(self) -> "SelectDataConfig":
        if self.format == "csv" and self.n_labels is None:
            raise ValueError("a csv data set needs n_labels (a headerless CSV does not say which columns are labels)")
        return self


class SelectorSpec(StrictModel):
    name: str  # a key of rayapp.select.selectors.SELECTORS
    label: Optional[str] = None  # display name (defaults to name)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from rayapp.select.selectors import SELECTORS

        if v not in SELECTORS:
            raise ValueError(f"unknown feature selector {v!r}; known: {sorted(SELECTORS)}")
        return v

    @property
    def display(self) -> str:
        return self.label or self.name


class BenchSelectConfig(StrictModel):
    datasets: list[SelectDataConfig] = Field(min_length=1)
    methods: list[SelectorSpec] = Field(min_length=1)
    labelled_ratios: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.4], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4], min_length=1)
    feature_fractions: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
                                           min_length=1)
    test_ratio: float = Field(default=0.3, gt=0, lt=1)
    mlknn_k: int = Field(default=10, ge=1)
    ray: RayConfig = RayConfig()
    results_dir: Path = Path("results/bench_select")

    @field_validator("labelled_ratios", "feature_fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not 0 < x <= 1]
        if bad:
            raise ValueError(f"values must be in (0, 1], got {bad}")
        return v

    @model_validator(mode="after")
    def _unique_labels(self) -> "BenchSelectConfig":
        names = [m.display for m in self.methods]
        dup = sorted({x for x in names if names.count(x) > 1})
        if dup:
            raise ValueError(f"methods need distinct labels, repeated: {dup}")
        return self


#: the selectors each compared with every other (baseline) selector of a run
PROPOSED = ("sgmfs", "sgmfs_cv")


def load_dataset(cfg: SelectDataConfig):
    from rayapp.select.data import read_arff, read_multilabel_csv

    if cfg.format == "arff":
        return read_arff(cfg.path)
    return read_multilabel_csv(cfg.path, cfg.n_labels, cfg.label_position)


def feature_counts(d: int, fractions: list[float]) -> list[int]:
    return sorted({max(1, int(round(f * d))) for f in fractions})


def evaluate_selection(X: np.ndarray, Y: np.ndarray, scores: np.ndarray, lab: np.ndarray, train: np.ndarray,
                       test: np.ndarray, counts: list[int], k: int = 10) -> list[dict[str, Any]]:
    """ML-kNN on the labelled rows' ``m`` best features, scored on ``test``, for each m in counts."""
    from rayapp.select.metrics import multilabel_report
    from rayapp.select.mlknn import MLkNN
    from rayapp.select.selectors import top_features
    from rayapp.select.sgmfs import standardize

    out = []
    for m in counts:
        cols = top_features(scores, m)
        Xtr, mu, sd = standardize(X[train][:, cols])
        Xte, _, _ = standardize(X[test][:, cols], mu, sd)
        model = MLkNN(k=k).fit(Xtr[lab], Y[train][lab])
        proba = model.predict_proba(Xte)
        out.append({"m": m, **multilabel_report(Y[test], proba, (proba > 0.5).astype(np.int8))})
    return out


def run_configuration(data, spec: SelectorSpec, ratio: float, seed: int, counts: list[int], test_ratio: float,
                      k: int) -> dict[str, Any]:
    """One (data set, ratio, seed, selector) cell: select on the training rows, evaluate at each m."""
    from rayapp.select.data import semi_supervised_split
    from rayapp.select.selectors import select_scores

    labelled, unlabelled, test = semi_supervised_split(len(data.X), ratio, test_ratio, seed)
    train = np.sort(np.concatenate([labelled, unlabelled]))
    lab = np.isin(train, labelled)
    t0 = time.perf_counter()
    scores = select_scores(spec.name, data.X[train], data.Y[train], lab, seed=seed, **spec.params)
    select_s = time.perf_counter() - t0
    if spec.name == "all":
        counts = [data.X.shape[1]]
    return {"method": spec.display, "ratio": ratio, "seed": seed, "select_s": select_s,
            "results": evaluate_selection(data.X, data.Y, scores, lab, train, test, counts, k)}


def summarize(cells: list[dict[str, Any]], metrics=("average_precision", "macro_f1")) -> dict[tuple, dict[str, Any]]:
    """Per (dataset, ratio, method): for each metric, the feature count with the best mean over seeds
    (lower is better for the losses), that mean, its standard deviation and the seeds' values; and
    ``mean_up_to_half``, the metric averaged over the feature counts up to half of them (how well a
    selector does on a small budget, where selection matters)."""
    from rayapp.select.metrics import LOWER_IS_BETTER

    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["ratio"], c["method"]), []).append(c)
    out = {}
    for key, runs in groups.items():
        by_m: dict[int, list[dict]] = {}
        for r in sorted(runs, key=lambda r: r["seed"]):
            for row in r["results"]:
                by_m.setdefault(row["m"], []).append({**row, "seed": r["seed"]})
        entry: dict[str, Any] = {"seeds": len(runs), "select_s": float(np.mean([r["select_s"] for r in runs]))}
        for metric in metrics:
            means = {m: float(np.mean([row[metric] for row in rows])) for m, rows in by_m.items()}
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            best = max(means, key=lambda m: (sign * means[m], -m))  # ties: the fewer features
            vals = [row[metric] for row in by_m[best]]
            half = [means[m] for m in means if m <= max(means) / 2]
            entry[metric] = {"m": best, "mean": means[best], "std": float(np.std(vals)), "values": vals,
                             "seeds": [row["seed"] for row in by_m[best]],
                             "curve": {str(m): means[m] for m in sorted(means)},
                             "mean_up_to_half": float(np.mean(half)) if half else None}
        out[key] = entry
    return out


def paired_seeds(ours: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Two selectors, each at its own best feature count, seed by seed (the same splits): the mean
    difference, the seeds where ``ours`` is higher (``wins``) or lower (``losses``), and the exact
    two-sided sign-test p over the untied seeds (:func:`rayapp.eval.retrieval.paired_hits`)."""
    from rayapp.eval.retrieval import paired_hits

    a, b = dict(zip(ours["seeds"], ours["values"])), dict(zip(other["seeds"], other["values"]))
    seeds = sorted(a.keys() & b.keys())
    if not seeds:
        raise ValueError("paired_seeds: the two selectors share no seed")
    t = paired_hits([a[s] > b[s] for s in seeds], [b[s] > a[s] for s in seeds])
    return {"seeds": len(seeds), "mean_diff": float(np.mean([a[s] - b[s] for s in seeds])),
            "wins": t["only_a"], "losses": t["only_b"], "p_sign": t["p_mcnemar"]}


def bench_select(cfg: BenchSelectConfig) -> dict[str, Any]:
    import ray

    task = ray.remote(num_cpus=1)(run_configuration)
    refs, meta = [], []
    for dcfg in cfg.datasets:
        data = load_dataset(dcfg)
        counts = feature_counts(data.X.shape[1], cfg.feature_fractions)
        data_ref = ray.put(data)
        for ratio in cfg.labelled_ratios:
            for seed in cfg.seeds:
                for spec in cfg.methods:
                    refs.append(task.remote(data_ref, spec, ratio, seed, counts, cfg.test_ratio, cfg.mlknn_k))
                    meta.append(dcfg.name)
    t0 = time.perf_counter()
    cells = [{"dataset": name, **c} for name, c in zip(meta, ray.get(refs))]
    wall = time.perf_counter() - t0
    summary = summarize(cells)
    proposed = [m.display for m in cfg.methods if m.name in PROPOSED]
    baselines = {m.display for m in cfg.methods if m.name not in PROPOSED}
    goal: dict[str, dict] = {}  # per proposed method, per cell: above every baseline?
    budget: dict[str, dict] = {}  # per proposed method: the best selector over the small budgets (m <= d / 2)
    for dcfg in cfg.datasets:
        for ratio in cfg.labelled_ratios:
            cell = f"{dcfg.name}@{ratio}"
            others = {k[2]: v for k, v in summary.items() if k[:2] == (dcfg.name, ratio) and k[2] in baselines}
            for label in proposed:
                ours = summary.get((dcfg.name, ratio, label))
                if ours is None or not others:
                    continue
                goal.setdefault(label, {})[cell] = {
                    metric: {"ours": ours[metric]["mean"],
                             "best_baseline": max(others, key=lambda n: others[n][metric]["mean"]),
                             "best_baseline_value": max(v[metric]["mean"] for v in others.values()),
                             "met": all(ours[metric]["mean"] > v[metric]["mean"] for v in others.values()),
                             "paired": {name: paired_seeds(ours[metric], v[metric]) for name, v in others.items()}}
                    for metric in ("average_precision", "macro_f1")}
                for metric in ("average_precision", "macro_f1"):
                    small = {n: v[metric]["mean_up_to_half"] for n, v in {**others, label: ours}.items()
                             if v[metric]["mean_up_to_half"] is not None}
                    if small:
                        budget.setdefault(label, {}).setdefault(cell, {})[metric] = max(small, key=small.get)
    return {"tasks": len(refs), "wall_s": wall, "cells": cells, "small_budget_best": budget,
            "summary": [{"dataset": k[0], "ratio": k[1], "method": k[2], **v} for k, v in summary.items()],
            "goal": goal, "goal_met": {label: all(g[m]["met"] for g in cells_.values() for m in g)
                                       for label, cells_ in goal.items()}}


def plot_curves(summary: list[dict[str, Any]], path: Path, metric: str = "average_precision") -> None:
    """One panel per (data set, ratio): mean ``metric`` over seeds vs number of selected features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(s["dataset"], s["ratio"]) for s in summary})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (ds, ratio) in zip(axes[0], panels):
        for s in summary:
            if (s["dataset"], s["ratio"]) != (ds, ratio):
                continue
            curve = s[metric]["curve"]
            xs = [int(m) for m in curve]
            if len(xs) == 1:  # "all": one point, drawn as a line across
                ax.axhline(curve[str(xs[0])], linestyle="--", color="grey", label=s["method"])
            else:
                ax.plot(xs, [curve[str(m)] for m in xs], marker=".", label=s["method"],
                        linewidth=2.2 if s["method"].startswith("sgmfs") else 1.0)
        ax.set_title(f"{ds}, {int(ratio * 100)}% labelled")
        ax.set_xlabel("selected features")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


class BenchLabelConfig(StrictModel):
    """Corpus labelling from few labels, measured: PubMedQA PQA-L abstracts with their MeSH terms as
    labels (the terms on between ``min_share`` and ``max_share`` of the abstracts)."""

    data: Path = Path("../shared/data/pubmedqa_labeled/ori_pqal.json")
    min_share: float = Field(default=0.05, gt=0, lt=1)
    max_share: float = Field(default=0.5, gt=0, le=1)
    labelled_ratios: list[float] = Field(default_factory=lambda: [0.1, 0.2], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    mlknn_k: int = Field(default=10, ge=1)
    label: LabelingConfig = Field(default_factory=LabelingConfig)
    results_dir: Path = Path("results/bench_label")


def mesh_documents(path: Path, min_share: float, max_share: float) -> tuple[list[str], np.ndarray, list[str]]:
    """(texts, Y, label names) from PubMedQA's ``ori_pqal.json``: text = the abstract's contexts."""
    import json
    from collections import Counter

    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = list(raw.values())
    counts = Counter(m for r in rows for m in set(r.get("MESHES", [])))
    names = sorted(m for m, c in counts.items() if min_share * len(rows) <= c <= max_share * len(rows))
    if len(names) < 2:
        raise ValueError(f"{path}: fewer than two MeSH terms on {min_share:.0%}-{max_share:.0%} of the abstracts")
    col = {m: j for j, m in enumerate(names)}
    Y = np.zeros((len(rows), len(names)), dtype=np.int8)
    for i, r in enumerate(rows):
        for m in set(r.get("MESHES", [])):
            if m in col:
                Y[i, col[m]] = 1
    return [" ".join(r["CONTEXTS"]) for r in rows], Y, names


def bench_label(cfg: BenchLabelConfig) -> dict[str, Any]:
    """SGMFS labelling (selected features + propagation, :func:`rayapp.select.label.label_documents`)
    vs ML-kNN trained on the seed documents with every feature, scored on the other documents."""
    from rayapp.select.label import document_features, label_documents
    from rayapp.select.metrics import multilabel_report
    from rayapp.select.mlknn import MLkNN
    from rayapp.select.sgmfs import standardize

    lcfg = cfg.label
    texts, Y, names = mesh_documents(cfg.data, cfg.min_share, cfg.max_share)
    X, _ = document_features(texts, lcfg)
    runs = []
    for ratio in cfg.labelled_ratios:
        for seed in cfg.seeds:
            perm = np.random.default_rng(seed).permutation(len(texts))
            seeded = np.sort(perm[: max(2, int(round(ratio * len(texts))))])
            rest = np.setdiff1d(np.arange(len(texts)), seeded)
            seed_rows = {int(i): [names[j] for j in np.flatnonzero(Y[i])] for i in seeded if Y[i].any()}
            t0 = time.perf_counter()
            scores, got_names, _, info = label_documents(X, seed_rows, lcfg)
            sg_s = time.perf_counter() - t0
            # label_documents orders labels by name; map them onto Y's columns (a label no seed carries scores 0)
            full = np.zeros((len(texts), len(names)))
            for j, m in enumerate(got_names):
                full[:, names.index(m)] = scores[:, j]
            t0 = time.perf_counter()
            Xz, mu, sd = standardize(X[seeded])
            proba = MLkNN(k=cfg.mlknn_k).fit(Xz, Y[seeded]).predict_proba(standardize(X[rest], mu, sd)[0])
            knn_s = time.perf_counter() - t0
            for method, s, secs in (("sgmfs_propagation", full[rest], sg_s), ("mlknn_all_features", proba, knn_s)):
                runs.append({"ratio": ratio, "seed": seed, "method": method, "seconds": secs,
                             **multilabel_report(Y[rest], s, (s >= lcfg.threshold).astype(np.int8))})
    table = {}
    for r in runs:
        table.setdefault((r["ratio"], r["method"]), []).append(r)
    summary = [{"ratio": k[0], "method": k[1], **{m: {"mean": float(np.mean([x[m] for x in v])),
                                                       "std": float(np.std([x[m] for x in v]))}
                                                   for m in ("average_precision", "macro_f1", "micro_f1",
                                                             "ranking_loss", "seconds")}}
               for k, v in sorted(table.items())]
    return {"documents": len(texts), "labels": names, "label_cardinality": float(Y.sum(1).mean()),
            "features": int(X.shape[1]), "runs": runs, "summary": summary}
