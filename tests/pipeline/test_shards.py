import gzip
import os
import re

import fsspec
import pytest

from pipeline.errors import JobConfigError
from pipeline.formats.shards import match_shards, open_shard, shard_format, shard_names


def test_names_are_relative_to_the_deepest_common_directory():
    names = shard_names(["/data/in/a/x.txt", "/data/in/b/y.txt", "/data/in/z.txt"])
    assert names == {"/data/in/a/x.txt": "a/x.txt", "/data/in/b/y.txt": "b/y.txt", "/data/in/z.txt": "z.txt"}


def test_a_single_shard_is_named_by_its_file_name():
    assert shard_names(["gs://bucket/corpus/part-1.txt"]) == {"gs://bucket/corpus/part-1.txt": "part-1.txt"}


def test_format_is_chosen_by_extension_under_compression():
    assert shard_format("a/b.jsonl.gz", "auto") == "jsonl"
    assert shard_format("a/b.txt.gz", "auto") == "text"
    assert shard_format("a/b.data", "jsonl") == "jsonl"


def test_several_patterns_match_each_file_once(tmp_path):
    for name in ("a.txt", "b.txt", "c.jsonl"):
        (tmp_path / name).write_text("x\n")
    shards = match_shards([str(tmp_path / "*.txt"), str(tmp_path / "a.*"), str(tmp_path / "*.jsonl")])
    assert [(s.name, s.format) for s in shards] == [("a.txt", "text"), ("b.txt", "text"), ("c.jsonl", "jsonl")]
    assert [s.size for s in shards] == [2, 2, 2]


def test_a_pattern_matching_nothing_is_a_config_error(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(JobConfigError, match="no file matches --input .*missing"):
        match_shards([str(tmp_path / "*.txt"), str(tmp_path / "missing*.txt")])


def test_fsspec_memory_filesystem_is_matched_and_read():
    with fsspec.open("memory://shards-test/part-1.txt.gz", "wb") as f:
        f.write(gzip.compress(b"one\ntwo\n"))
    shards = match_shards(["memory://shards-test/*.gz"])
    assert [s.name for s in shards] == ["part-1.txt.gz"]
    with open_shard(shards[0].path)[0] as stream:
        assert stream.read() == b"one\ntwo\n"


def test_local_gzip_shard_is_decompressed(tmp_path):
    path = tmp_path / "a.txt.gz"
    path.write_bytes(gzip.compress("你好\n".encode()))
    with open_shard(str(path))[0] as stream:
        assert stream.read().decode() == "你好\n"


@pytest.mark.parametrize("suffix", [".bz2", ".zst"])
def test_bz2_and_zstd_shards_are_decompressed(tmp_path, suffix):
    import bz2

    import zstandard

    data = "第一行\nsecond\n".encode()
    compressed = bz2.compress(data) if suffix == ".bz2" else zstandard.ZstdCompressor().compress(data)
    path = tmp_path / f"a.txt{suffix}"
    path.write_bytes(compressed)
    with open_shard(str(path))[0] as stream:
        assert list(iter(stream.readline, b"")) == ["第一行\n".encode(), b"second\n"]


def test_truncated_gzip_raises_instead_of_ending_quietly(tmp_path):
    data = gzip.compress("".join(f"line {i}\n" for i in range(5000)).encode())
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError), open_shard(str(path))[0] as stream:
        stream.read()


def test_directories_are_not_shards(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("x\n")
    assert [s.name for s in match_shards([str(tmp_path / "*")])] == ["a.txt"]
    with pytest.raises(JobConfigError, match="is a directory"):
        match_shards([str(tmp_path)])


def test_a_file_name_that_is_not_utf8_is_a_config_error_showing_the_byte_escaped(tmp_path):
    """Shard names become document ids and manifest entries, which are UTF-8 text."""
    (tmp_path / "good.txt").write_text("x\n")
    for name in (b"bad\xffname.txt", b"caf\xe9.txt"):
        with open(os.fsencode(tmp_path) + b"/" + name, "wb") as f:  # Python lists it as a surrogate escape
            f.write(b"x\n")
    message = f"input file {tmp_path}/bad\\xffname.txt: its name is not valid UTF-8 (and 1 more such file)"
    with pytest.raises(JobConfigError, match=re.escape(message)):
        match_shards([str(tmp_path / "*.txt")])


def test_a_directory_name_that_is_not_utf8_is_fine_when_no_shard_name_holds_it(tmp_path):
    directory = os.fsencode(tmp_path) + b"/caf\xe9"
    os.mkdir(directory)
    with open(directory + b"/a.txt", "wb") as f:
        f.write(b"x\n")
    assert [s.name for s in match_shards([str(tmp_path / "*" / "a.txt")])] == ["a.txt"]
