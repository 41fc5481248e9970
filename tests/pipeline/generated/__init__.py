"""Hypothesis strategies for whole runs of input shards (JSON Lines, CSV/TSV, Parquet), every record labelled.

A record's label is what the README says reading does with it: RECORD (read as a record: embedded unless its
id repeats or a kept value does not fit its column, which `tests.pipeline.documented_outcomes` works out for
the run), SKIP, or the reason of the dead letter it becomes while reading. A record has at most one flaw, so
its label is unambiguous; hostile values that are not flaws (NaN, huge integers, deep nesting, extreme dates,
empty strings, nulls, control characters) go anywhere. `records` holds what every format shares, one module
each the formats' shards, and `runs` puts shards of several formats together.

Bytes that are not UTF-8 are drawn as surrogate escapes ("\\udcff" for b"\\xff") in Python strings and written
with the "surrogateescape" error handler, so a record's bytes and its rendering (`\\xff`) agree by construction.
"""
