"""The extract benchmarks and jobs: configs, the comparison on a tiny model, exit codes on bad data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rayapp.config import load_config
from rayapp.extract.bench import BenchExtractConfig, BenchLearConfig, BuildExtractDataConfig, read_step_metrics
from rayapp.extract.data import write_extract_rows
from rayapp.train.config import TrainLearConfig, TrainSeerConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name,model", [
    ("build_extract_data", BuildExtractDataConfig), ("train_lear", TrainLearConfig),
    ("train_lear_qwen1.5b", TrainLearConfig), ("train_seer", TrainSeerConfig), ("train_seer_qwen1.5b", TrainSeerConfig),
    ("bench_lear", BenchLearConfig), ("bench_extract", BenchExtractConfig),
    ("bench_extract_cold_start", BenchExtractConfig)])
def test_shipped_configs_load(name, model):
    load_config(model, REPO / "configs" / f"{name}.yaml")


def test_bench_extract_compares_extractors_on_the_same_rows(tiny_lm_dir, minilm, tmp_path):
    from rayapp.extract.bench import bench_extract

    rows = [{"id": str(i), "question": f"Does drug {i} lower risk?", "answers": ["yes"], "answer_format": "yes or no",
             "passages": [f"Drug {i} lowers risk in trials. The weather was sunny.", "Patients were adults."]}
            for i in range(2)]
    cfg = BenchExtractConfig(data=write_extract_rows(rows, tmp_path / "t.jsonl"), generator=tiny_lm_dir,
                             max_answer_tokens=3, extractors=[{"name": "full", "method": "full"},
                                                              {"name": "top", "method": "top_sentences", "k": 1},
                                                              {"name": "lm", "method": "lm", "model": tiny_lm_dir,
                                                               "max_tokens": 8}])
    r = bench_extract(cfg)
    s = r["summary"]
    assert r["rows"] == 2 and set(s) == {"full", "top", "lm"}
    assert s["full"]["compression"] == 1.0 and s["top"]["compression"] > 2 and s["lm"]["fallbacks"] == 2
    assert all(0 <= m["f1"] <= 1 and 0 <= m["em"] <= 1 for m in s.values())
    assert [x["id"] for x in r["per_query"]["top"]] == ["0", "1"]
    with pytest.raises(ValueError, match="names must be unique"):
        bench_extract(cfg.model_copy(update={"extractors": cfg.extractors[:1] * 2}))


def test_step_metrics_keep_the_last_record_of_each_step(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(m) + "\n" for m in [{"step": 1, "x": 1}, {"step": 2, "x": 2}, {"step": 2, "x": 3}]))
    assert read_step_metrics(p) == [{"step": 1, "x": 1}, {"step": 2, "x": 3}]


def test_train_job_with_missing_data_exits_2_naming_the_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {tmp_path / 'nope.jsonl'}\noutput_dir: {tmp_path / 'out'}\n")
    r = subprocess.run([sys.executable, "-m", "jobs.train_lear", "--config", str(cfg)], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "extraction data not found" in r.stderr and "nope.jsonl" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"data: {tmp_path / 'x.jsonl'}\ngroup_sise: 4\n")
    r = subprocess.run([sys.executable, "-m", "jobs.train_lear", "--config", str(bad)], cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "group_sise" in r.stderr
