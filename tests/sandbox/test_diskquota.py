"""The host's measurement of a data dir (protoreg/sandbox/diskquota.py) and the disk_max setting."""

from __future__ import annotations

import os

import pytest

from protoreg import SandboxError
from protoreg.sandbox.diskquota import usage
from protoreg.sandbox.policy import SandboxPolicy


def test_usage_counts_allocated_bytes_of_nested_files(tmp_path):
    (tmp_path / "a").write_bytes(os.urandom(1 << 20))
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "b").write_bytes(os.urandom(3 << 20))
    used = usage(tmp_path)
    assert 4 << 20 <= used <= (4 << 20) + 64 * 1024  # the files, plus a few directory blocks


def test_a_sparse_file_counts_what_it_allocates_not_its_length(tmp_path):
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1 << 30)
        f.write(b"x")
    assert usage(tmp_path) < 1 << 20


def test_symlinks_are_not_followed_out_of_the_directory(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(os.urandom(2 << 20))
    data = tmp_path / "data"
    data.mkdir()
    (data / "link").symlink_to(outside, target_is_directory=True)
    assert usage(data) < 64 * 1024


def test_a_missing_directory_is_empty(tmp_path):
    assert usage(tmp_path / "nothing") == 0


@pytest.mark.parametrize("value", [0, -1, 1.5, "1G"])
def test_disk_max_must_be_a_positive_integer_or_none(value):
    with pytest.raises(SandboxError, match="disk_max"):
        SandboxPolicy(disk_max=value)
    assert SandboxPolicy(disk_max=None).disk_max is None


def test_every_entry_counts_at_least_one_block(tmp_path):
    from protoreg.sandbox.diskquota import MIN_ENTRY

    for i in range(100):
        (tmp_path / str(i)).touch()  # no data blocks, one inode each
    assert usage(tmp_path) >= 100 * MIN_ENTRY
