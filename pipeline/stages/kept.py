"""The stage deciding the kept columns' types (`pipeline.formats.kept_policy`) once for the whole run, on a worker.

The launcher makes the same decision for local runs as a check (`pipeline.preflight`), before anything starts.
"""

from __future__ import annotations

import apache_beam as beam

from pipeline.formats.kept_policy import KeptColumns, decide_columns, merge_observed, observe_shard
from pipeline.formats.records import InputFormat


class DecideKeptColumns(beam.PTransform):
    """(index, Shard) -> the run's one `KeptColumns` (for a singleton side input).

    With --keep_fields, from every shard's start (or header, or schema); otherwise fixed.
    """

    def __init__(self, input_format: InputFormat, keep_text: bool) -> None:
        super().__init__()
        self._input_format = input_format
        self._keep_text = keep_text

    def expand(self, shards: beam.PCollection) -> beam.PCollection:
        fmt, names, text = self._input_format, self._input_format.keep_fields, self._keep_text
        if not names:
            return shards.pipeline | "NoFieldsKept" >> beam.Create([KeptColumns(text=text)])
        return (
            shards
            | "ObserveKeptTypes" >> beam.MapTuple(lambda _, shard: observe_shard(shard, fmt))
            | "MergeKeptTypes" >> beam.CombineGlobally(merge_observed)
            | "DecideKeptTypes" >> beam.Map(lambda observed: decide_columns(names, observed, text))
        )
