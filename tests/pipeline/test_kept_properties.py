"""Property tests: whatever a JSON line's kept value, it is stored exactly or its record is a dead letter.

Never an exception (at reading, fitting or building the Arrow column) and never a changed value.
"""

import json
import math

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.formats.kept_policy import KeptColumns
from pipeline.formats.records import DeadLetter, InputFormat, Record, parse_line

JSONL = InputFormat("jsonl", id_field="id", keep_fields=("k",))
COLUMNS = [pa.string(), pa.int64(), pa.float64(), pa.bool_(), pa.int32(), pa.float32()]
_TEXT = st.text(st.characters(exclude_categories=()), max_size=8)  # lone surrogates included
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(10**400), 10**400),
                     st.floats(allow_nan=True, allow_infinity=True), _TEXT)
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(_TEXT, inner, max_size=3)), max_leaves=6)


def _same(stored: object, value: object, column: pa.DataType) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return isinstance(stored, float) and math.isnan(stored)
    if column == pa.float32() and isinstance(value, float):
        return stored == float(np.float32(value)) and math.isfinite(stored) == math.isfinite(value)
    return stored == value and isinstance(stored, bool) == isinstance(value, bool)


@settings(max_examples=400, deadline=None)
@given(value=_VALUES, column=st.sampled_from(COLUMNS))
def test_a_kept_value_is_stored_exactly_or_its_record_is_a_dead_letter(value, column):
    line = json.dumps({"id": "r", "text": "t", "k": value})  # ASCII: a lone surrogate as its \\u escape
    outcome = parse_line(line.encode(), "s.jsonl", 1, JSONL)
    if isinstance(outcome, DeadLetter):
        assert outcome.reason == "undecodable" and "'k'" in outcome.detail
        return
    assert isinstance(outcome, Record)
    kept = KeptColumns((pa.field("k", column),))
    row, misfit = kept.fit(outcome.kept)
    if misfit is not None:
        assert "'k'" in misfit
        return
    (stored,) = kept.arrays([row], None)[0].to_pylist()
    (read,) = outcome.kept
    if column == pa.string() and not isinstance(read, str) and read is not None:
        return  # a number or boolean in a column of mixed kinds: its JSON text
    assert _same(stored, read, column), (stored, read)
