"""The data and index stages on a two-node cluster give what one process computes alone."""

import numpy as np
import pytest

from rayapp.config import CorpusConfig, EmbedConfig, IndexConfig
from rayapp.data import build_corpus, load_passages
from rayapp.data._sources import list_items, read_item
from rayapp.index import LoadedIndex, build_index

pytestmark = pytest.mark.multinode

CFG = CorpusConfig(modules=["json", "csv"])


def test_cluster_has_two_alive_nodes(two_node_cluster):
    import ray

    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) == 2 and ray.cluster_resources()["CPU"] == 2


def test_stage_code_runs_on_every_node(two_node_cluster):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=1)
    def read_on_node(item):
        return ray.get_runtime_context().get_node_id(), [r["doc_id"] for r in read_item(item, CFG)]

    item = list_items(CFG)[0]
    expected = [r["doc_id"] for r in read_item(item, CFG)]
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    results = ray.get([read_on_node.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False))
                       .remote(item) for n in nodes])
    assert sorted(r[0] for r in results) == sorted(nodes)
    assert all(r[1] == expected for r in results)


def test_corpus_and_index_on_two_nodes_match_local(two_node_cluster, tmp_path):
    from rayapp.data.corpus import _chunk_doc, _read_rows
    from rayapp.models import load_sentence_transformer

    info = build_corpus(CFG, tmp_path)
    assert info.manifest["counts"]["quarantined"] == 0
    items = [{**it, "idx": i} for i, it in enumerate(list_items(CFG))]
    local_docs = [r for it in items for r in _read_rows(it, CFG) if r["n_tokens"] >= CFG.min_doc_tokens]
    ch = CFG.chunk
    local_ids = sorted(p["passage_id"] for d in local_docs for p in _chunk_doc(d, ch.max_tokens, ch.min_tokens, ch.tokenizer))
    assert load_passages(info.path).column("passage_id").to_pylist() == local_ids

    index = build_index(info, EmbedConfig(actors=2, num_cpus_per_actor=0.5, torch_threads=1, batch_size=16),
                        IndexConfig(), tmp_path)
    ix = LoadedIndex(index.path)
    vecs = np.load(index.path / "embeddings.npy")
    direct = load_sentence_transformer("minilm", 256).encode(ix.texts, normalize_embeddings=True)
    assert (vecs * direct).sum(axis=1).min() > 0.999


def test_grpo_trainer_and_rollout_actor_on_separate_nodes(two_node_cluster, tiny_lm_dir, tmp_path):
    import json

    from rayapp.extract.data import write_extract_rows
    from rayapp.train.config import TrainLearConfig
    from rayapp.train.grpo import train_lear

    rows = [{"question": f"Is {i} even?", "passages": [f"{i} is a number."], "answers": ["yes"]} for i in range(4)]
    data = write_extract_rows(rows, tmp_path / "rows.jsonl")
    cfg = TrainLearConfig(model=tiny_lm_dir, data=data, steps=1, questions_per_step=1, group_size=2,
                          max_extract_tokens=8, max_answer_tokens=2, workers=1, cpus_per_worker=0.5,
                          trainer_resources={"trainer": 0.5}, rollout={"num_cpus": 0.5, "resources": {"rollout": 0.5}},
                          output_dir=tmp_path / "out")
    out = train_lear(cfg)
    assert out["metrics"]["step"] == 1
    import ray

    placement = json.loads((tmp_path / "out" / "placement.json").read_text())
    offers = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    assert [("trainer" in offers[n]) for n in placement["trainer_nodes"]] == [True]
    assert [("rollout" in offers[n]) for n in placement["rollout_nodes"]] == [True]
    assert placement["rollout_nodes"] != placement["trainer_nodes"]  # split by the custom resources
