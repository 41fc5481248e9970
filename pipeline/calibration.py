"""Where an int8/uint8 run's per-dimension ranges come from when no --quantize_ranges file gives them.

Ranges stick: a rerun into a finished output keeps that run's ranges, and a run with --skip_existing keeps
those of the earlier outputs whose vector settings match, so reused and new rows are quantized alike and
stay comparable. Only when neither holds any does the launcher embed a sample of the input (the first
records of up to 16 shards spread over it, `--calibration_size` in all) and take each dimension's minimum
and maximum, as sentence-transformers' `quantize_embeddings` does with its calibration embeddings. The
launcher does it once, before the job starts, so every worker quantizes with the same ranges.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pyarrow.parquet as pq

import encoders
from encoders import EncoderSpec
from encoders.declare import VECTORS, metadata_text, values
from encoders.quantize import RANGES_SETTING as RANGES
from encoders.quantize import parse_ranges
from pipeline.errors import JobConfigError
from pipeline.formats import storage
from pipeline.formats.manifest import Manifest
from pipeline.formats.output import SUCCESS_FILE
from pipeline.formats.readers import shard_outcomes
from pipeline.formats.records import Record
from pipeline.formats.shards import Shard
from pipeline.settings import JobSettings

logger = logging.getLogger(__name__)

SAMPLED_SHARDS = 16  # shards the calibration sample is spread over: the start of one shard may not be typical
_NOT_COMPARED = ("quantize_ranges", RANGES)  # where the ranges came from, and the ranges themselves


def with_ranges(spec: EncoderSpec, job: JobSettings) -> EncoderSpec:
    """The spec with `quantize_ranges_values` filled when int8/uint8 needs them and no file gave them.

    spec: resolved on the launcher (its model loaded here only to calibrate). Raises JobConfigError when the
    ranges cannot be found or made here.
    """
    if spec.output_precision not in encoders.RANGED or spec.quantize_ranges_values is not None:
        return spec
    if not spec.resolved:
        raise JobConfigError(
            f"--output_precision {spec.output_precision} without --quantize_ranges needs the launcher to embed a "
            "sample, and it does not load a remote model for a distributed runner: give --quantize_ranges FILE "
            "(`python -m pipeline.ranges` makes one from a float run)")
    found, where = _earlier_ranges(spec, job)
    if found is None:
        from pipeline.preflight import list_shards

        texts = calibration_texts(list_shards(job), job, spec.calibration_size)
        if not texts:
            raise JobConfigError(f"--output_precision {spec.output_precision}: the input holds no text to calibrate "
                                 "each dimension's range on; give --quantize_ranges FILE")
        found, where = ranges_of(embed_sample(spec, texts)), f"{len(texts)} records of the input embedded at launch"
    parse_ranges(found.encode(), where, spec.dim)  # the checks a ranges file gets
    logger.info("%s ranges of %d dimensions from %s", spec.output_precision, spec.dim, where)
    return dataclasses.replace(spec, quantize_ranges_values=found)


def calibration_texts(shards: Sequence[Shard], job: JobSettings, size: int) -> list[str]:
    """Up to size texts: an equal share from the start of each of up to SAMPLED_SHARDS shards spread over the
    listing, then more from the following shards if those run short. Deterministic, so a rerun finds the same."""
    if not shards:
        return []
    step = max(1, len(shards) // SAMPLED_SHARDS)
    chosen = list(shards[::step][:SAMPLED_SHARDS])
    share = -(-size // len(chosen))
    texts: list[str] = []
    taken: dict[str, int] = {}
    for shard in chosen:
        found = list(_texts(shard, job, min(share, size - len(texts))))
        texts += found
        taken[shard.path] = len(found)
    for shard in shards:  # the chosen shards ran short: more from each in turn, after what was taken
        if len(texts) >= size:
            break
        texts += _texts(shard, job, size - len(texts), skip=taken.get(shard.path, 0))
    return texts


def embed_sample(spec: EncoderSpec, texts: Sequence[str]) -> np.ndarray:
    """The float32 vectors this run makes of texts (its prompt, truncation and normalisation): the encoder
    never quantizes, the stages do."""
    from encoders import build_encoder

    return build_encoder(spec, warm_up=False).encode(texts).vectors


def ranges_of(vectors: np.ndarray) -> str:
    """Each dimension's minimum and maximum, as the JSON the setting holds."""
    return json.dumps(np.stack([vectors.min(axis=0), vectors.max(axis=0)]).tolist())


def _texts(shard: Shard, job: JobSettings, count: int, skip: int = 0) -> Iterator[str]:
    """The shard's first count texts after its first skip ones (blank and bad records are not texts)."""
    if count <= 0:
        return
    fmt = dataclasses.replace(job.input_format(), format=shard.format)
    for outcome, _ in shard_outcomes(shard, fmt):
        if isinstance(outcome, Record) and outcome.text:
            if skip:
                skip -= 1
                continue
            yield outcome.text
            count -= 1
            if not count:
                return


def _earlier_ranges(spec: EncoderSpec, job: JobSettings) -> tuple[str | None, str]:
    """Ranges of the finished run this one replaces (unless --overwrite), else of the first --skip_existing file;
    either only when its other vector settings are this run's."""
    wanted = {k: metadata_text(v) for k, v in values(spec, [VECTORS]).items() if k not in _NOT_COMPARED}
    if not job.overwrite:
        path = storage.join(job.output, SUCCESS_FILE)
        try:
            recorded = {k: metadata_text(v) for k, v in Manifest.read(path).settings.items()}
        except (OSError, ValueError):  # none, or unreadable: the preflight check says which
            recorded = {}
        if _same_vectors(recorded, wanted):
            return recorded[RANGES], f"the finished run in {job.output}"
    if job.skip_existing:
        try:
            earlier = sorted(storage.match(job.skip_existing))[:1]
        except OSError:  # cannot be listed from here: the keys stage lists it on the workers and says why
            earlier = []
        for file in earlier:
            try:
                with storage.open_file(file) as f:
                    metadata = pq.read_schema(f).metadata or {}
            except (OSError, ValueError):
                continue  # the keys stage names files it cannot read
            recorded = {k.decode(): v.decode() for k, v in metadata.items()}
            if _same_vectors(recorded, wanted):
                return recorded[RANGES], f"{file} (--skip_existing)"
    return None, ""


def _same_vectors(recorded: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return recorded.get(RANGES) not in (None, "null") and all(recorded.get(k) == v for k, v in wanted.items())
