"""Build DeepSpeed's CPU ops once, at setup, so that no test or job pays for the JIT compile.

    python -m rayapp._internal.prebuild

``deepspeed_shm_comm`` (shared-memory collectives, loaded by every CPU DeepSpeed run; about 30 s to
compile) goes to ``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), where later
loads take about 2 s. The optimizer ops are not needed: rayapp passes ``torch.optim.AdamW``.
"""

import os
import sys
import time


def main() -> int:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.accelerator import get_accelerator

    t0 = time.perf_counter()
    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not builder.is_compatible():
        print("deepspeed: shared-memory comm op not available here; skipped")
        return 0
    builder.load(verbose=False)
    print(f"deepspeed: {builder.NAME} ready ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
