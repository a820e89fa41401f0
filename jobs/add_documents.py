"""``rayapp add-documents``: make new documents retrievable in a live app without a full rebuild.

    rayapp add-documents --config configs/add_documents.yaml
Builds a delta index over the documents (JSONL, a path relative to the config file; bad lines
quarantined and counted) with the base index's chunking and embedder, registers it, and when the app serves the base index rolls the
Retriever to search the delta too (in place). Prints the delta and the seconds each part took.
"""

from __future__ import annotations

import sys
import time

from rayapp._internal.jobs import run_job
from rayapp.index.delta import AddDocumentsConfig


def _run(cfg: AddDocumentsConfig, path) -> None:
    from pathlib import Path

    from rayapp._internal.artifacts import read_manifest, write_json_atomic
    from rayapp._internal.ray_utils import init_ray
    from rayapp.config import AppConfig, load_config
    from rayapp.index import latest_index
    from rayapp.index.delta import DeltaError, build_delta, list_deltas
    from rayapp.serve import deploy_app, served_index_version

    try:
        base = latest_index(cfg.home) if cfg.index_path == "latest" else Path(cfg.index_path)
    except FileNotFoundError as e:
        raise DeltaError(f"index_path: {e}") from None
    init_ray(cfg.ray)
    t0 = time.perf_counter()
    documents = cfg.documents if cfg.documents.is_absolute() else path.parent / cfg.documents
    info = build_delta(base, documents, cfg.home, text_field=cfg.text_field, title_field=cfg.title_field,
                       id_field=cfg.id_field)
    out = {"base": str(base), "delta": str(info.path), "passages": info.manifest["counts"]["passages"],
           "build_s": round(time.perf_counter() - t0, 3), "rolled": False}
    print(f"delta {info.version}: {out['passages']} passages over {base} in {out['build_s']} s -> {info.path}")
    if served_index_version() == read_manifest(base)["version"]:
        app_path = cfg.app_config if cfg.app_config is None or cfg.app_config.is_absolute() else path.parent / cfg.app_config
        app = load_config(AppConfig, app_path) if app_path else AppConfig()
        t1 = time.perf_counter()
        deltas = list_deltas(cfg.home, base)
        deploy_app(app, base, deltas)
        out.update(rolled=True, roll_s=round(time.perf_counter() - t1, 3))
        print(f"the running app now serves {len(deltas)} delta(s) (rolled in {out['roll_s']} s)")
    else:
        print("no running app serves this index: the delta is registered for the next deploy")
    write_json_atomic(Path(cfg.results_dir) / "add_documents.json", out)


def main(argv=None) -> int:
    return run_job("rayapp add-documents", AddDocumentsConfig, "configs/add_documents.yaml", _run, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
