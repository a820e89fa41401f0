"""Build DeepSpeed's CPU ops once, at setup, so that no test or job pays for the JIT compile.

    python -m rayapp._internal.prebuild

``deepspeed_shm_comm`` (shared-memory collectives, loaded by every CPU DeepSpeed run; about 30 s to
compile) goes to ``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), where later
loads take about 2 s. The optimizer ops are not needed: rayapp passes ``torch.optim.AdamW``.

torch guards a build with a ``lock`` file in the build folder that the builder holds open and
removes when done. A build killed mid-compile leaves it behind, and every later build then waits on
it forever; :func:`clear_stale_lock` removes a lock that no live process holds open (Linux).
"""

import os
import sys
import time
from pathlib import Path


def clear_stale_lock(build_dir: Path) -> bool:
    """Remove ``build_dir/lock`` if it exists and no process has it open; True if removed. Where
    ``/proc`` cannot be read (not Linux) the lock is left alone."""
    lock = Path(build_dir) / "lock"
    if not lock.exists() or not Path("/proc/self/fd").is_dir():
        return False
    target = str(lock.resolve())
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            fds = list(fd_dir.iterdir())
        except OSError:  # gone, or another user's process
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    return False
            except OSError:
                continue
    lock.unlink(missing_ok=True)
    return True


def main() -> int:
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from deepspeed.accelerator import get_accelerator

    t0 = time.perf_counter()
    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None or not builder.is_compatible():
        print("deepspeed: shared-memory comm op not available here; skipped")
        return 0
    from torch.utils.cpp_extension import _get_build_directory

    build_dir = Path(_get_build_directory(builder.name, False))
    if clear_stale_lock(build_dir):
        print(f"deepspeed: removed a stale build lock in {build_dir} (a build killed before it finished)")
    builder.load(verbose=False)
    print(f"deepspeed: {builder.NAME} ready ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
