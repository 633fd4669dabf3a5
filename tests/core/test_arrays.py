"""knee_tf.core.arrays.RowBlocks: rows of an array made a block at a time as they are read."""

from __future__ import annotations

import numpy as np
import pytest

from knee_tf.core.arrays import RowBlocks


def test_rows_read_in_any_order_are_those_of_the_whole_array_and_blocks_are_made_once_each_read():
    whole = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
    made = []

    def make(a, b):
        made.append((a, b))
        return whole[a:b] * 1  # a copy, as a maker of a block returns

    blocks = RowBlocks(len(whole), 5, make)
    rows = np.array([22, 3, 4, 5, 21, 0])
    np.testing.assert_array_equal(blocks.read(rows, lambda blk, local: blk[local], (2,)), whole[rows])
    assert sorted(made) == [(0, 5), (5, 10), (20, 23)]  # each block once; the last one short
    assert sorted(blocks._kept) == [0, 1, 4]
    made.clear()
    np.testing.assert_array_equal(blocks.read([6, 7], lambda blk, local: blk[local], (2,)), whole[[6, 7]])
    assert made == [] and sorted(blocks._kept) == [1]  # block 1 kept from the last read; the others dropped
    with pytest.raises(ValueError, match="block size must be >= 1"):
        RowBlocks(3, 0, make)
