"""``rayapp bench all``: every benchmark job is registered with configs that load; a real run of a
small job gives its figure, baseline and ratio in the report (JSON, Markdown, PNG) and in the
BENCHMARKS.md section; a failing job is recorded and the others still run; absent data skips."""

import json
import subprocess
import sys

import pytest

from rayapp.config import load_config
from rayapp.eval.bench_all import BENCHMARKS, config_model, run_benchmarks, write_summary_section
from tests.conftest import REPO


def test_every_benchmark_job_is_registered_and_its_configs_load():
    from rayapp.extract.bench import BuildExtractDataConfig
    from rayapp.train.config import TrainSeerConfig

    jobs = {p.stem for p in (REPO / "jobs").glob("bench_*.py")} - {"bench_all"}
    assert {b.job.split(".")[1] for b in BENCHMARKS.values()} == jobs
    before_models = {"jobs.build_extract_data": BuildExtractDataConfig, "jobs.train_seer": TrainSeerConfig}
    for b in BENCHMARKS.values():
        for mode in ("quick", "full"):
            cfg = load_config(config_model(b), b.config_path(mode))
            assert (str(cfg.results_dir).startswith("results/quick/")) == (mode == "quick"), (b.name, mode)
            for module, path in b.before.get(mode, ()):
                load_config(before_models[module], REPO / path)
    order = list(BENCHMARKS)
    assert order.index("reranker") < order.index("funnel") and order.index("lear") < order.index("extract")


def tiny_ann(path, results):
    path.write_text(f"n: 3000\ndim: 32\ncenters: 20\nqueries: 50\nfactories: ['IVF16,Flat', 'HNSW8']\n"
                    f"nprobe: [8]\nef_search: [64]\nthreads: 1\nresults_dir: {results}\n", encoding="utf-8")
    return path


def test_a_run_reports_figures_and_a_failed_job_does_not_stop_the_rest(tmp_path):
    ann = tiny_ann(tmp_path / "ann.yaml", tmp_path / "ann")
    broken = tmp_path / "embed.yaml"
    broken.write_text("n_textz: 10\n", encoding="utf-8")
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nIntro.\n\n## Details\n\nhand-written\n", encoding="utf-8")
    out = tmp_path / "report"
    report = run_benchmarks("quick", only=["embed", "ann"], configs={"ann": ann, "embed": broken}, results_dir=out,
                            timeout_s=600, benchmarks_md=md)
    rows = {r["bench"]: r for r in report["benchmarks"]}
    assert list(rows) == ["embed", "ann"]  # registration order, not the order asked
    assert rows["embed"]["status"] == "failed" and rows["embed"]["rc"] == 2
    assert "n_textz: unknown key" in rows["embed"]["reason"]
    assert rows["ann"]["status"] == "ok", rows["ann"].get("reason")
    (fig,) = rows["ann"]["figures"]
    raw = json.loads((tmp_path / "ann" / "bench_ann.json").read_text())
    best = max((k for k in raw["results"] if k != "flat"), key=lambda k: raw["results"][k]["speedup_vs_flat"]
               if raw["results"][k]["recall@10"] >= 0.95 else -1)
    assert fig["value"] == raw["results"][best]["qps"] and fig["baseline"] == raw["results"]["flat"]["qps"]
    assert fig["ratio"] == raw["results"][best]["speedup_vs_flat"] and "recall >= 0.95" in fig["target"]
    assert json.loads((out / "bench_all.json").read_text())["benchmarks"][1]["figures"] == [fig]
    assert (out / "bench_all.png").stat().st_size > 1000 and (out / "logs" / "ann.log").is_file()
    table = (out / "bench_all.md").read_text()
    assert "exact IndexFlatIP" in table and "failed" in table
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- bench-all:quick:start -->") and "hand-written" in text
    # collect: the same figures from what is on disk, nothing run; the section is replaced, not added
    again = run_benchmarks("quick", only=["ann"], configs={"ann": ann}, results_dir=out, collect=True,
                           benchmarks_md=md)
    assert again["benchmarks"][0]["status"] == "collected" and again["benchmarks"][0]["figures"] == [fig]
    assert md.read_text().count("bench-all:quick:start") == 1 and "hand-written" in md.read_text()
    assert "| embed |" not in md.read_text()  # the section is the latest report's only


def test_absent_data_skips_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYAPP_DATA_DIR", str(tmp_path / "nowhere"))
    report = run_benchmarks("quick", only=["pairs"], results_dir=tmp_path / "r")
    (row,) = report["benchmarks"]
    assert row["status"] == "skipped" and "../shared/data" in row["reason"] and not (tmp_path / "r" / "logs").exists()


def test_unknown_benchmark_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown benchmark\(s\) \['nope'\]"):
        run_benchmarks("quick", only=["nope"])


def test_summary_sections_are_per_mode(tmp_path):
    md = tmp_path / "B.md"
    base = {"command": "rayapp bench all", "date": "2026-12-02", "seconds": 1.0, "benchmarks": [],
            "machine": {"cpu_count": 2, "machine": "x86_64", "torch": "2.13.0", "cuda": False}}
    write_summary_section(md, {**base, "mode": "quick"})
    write_summary_section(md, {**base, "mode": "full", "command": "rayapp bench all --full"})
    write_summary_section(md, {**base, "mode": "quick", "date": "2026-12-03"})
    text = md.read_text()
    assert text.count("bench-all:quick:start") == 1 and text.count("bench-all:full:start") == 1
    assert "2026-12-03" in text and "2026-12-02" in text  # the full section kept its date


def test_cli_bench_needs_all():
    r = subprocess.run([sys.executable, "-m", "rayapp.cli", "bench", "main"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "rayapp bench all" in r.stderr
    r = subprocess.run([sys.executable, "-m", "rayapp.cli", "bench", "all", "--only", "nope"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown benchmark(s) ['nope']" in r.stderr


def test_batching_headline_compares_each_generator_variant_with_the_first():
    conc = lambda t1, t8: {"1": {"tokens_per_s": t1, "mean_batch_size": 1.0, "throughput_vs_first": 1.0,  # noqa: E731
                                  "tokens_per_s_vs_first_variant": t1 / 10},
                            "8": {"tokens_per_s": t8, "mean_batch_size": 8.0, "throughput_vs_first": t8 / t1,
                                  "tokens_per_s_vs_first_variant": t8 / 30}}
    r = {"concurrency": conc(10, 30), "variants": {
        "hf": {"deploy_to_ready_s": 14.0, "ready_vs_first": 1.0, "concurrency": conc(10, 30)},
        "onnx": {"deploy_to_ready_s": 7.0, "ready_vs_first": 0.5, "concurrency": conc(20, 90)}}}
    figs = BENCHMARKS["batching"].headline(r)
    assert [f.figure for f in figs] == ["tokens/s at 8 concurrent (mean batch 8.0)", "onnx: deploy to ready s",
                                        "onnx: tokens/s at 1 concurrent", "onnx: tokens/s at 8 concurrent"]
    assert (figs[1].baseline_name, figs[1].baseline, figs[1].ratio, figs[1].better) == ("hf", 14.0, 0.5, "lower")
    assert [f.ratio for f in figs[2:]] == [2.0, 3.0]
    assert BENCHMARKS["batching"].headline({"concurrency": conc(10, 30)})[0].ratio == 3.0  # older JSON: no variants


def test_select_headline_counts_cells_per_proposed_selector():
    g = lambda met: {"ours": 0.7, "best_baseline": "rfs", "best_baseline_value": 0.6, "met": met}  # noqa: E731
    r = {"goal": {"sgmfs": {"a@0.1": {"average_precision": g(True), "macro_f1": g(False)}},
                  "sgmfs_cv": {"a@0.1": {"average_precision": g(True), "macro_f1": g(True)}}}}
    figs = BENCHMARKS["select"].headline(r)
    assert [(f.figure, f.value, f.baseline, f.met) for f in figs] == [
        ("cells where sgmfs beats every baseline", 1.0, 2.0, False),
        ("SGMFS average_precision a@0.1", 0.7, 0.6, True), ("SGMFS macro_f1 a@0.1", 0.7, 0.6, False),
        ("cells where sgmfs_cv beats every baseline", 2.0, 2.0, True)]
