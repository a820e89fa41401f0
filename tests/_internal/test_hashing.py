"""Content hashes, and the remembered digest of a large file."""

import hashlib
import os

from rayapp._internal.hashing import file_digest


def test_file_digest_is_remembered_until_the_file_changes(tmp_path):
    f, memo = tmp_path / "weights.bin", tmp_path / "memo"
    f.write_bytes(b"a" * 3000)
    first = hashlib.sha256(b"a" * 3000).hexdigest()
    assert file_digest(f, 12, memo_dir=memo) == first[:12] == file_digest(f, 12)
    assert len(list(memo.iterdir())) == 1
    # same size and mtime, other bytes: the remembered digest is returned without reading the file
    st = os.stat(f)
    f.write_bytes(b"b" * 3000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_digest(f, 16, memo_dir=memo) == first[:16]
    assert file_digest(f, 16) == hashlib.sha256(b"b" * 3000).hexdigest()[:16]
    # a new mtime is a new identity: hashed again
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_digest(f, 16, memo_dir=memo) == hashlib.sha256(b"b" * 3000).hexdigest()[:16]


def test_an_unwritable_memo_still_gives_the_digest(tmp_path):
    f = tmp_path / "w.bin"
    f.write_bytes(b"xyz")
    blocker = tmp_path / "memo"
    blocker.write_text("a file where the memo folder would go")
    assert file_digest(f, memo_dir=blocker) == hashlib.sha256(b"xyz").hexdigest()[:16]
