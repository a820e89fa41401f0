"""The DeepSpeed prebuild clears a build lock that a killed build left behind, never a live one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rayapp._internal.prebuild import clear_stale_lock

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")


def test_a_lock_nobody_holds_is_removed(tmp_path):
    (tmp_path / "lock").touch()
    assert clear_stale_lock(tmp_path) is True and not (tmp_path / "lock").exists()
    assert clear_stale_lock(tmp_path) is False  # nothing to clear


def test_a_lock_held_by_a_live_build_is_kept(tmp_path):
    lock = tmp_path / "lock"
    fd = os.open(lock, os.O_CREAT | os.O_EXCL)  # as torch's FileBaton takes it
    try:
        assert clear_stale_lock(tmp_path) is False and lock.exists()
    finally:
        os.close(fd)
    # held by another process, then that process is killed: stale
    holder = subprocess.Popen([sys.executable, "-c", f"import os, time; os.open({str(lock)!r}, os.O_RDONLY); "
                               "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert clear_stale_lock(tmp_path) is False and lock.exists()
    finally:
        holder.kill()
        holder.wait()
    assert clear_stale_lock(tmp_path) is True and not lock.exists()
