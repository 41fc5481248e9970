"""What a run's vectors are (resolved encoder settings, fingerprint, file metadata), built once per process.

Every stage that writes or compares vectors (embed, keys, commit) and `search` asks `identity_of` for
it: the launcher resolves a local model before the job starts, and a worker that holds a remote model's
spec resolves it on first use, once per process. The settings' roles (`encoders.declare`) alone decide
what goes into the fingerprint, the files' metadata and the manifest.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import encoders
from encoders import EncoderConfigError, EncoderSpec, model_fingerprint, resolved_once
from encoders.declare import RECORDED, RECORDS, VECTORS, metadata_text, values
from pipeline.formats.output import TEXT_COLUMN, embeddings_schema
from pipeline.settings import JobSettings


@dataclass(frozen=True)
class RunIdentity:
    """A run's resolved encoder settings and what follows from them alone. Frozen, hashable, picklable."""

    spec: EncoderSpec  # resolved: dim and the model's own defaults filled in
    fingerprint: str  # `encoders.fingerprint`: model, vector settings, version
    metadata: tuple[tuple[str, str], ...]  # every file's key-value metadata: vector settings, version, fingerprint

    @property
    def dim(self) -> int:
        return self.spec.dim

    def schema(self, kept: Sequence[pa.Field] = (), precision_used: str | None = None) -> pa.Schema:
        """The schema of this run's embeddings files.

        kept: the extra columns (`pipeline.formats.kept_policy.KeptColumns.output_fields`), recorded in the metadata as
        the settings `keep_fields` and `keep_text` are in the manifest. precision_used is the compute type
        the encoder ran in (what `--precision auto` chose on this worker), kept beside the declared
        `precision`; files of rows reused by --snapshot, made by an earlier run, leave it out.
        """
        names = [field.name for field in kept]
        metadata = dict(self.metadata)
        metadata["keep_fields"] = metadata_text([name for name in names if name != TEXT_COLUMN])
        metadata["keep_text"] = metadata_text(TEXT_COLUMN in names)
        if precision_used is not None:
            metadata["precision_used"] = precision_used
        precision = self.spec.output_precision
        value = pa.from_numpy_dtype(encoders.value_type(precision))
        stored = pa.list_(value, encoders.stored_width(self.dim, precision))
        return embeddings_schema(self.dim, metadata, kept, stored)

    def stored(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors as this run stores them (--output_precision, with the recorded --quantize_ranges)."""
        return encoders.quantize(vectors, self.spec.output_precision, self._ranges)

    @functools.cached_property
    def _ranges(self) -> np.ndarray | None:
        """int8/uint8 ranges parsed once per process, not once per group embedded."""
        ranges = self.spec.quantize_ranges_values
        return None if ranges is None else np.array(json.loads(ranges), dtype=np.float32)

    def recorded(self, job: JobSettings) -> dict[str, object]:
        """The manifest's `settings`: every recorded setting as a JSON value, the version and the fingerprint."""
        roles = (VECTORS, RECORDS, RECORDED)
        return {**values(self.spec, roles), **values(job, roles), "version": encoders.__version__,
                "model_fingerprint": self.fingerprint}


@functools.lru_cache(maxsize=8)
def identity_of(spec: EncoderSpec) -> RunIdentity:
    """The identity of a run with these encoder settings; resolves them (reading the model's config) at most once
    per process. The only place in pipeline/ that resolves a spec or fingerprints a model."""
    resolved = resolved_once(spec)
    fingerprint = model_fingerprint(resolved, encoders.__version__)
    metadata = {name: metadata_text(value) for name, value in values(resolved, [VECTORS]).items()}
    if resolved.output_precision in encoders.RANGED and resolved.quantize_ranges_values is None:
        raise EncoderConfigError(
            f"--output_precision {resolved.output_precision} needs each dimension's range, and this launch found "
            "none (a model the launcher does not load cannot calibrate them): give --quantize_ranges FILE "
            "(`python -m pipeline.ranges` makes one from a float run)")
    metadata |= {"version": encoders.__version__, "model_fingerprint": fingerprint}
    return RunIdentity(resolved, fingerprint, tuple(metadata.items()))
