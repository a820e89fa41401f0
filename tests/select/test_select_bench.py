import numpy as np
import pytest
from pydantic import ValidationError

from rayapp.select.bench import BenchSelectConfig, bench_select, paired_seeds, summarize
from test_sgmfs import planted


def write_csv(path, X, Y):
    np.savetxt(path, np.hstack([X, Y]), delimiter=",", fmt="%.6g")
    return path


def test_sweep_runs_one_task_per_configuration(ray_session, tmp_path):
    X, Y, _ = planted(n=120)
    cfg = BenchSelectConfig(
        datasets=[{"name": "toy", "path": write_csv(tmp_path / "toy.csv", X, Y), "format": "csv", "n_labels": 5}],
        methods=[{"name": "all"}, {"name": "random"}, {"name": "rfs"}, {"name": "sgmfs", "params": {"max_iter": 5}},
                 {"name": "sgmfs_cv", "label": "tuned", "params": {"max_iter": 5, "grid": {"beta": [3.0, 30.0]}}}],
        labelled_ratios=[0.2, 0.4], seeds=[0, 1], feature_fractions=[0.2, 0.5], results_dir=tmp_path / "out")
    r = bench_select(cfg)
    assert r["tasks"] == 1 * 2 * 2 * 5 and len(r["cells"]) == 20
    s = {(x["ratio"], x["method"]): x for x in r["summary"]}
    assert len(s) == 10
    assert s[(0.2, "all")]["average_precision"]["m"] == 30 and s[(0.2, "sgmfs")]["average_precision"]["m"] in (6, 15)
    for x in r["summary"]:
        assert 0 <= x["average_precision"]["mean"] <= 1 and len(x["average_precision"]["values"]) == 2
    # a label-aware selection at 6 of 30 features beats a random one at 6
    curve = {m: s[(0.4, m)]["average_precision"]["curve"]["6"] for m in ("random", "sgmfs")}
    assert curve["sgmfs"] > curve["random"], curve
    # each proposed selector is compared with the baselines only, not with the other proposed one
    assert set(r["goal"]) == {"sgmfs", "tuned"} and set(r["goal_met"]) == {"sgmfs", "tuned"}
    assert set(r["goal"]["tuned"]) == {"toy@0.2", "toy@0.4"} and isinstance(r["goal_met"]["tuned"], bool)
    for label in ("sgmfs", "tuned"):
        paired = r["goal"][label]["toy@0.4"]["average_precision"]["paired"]
        assert set(paired) == {"all", "random", "rfs"} and all(p["seeds"] == 2 for p in paired.values())
        g = r["goal"][label]["toy@0.4"]["macro_f1"]
        assert g["ours"] == s[(0.4, label)]["macro_f1"]["mean"]
        assert g["met"] == all(g["ours"] > s[(0.4, b)]["macro_f1"]["mean"] for b in ("all", "random", "rfs"))
        budget = r["small_budget_best"][label]["toy@0.2"]
        assert set(budget) == {"average_precision", "macro_f1"} and set(budget.values()) <= {"random", "rfs", label}


def test_summary_picks_the_best_count_per_metric():
    cells = [{"dataset": "d", "ratio": 0.1, "method": "m", "select_s": 0.0, "seed": s,
              "results": [{"m": 5, "average_precision": 0.5 + s, "macro_f1": 0.4},
                          {"m": 10, "average_precision": 0.6 + s, "macro_f1": 0.3}]} for s in (0, 1)]
    out = summarize(cells)[("d", 0.1, "m")]
    assert out["average_precision"]["m"] == 10 and out["average_precision"]["mean"] == pytest.approx(1.1)
    assert out["average_precision"]["std"] == pytest.approx(0.5) and out["macro_f1"]["m"] == 5


def test_paired_seeds_matches_seeds_not_positions():
    ours = {"seeds": [0, 1, 2, 3, 4, 5, 6], "values": [0.5, 0.6, 0.7, 0.8, 0.9, 0.4, 0.3]}
    # the other selector's seeds come in another order; seed 6 ties, seed 7 is ours-less and dropped
    other = {"seeds": [7, 6, 5, 4, 3, 2, 1, 0], "values": [0.0, 0.3, 0.2, 0.85, 0.7, 0.6, 0.5, 0.4]}
    r = paired_seeds(ours, other)
    # diffs by seed 0..6: +0.1 +0.1 +0.1 +0.1 +0.05 +0.2 0.0
    assert r["seeds"] == 7 and r["wins"] == 6 and r["losses"] == 0
    assert r["mean_diff"] == pytest.approx(0.65 / 7)
    assert r["p_sign"] == pytest.approx(2 / 2**6)  # exact two-sided sign test over the 6 untied seeds
    with pytest.raises(ValueError, match="share no seed"):
        paired_seeds(ours, {"seeds": [9], "values": [0.1]})


def test_summary_keeps_each_value_with_its_seed():
    cells = [{"dataset": "d", "ratio": 0.1, "method": "m", "select_s": 0.0, "seed": s,
              "results": [{"m": 5, "average_precision": s / 10, "macro_f1": 0.1}]} for s in (3, 1, 2)]
    out = summarize(cells)[("d", 0.1, "m")]["average_precision"]
    assert out["seeds"] == [1, 2, 3] and out["values"] == [0.1, 0.2, 0.3]


def test_config_names_bad_selectors_and_csv_without_labels(tmp_path):
    with pytest.raises(ValidationError, match="unknown feature selector 'lasso'"):
        BenchSelectConfig(datasets=[{"name": "a", "path": "a.arff"}], methods=[{"name": "lasso"}])
    with pytest.raises(ValidationError, match="needs n_labels"):
        BenchSelectConfig(datasets=[{"name": "a", "path": "a.csv", "format": "csv"}], methods=[{"name": "all"}])
    with pytest.raises(ValidationError, match="distinct labels"):
        BenchSelectConfig(datasets=[{"name": "a", "path": "a.arff"}], methods=[{"name": "rfs"}, {"name": "rfs"}])


def test_job_exits_nonzero_naming_an_unknown_key(tmp_path, capsys):
    from jobs.bench_select import main

    (tmp_path / "c.yaml").write_text("datasets: []\nmethods: [{name: all}]\nseedz: [1]\n")
    assert main(["--config", str(tmp_path / "c.yaml")]) == 2
    assert "seedz" in capsys.readouterr().err


def test_bench_label_on_a_small_mesh_file(tmp_path):
    import json

    from rayapp.select.bench import BenchLabelConfig, bench_label
    from test_label import corpus_rows

    rows = corpus_rows(n=60)
    raw = {str(i): {"CONTEXTS": [r["text"]], "MESHES": r["topics"] + ["Humans"]} for i, r in enumerate(rows)}
    (tmp_path / "pq.json").write_text(json.dumps(raw))
    cfg = BenchLabelConfig(data=tmp_path / "pq.json", min_share=0.1, max_share=0.9, labelled_ratios=[0.2], seeds=[0],
                           label={"n_selected": 15, "sgmfs": {"max_iter": 10}})
    r = bench_label(cfg)
    assert r["labels"] == ["astronomy", "cooking", "finance"]  # "Humans" is on every abstract: not a label
    s = {x["method"]: x for x in r["summary"]}
    assert set(s) == {"sgmfs_propagation", "mlknn_all_features"}
    assert s["sgmfs_propagation"]["average_precision"]["mean"] > 0.8


@pytest.mark.parametrize("name", ["bench_select.yaml", "bench_select_20seeds.yaml", "quick/bench_select.yaml"])
def test_shipped_configs_load(name):
    from pathlib import Path

    from rayapp.config import load_config

    cfg = load_config(BenchSelectConfig, Path(__file__).parents[2] / "configs" / name)
    baselines = {"all", "random", "variance", "laplacian", "mutual_info", "rfs"}
    proposed = {"sgmfs"} if "20seeds" in name else {"sgmfs", "sgmfs_cv"}
    assert {m.name for m in cfg.methods} == baselines | proposed
