"""``rayapp add-documents`` as a job: the shipped config's documents become a registered delta of
an existing index (no app running, so nothing is rolled), and a home without an index is a clear
error, not a traceback."""

import json
import shutil
from pathlib import Path

from jobs.add_documents import main
from tests.conftest import REPO


def test_add_documents_registers_a_delta_of_the_index(small_index, tmp_path, capsys):
    from rayapp.index.delta import list_deltas

    shutil.copy(REPO / "configs" / "examples" / "new_documents.jsonl", tmp_path / "docs.jsonl")
    (tmp_path / "docs.jsonl").open("a", encoding="utf-8").write("{broken\n")
    cfg = tmp_path / "add.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\nindex_path: {small_index.path}\ndocuments: docs.jsonl\n"
                   f"id_field: id\nresults_dir: {tmp_path / 'results'}\n", encoding="utf-8")
    assert main(["--config", str(cfg)]) == 0
    out = json.loads((tmp_path / "results" / "add_documents.json").read_text())
    assert out["rolled"] is False and out["passages"] >= 4 and out["base"] == str(small_index.path)
    assert list_deltas(tmp_path / "home", small_index.path) == [out["delta"]]
    delta = json.loads((Path(out["delta"]) / "manifest.json").read_text())
    corpus = json.loads((Path(delta["corpus_path"]) / "manifest.json").read_text())
    assert corpus["counts"]["documents"] == 4 and corpus["counts"]["quarantined"] == 1
    assert "registered for the next deploy" in capsys.readouterr().out


def test_add_documents_without_an_index_names_the_key(tmp_path, capsys):
    cfg = tmp_path / "add.yaml"
    cfg.write_text(f"home: {tmp_path / 'home'}\ndocuments: {REPO / 'configs/examples/new_documents.jsonl'}\n")
    assert main(["--config", str(cfg)]) == 2
    assert "index_path: no built index under" in capsys.readouterr().err


def test_shipped_add_documents_config_loads():
    from rayapp.config import load_config
    from rayapp.index.delta import AddDocumentsConfig

    cfg = load_config(AddDocumentsConfig, REPO / "configs" / "add_documents.yaml")
    assert (REPO / "configs" / cfg.documents).is_file() and (REPO / "configs" / cfg.app_config).is_file()
