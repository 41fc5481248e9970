"""Reading back a finished output: the files its manifest lists are checked by listing, not one request a file."""

import fsspec
import pytest

import pipeline.formats.storage as storage
from pipeline.formats.manifest import Manifest
from pipeline.inspect.finished import NotAFinishedRun, embeddings_file_sizes, embeddings_files


def manifest_of(names):
    return Manifest.from_json({"counts": {}, "settings": {}, "shards": [],
                               "files": {"embeddings": list(names), "failed": []}})


def write_output(directory, count):
    directory.mkdir(parents=True, exist_ok=True)
    names = [f"embeddings-00000-{i:05d}.parquet" for i in range(count)]
    for name in names:
        (directory / name).write_bytes(b"PAR1")
    return names


def test_checking_many_files_asks_for_none_of_them_on_its_own(tmp_path, monkeypatch):
    names = write_output(tmp_path / "out", 50)

    def no_request_per_file(path):
        raise AssertionError(f"asked for {path} on its own")

    monkeypatch.setattr(storage, "exists", no_request_per_file)
    files = embeddings_files(str(tmp_path / "out"), manifest_of(names))
    assert files == tuple(f"{tmp_path}/out/{name}" for name in names)


def test_sizes_come_from_the_listing_and_a_file_it_misses_is_opened_not_globbed(tmp_path, monkeypatch):
    names = write_output(tmp_path / "out", 20)
    (tmp_path / "out" / names[3]).write_bytes(b"PAR1" * 10)

    def no_glob_per_file(pattern):
        raise AssertionError(f"matched {pattern} on its own")

    monkeypatch.setattr(storage, "match", no_glob_per_file)
    monkeypatch.setattr(storage, "exists", no_glob_per_file)
    sizes = embeddings_file_sizes(str(tmp_path / "out"), manifest_of(names))
    assert list(sizes) == [f"{tmp_path}/out/{name}" for name in names]
    assert sizes == {path: (tmp_path / "out" / path.rsplit("/", 1)[1]).stat().st_size for path in sizes}
    assert sizes[f"{tmp_path}/out/{names[3]}"] == 40
    monkeypatch.undo()
    misread = write_output(tmp_path / "out[1]", 2)  # a glob cannot list it: each file is asked for and opened
    assert embeddings_file_sizes(str(tmp_path / "out[1]"), manifest_of(misread)) == {
        f"{tmp_path}/out[1]/{name}": 4 for name in misread}
    fs = fsspec.filesystem("memory")
    fs.pipe("/sized-output/a.parquet", b"PAR1PAR1")
    assert embeddings_file_sizes("memory://sized-output", manifest_of(["a.parquet"])) == {
        "memory://sized-output/a.parquet": 8}


def test_a_listed_file_that_is_gone_is_named(tmp_path):
    names = write_output(tmp_path / "out", 3)
    (tmp_path / "out" / names[1]).unlink()
    with pytest.raises(NotAFinishedRun, match=f"{names[1]} is listed in _SUCCESS but missing"):
        embeddings_files(str(tmp_path / "out"), manifest_of(names))


def test_an_output_whose_name_a_glob_would_misread_is_still_checked(tmp_path):
    names = write_output(tmp_path / "out[1]", 3)
    assert len(embeddings_files(str(tmp_path / "out[1]"), manifest_of(names))) == 3
    (tmp_path / "out[1]" / names[0]).unlink()
    with pytest.raises(NotAFinishedRun, match="missing"):
        embeddings_files(str(tmp_path / "out[1]"), manifest_of(names))


def test_files_on_an_fsspec_filesystem_are_checked_by_listing_too(monkeypatch):
    fs = fsspec.filesystem("memory")
    names = [f"embeddings-00000-{i:05d}.parquet" for i in range(3)]
    for name in names:
        fs.pipe(f"/listed-output/{name}", b"PAR1")
    monkeypatch.setattr(storage, "exists", lambda path: False)
    assert len(embeddings_files("memory://listed-output", manifest_of(names))) == 3
    fs.rm(f"/listed-output/{names[2]}")
    with pytest.raises(NotAFinishedRun, match=f"{names[2]} is listed"):
        embeddings_files("memory://listed-output", manifest_of(names))
