"""The console command and the job entry points, run as a user would (subprocesses)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent


def run(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_help_lists_subcommands():
    r = run("-m", "rayapp.cli", "--help")
    assert r.returncode == 0
    for cmd in ("demo", "build-corpus", "build-pairs", "bench-main", "bench-embed", "bench-stream", "bench-pairs", "query"):
        assert cmd in r.stdout


def test_no_command_is_usage_error():
    assert run("-m", "rayapp.cli").returncode == 2


def test_unknown_command():
    r = run("-m", "rayapp.cli", "nope")
    assert r.returncode == 2 and "unknown command 'nope'" in r.stderr


def test_unknown_config_key_exits_nonzero_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus:\n  modulez: [json]\n")
    r = run("-m", "rayapp.cli", "demo", "--config", str(bad))
    assert r.returncode == 2 and "corpus.modulez: unknown key" in r.stderr


def test_job_module_missing_config_file(tmp_path):
    r = run("-m", "jobs.demo", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "config file not found" in r.stderr


def test_missing_model_fails_before_any_work(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\nquestions: [q]\napp:\n  generator:\n    model: {tmp_path / 'no-model'}\n")
    r = run("-m", "jobs.demo", "--config", str(cfg))
    assert r.returncode == 2 and "generator.model: model" in r.stderr and "not found" in r.stderr
    assert not (tmp_path / "home").exists()


def test_empty_corpus_exits_nonzero(tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    (src / "a.md").write_bytes(b"\xff\xfe\xfa")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\nquestions: [q]\nray: {{num_cpus: 1}}\n"
                   f"corpus:\n  kind: folder\n  path: {src}\n")
    r = run("-m", "jobs.demo", "--config", str(cfg), env={"RAY_ADDRESS": ""})
    assert r.returncode == 2, r.stderr[-2000:]
    assert "corpus is empty" in r.stderr and "invalid UTF-8 at byte 0" in r.stderr


def test_query_unreachable_server():
    r = run("-m", "rayapp.cli", "query", "hello", "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "cannot reach" in r.stderr
