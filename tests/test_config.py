from pathlib import Path

import pytest

from rayapp.config import AppConfig, BenchMainConfig, ConfigError, DemoConfig, load_config

REPO = Path(__file__).parent.parent


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_unknown_key_is_named(tmp_path):
    p = write(tmp_path, "corpus:\n  kind: stdlib\n  modulez: [json]\n")
    with pytest.raises(ConfigError, match=r"corpus\.modulez: unknown key"):
        load_config(DemoConfig, p)


def test_unknown_top_level_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"questionz: unknown key"):
        load_config(DemoConfig, write(tmp_path, "questionz: [a]\n"))


def test_wrong_type_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"embed\.batch_size: Input should be a valid integer"):
        load_config(DemoConfig, write(tmp_path, "embed:\n  batch_size: lots\n"))


def test_out_of_range_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"retriever\.top_k: Input should be greater than or equal to 1"):
        load_config(AppConfig, write(tmp_path, "retriever:\n  top_k: 0\n"))


def test_retriever_batching_is_checked(tmp_path):
    cfg = load_config(AppConfig, write(tmp_path, "retriever:\n  max_batch_size: 1\n"))
    assert cfg.retriever.max_batch_size == 1 and AppConfig().retriever.max_batch_size == 16
    with pytest.raises(ConfigError, match=r"retriever\.max_batch_size: Input should be greater than or equal to 1"):
        load_config(AppConfig, write(tmp_path, "retriever:\n  max_batch_size: 0\n"))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(DemoConfig, tmp_path / "nope.yaml")


def test_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(DemoConfig, write(tmp_path, "corpus: [unclosed\n"))


def test_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must hold a mapping, not list"):
        load_config(DemoConfig, write(tmp_path, "- a\n- b\n"))


def test_app_config_is_loaded_relative_and_checked(tmp_path):
    write(tmp_path, "retriever:\n  top_k: 7\n", "serve.yaml")
    cfg = load_config(DemoConfig, write(tmp_path, "app_config: serve.yaml\nquestions: [q]\n"))
    assert cfg.app.retriever.top_k == 7
    write(tmp_path, "retriever:\n  topk: 7\n", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\n  retriever\.topk: unknown key"):
        load_config(DemoConfig, write(tmp_path, "app_config: bad.yaml\n", "d2.yaml"))
    with pytest.raises(ConfigError, match="either app or app_config"):
        load_config(DemoConfig, write(tmp_path, "app_config: serve.yaml\napp: {}\n", "d3.yaml"))


@pytest.mark.parametrize("name,model", [("demo.yaml", DemoConfig), ("serve.yaml", AppConfig),
                                        ("bench_main.yaml", BenchMainConfig)])
def test_repo_configs_load(name, model):
    cfg = load_config(model, REPO / "configs" / name)
    assert isinstance(cfg, model)


def test_demo_config_has_questions():
    cfg = load_config(DemoConfig, REPO / "configs" / "demo.yaml")
    assert cfg.questions and cfg.app.generator.model == "smollm2"


def test_job_configs_load():
    from rayapp.config import BuildCorpusConfig
    from rayapp.data.bench import BenchEmbedConfig, BenchStreamConfig
    from rayapp.train.bench import BenchQualityConfig, BenchThroughputConfig
    from rayapp.rerank.bench import BenchRerankerConfig
    from rayapp.retrieve.bench import BenchANNConfig, BenchFunnelConfig
    from rayapp.retrieve.l2g import L2GConfig
    from rayapp.train.config import SoupConfig, TrainEmbedderConfig, TrainRerankerConfig
    from rayapp.generate.bench import BenchBatchingConfig, BenchPicaConfig
    from jobs.pica_vectors import PicaVectorsConfig

    for name, model in [("train_reranker.yaml", TrainRerankerConfig), ("train_l2g.yaml", L2GConfig),
                        ("bench_reranker.yaml", BenchRerankerConfig), ("bench_funnel.yaml", BenchFunnelConfig),
                        ("bench_funnel_scale.yaml", BenchFunnelConfig), ("bench_pica.yaml", BenchPicaConfig), ("bench_pica_fixed.yaml", BenchPicaConfig), ("bench_pica_long.yaml", BenchPicaConfig),
                        ("bench_batching.yaml", BenchBatchingConfig), ("pica_vectors.yaml", PicaVectorsConfig),
                        ("bench_ann.yaml", BenchANNConfig), ("build_corpus.yaml", BuildCorpusConfig), ("bench_embed.yaml", BenchEmbedConfig),
                        ("bench_stream.yaml", BenchStreamConfig), ("train_embedder.yaml", TrainEmbedderConfig),
                        ("soup.yaml", SoupConfig), ("bench_train_quality.yaml", BenchQualityConfig),
                        ("bench_train_throughput.yaml", BenchThroughputConfig)]:
        assert isinstance(load_config(model, REPO / "configs" / name), model)


def test_train_config_errors_name_the_key(tmp_path):
    from rayapp.train.config import TrainEmbedderConfig

    bad = write(tmp_path, "stages:\n  - name: a\n    data: x.jsonl\n    steps: 2\n    lossy: focal\n")
    with pytest.raises(ConfigError, match=r"stages\.0\.lossy: unknown key"):
        load_config(TrainEmbedderConfig, bad)
