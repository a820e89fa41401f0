import json

import pytest

from rayapp.config import CorpusConfig
from rayapp.data import SourceError
from rayapp.data._sources import list_items, read_item


def test_stdlib_module_is_listed_and_read():
    cfg = CorpusConfig(modules=["json", "csv"])
    items = list_items(cfg)
    # a package stands for itself and its public submodules
    assert [i["name"] for i in items] == ["json", "json.decoder", "json.encoder", "json.scanner", "json.tool", "csv"]
    rows = read_item(items[0], cfg)
    titles = {r["title"]: r for r in rows}
    assert "json.dumps" in titles and not any(r["error"] for r in rows)
    dumps = titles["json.dumps"]
    assert dumps["text"].startswith("json.dumps(obj,") and "JSON formatted" in dumps["text"]
    assert dumps["cluster_key"] == "json" and json.loads(dumps["meta"])["lineno"] > 0


def test_unknown_and_c_modules_are_clear_errors():
    with pytest.raises(SourceError, match="no Python source for stdlib module 'nosuchmodule'"):
        list_items(CorpusConfig(modules=["nosuchmodule"]))
    with pytest.raises(SourceError, match="'itertools'"):
        list_items(CorpusConfig(modules=["itertools"]))


def test_all_modules_skip_tests_and_private():
    names = [i["name"] for i in list_items(CorpusConfig(modules=["*"]))]
    assert "json" in names and "email.mime.text" in names
    assert not any(n.startswith(("test.", "idlelib")) or n.split(".")[-1].startswith("_") for n in names)


def test_folder_source_rows(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "good.md").write_text("Hello there, world of docs.", encoding="utf-8")
    (tmp_path / "bad.md").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    (tmp_path / "big.md").write_text("x" * 50, encoding="utf-8")
    cfg = CorpusConfig(kind="folder", path=tmp_path, max_file_bytes=40)
    rows = {i["name"]: read_item(i, cfg)[0] for i in list_items(cfg)}
    assert rows["a/good.md"]["error"] == "" and rows["a/good.md"]["cluster_key"] == "a"
    assert rows["bad.md"]["error"] == "invalid UTF-8 at byte 3"
    assert rows["empty.md"]["error"] == "empty text"
    assert rows["big.md"]["error"].startswith("oversized: 50 bytes")


def test_folder_source_missing(tmp_path):
    with pytest.raises(SourceError, match="corpus.path: not found"):
        list_items(CorpusConfig(kind="folder", path=tmp_path / "nope"))
    with pytest.raises(SourceError, match="corpus.path: required"):
        list_items(CorpusConfig(kind="folder"))
