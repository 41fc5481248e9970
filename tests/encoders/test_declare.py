"""Reading settings back from Parquet metadata text: the inverse of how `encoders.declare` writes them."""

import os
from dataclasses import dataclass

from encoders import EncoderSpec
from encoders.declare import (
    MODEL_PATH,
    PATH,
    RUN,
    VECTORS,
    absolute_path,
    escaped,
    from_mapping,
    from_metadata,
    metadata_text,
    setting,
    values,
)


@dataclass(frozen=True)
class _Settings:
    name: str | None = setting(None, "a name", VECTORS)
    label: str = setting("x", "a label", VECTORS)
    size: int | None = setting(None, "a size", VECTORS)
    flag: bool = setting(False, "a switch", VECTORS)
    tags: tuple[str, ...] = setting((), "tags", VECTORS)
    where: str | None = setting(None, "not recorded", RUN)


def _written(instance) -> dict[str, str]:
    return {name: metadata_text(value) for name, value in values(instance, [VECTORS]).items()}


def test_every_kind_of_setting_reads_back_as_it_was_written():
    for instance in (_Settings(), _Settings("null-ish", "null", 3, True, ("a", "b"))):
        read = from_metadata(_Settings, _written(instance), [VECTORS])
        assert from_mapping(_Settings, read) == instance


def test_a_setting_missing_from_older_metadata_keeps_its_default():
    assert from_metadata(_Settings, {"size": "7", "version": "0.1.0"}, [VECTORS]) == {"size": 7}


def test_settings_of_other_roles_are_not_read():
    assert from_metadata(_Settings, {"where": "here"}, [VECTORS]) == {}


def test_an_encoder_spec_round_trips_through_metadata_text():
    spec = EncoderSpec(model="some/dir", pooling="cls", normalize=True, max_seq_length=32, long_text="chunk",
                       chunk_overlap=4, dim=64)
    assert from_mapping(EncoderSpec, from_metadata(EncoderSpec, _written(spec), [VECTORS])) == spec


def test_a_local_path_is_made_absolute_from_the_launchers_directory():
    assert absolute_path("in/*.txt", PATH, "/launch") == "/launch/in/*.txt"
    assert absolute_path("./in/../data/a.txt", PATH, "/launch") == "/launch/data/a.txt"
    assert absolute_path("/abs/x", PATH, "/launch") == "/abs/x"
    assert absolute_path("~/x", PATH, "/launch") == os.path.expanduser("~/x")


def test_only_the_directories_before_a_wildcard_are_normalised():
    assert absolute_path("./a/*/../b.txt", PATH, "/launch") == "/launch/a/*/../b.txt"


def test_paths_with_a_scheme_and_model_names_are_left_as_given(tmp_path):
    for value in ("gs://b/in/*.txt", "memory://x/y", "https://tfhub.dev/m/1"):
        assert absolute_path(value, PATH, "/launch") == value
    assert absolute_path("bert-base-chinese", MODEL_PATH, str(tmp_path)) == "bert-base-chinese"
    (tmp_path / "bert-base-chinese").mkdir()  # a directory of that name wins, as --model reads it
    assert absolute_path("bert-base-chinese", MODEL_PATH, str(tmp_path)) == f"{tmp_path}/bert-base-chinese"


def test_escaped_shows_undecodable_bytes_as_they_are_stored():
    assert escaped(os.fsdecode(b"bad\xffname.txt")) == "bad\\xffname.txt"  # a surrogate escape: the byte
    assert escaped("a\ud800b") == "a\\ud800b"  # a lone surrogate from elsewhere (e.g. JSON "\\ud800")
    assert escaped("café\\x") == "café\\x"  # valid text, backslash included, is unchanged
