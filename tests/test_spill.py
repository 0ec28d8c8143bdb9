"""Spill: a column that moves to a temporary file once long comes back whole and in order."""

import gc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.spill import Spill


def test_a_short_column_stays_in_memory_and_a_long_one_moves_to_disk():
    short, long = Spill(np.float64), Spill(np.float64, spill_bytes=16)
    for x in ([1.0], [2.0, 3.0]):
        short.add(x)
        long.add(x)
    assert not short.spilled and long.spilled
    assert len(short) == len(long) == 3
    assert short.array().tolist() == long.array().tolist() == [1.0, 2.0, 3.0]
    assert not isinstance(long.array(), np.memmap)  # a plain array over the map


def test_writing_into_the_returned_array_never_changes_the_column():
    s = Spill(np.int32, spill_bytes=0)
    s.add([1, 2, 3])
    a = s.array()
    a[0] = 99
    s.add([4])
    assert s.array().tolist() == [1, 2, 3, 4]


def test_an_empty_column_is_an_empty_typed_array_and_objects_are_refused():
    assert Spill(np.int32).array().dtype == np.int32 and len(Spill(np.int32, 0).array()) == 0
    with pytest.raises(TypeError):
        Spill(object)


@given(st.lists(st.lists(st.integers(-2**31, 2**31 - 1), max_size=6), max_size=8),
       st.integers(0, 40))
def test_any_chunking_and_threshold_give_the_concatenation(chunks, spill_bytes):
    s = Spill(np.int32, spill_bytes)
    seen = []
    for c in chunks:
        s.add(c)
        seen += c
        assert len(s) == len(seen)
        assert s.array().tolist() == seen  # reading midway changes nothing


def test_the_column_spills_once_its_bytes_pass_the_threshold_not_at_it():
    s = Spill(np.float64, spill_bytes=16)
    s.add([1.0, 2.0])  # 16 bytes: at the threshold, still in memory
    assert not s.spilled
    s.add([3.0])
    assert s.spilled and s.array().tolist() == [1.0, 2.0, 3.0]


def test_one_byte_values_are_counted_one_each_before_and_after_a_spill():
    # the length counts bytes held / item size: with 1-byte items a byte too many is a value
    held, spilled = Spill(np.int8), Spill(np.int8, spill_bytes=0)
    for s in (held, spilled):
        s.add([1, 2, 3])
        assert len(s) == 3
    assert spilled.spilled and not held.spilled
    spilled.add([4])
    assert len(spilled) == 4 and spilled.array().tolist() == [1, 2, 3, 4]


def test_the_file_closes_with_the_column():
    s = Spill(np.int32, spill_bytes=0)
    s.add([1])
    f = s._file
    assert f is not None and not f.closed
    del s
    gc.collect()
    assert f.closed
