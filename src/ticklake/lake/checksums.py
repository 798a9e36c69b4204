"""Row checksums: what the cold tier audit (audit.py) compares the two tiers by.

A row's hash is 64 bits over every column, exactly: decimals by their 128-bit value, integers and
timestamps by their value (microseconds), text by a BLAKE2b digest of its bytes, each folded in with
splitmix64's finalizer. A partition's checksum is the sum of its rows' hashes modulo 2**64: it does not
depend on row order (both tiers are streamed in batches), and it changes with any value of any row, a
row missing, or a row stored twice. A row's key gets two more independent 64-bit hashes (a 128-bit
fingerprint) by which repeated keys are found without comparing the keys themselves.

Rows must be in one Arrow schema on both sides (the cold table's: see arrow_cast.py); a column type
the hash does not know raises TypeError.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ticklake.lake.arrow_cast import contiguous

# Text longer than this on average is hashed value by value; shorter text through a dictionary, which
# hashes each distinct value (an exchange, a symbol) once.
_DICTIONARY_MAX_BYTES = 64

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)
_ROW_SEED = 0x243F6A8885A308D3
_KEY_SEEDS = (0x13198A2E03707344, 0xA4093822299F31D0)


def _mix(state: np.ndarray) -> None:
    """splitmix64's finalizer, in place: a bijection of uint64 whose every output bit depends on every input bit."""
    state ^= state >> _S30
    state *= _M1
    state ^= state >> _S27
    state *= _M2
    state ^= state >> _S31


def _digest_each(values: pa.Array) -> np.ndarray:
    """A 64-bit BLAKE2b digest of each value's bytes."""
    if not len(values):
        return np.zeros(0, dtype=np.uint64)
    large = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64 if large else np.int32,
                            count=values.offset + len(values) + 1)[values.offset:]
    data = values.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    bounds = offsets.tolist()
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(view[start:end], digest_size=8).digest()
                        for start, end in itertools.pairwise(bounds)])
    return np.frombuffer(digests, dtype=np.uint64)


def _text_words(column: pa.Array) -> np.ndarray:
    if len(column) and column.nbytes / len(column) <= _DICTIONARY_MAX_BYTES:
        encoded = pc.dictionary_encode(column)
        digests: np.ndarray = _digest_each(encoded.dictionary)[np.asarray(encoded.indices)]
        return digests
    return _digest_each(column)


def _words(column: pa.Array) -> list[np.ndarray]:
    """The column as uint64 words, one array per word of a value: what the row hash folds in."""
    kind = column.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
    valid = None
    if column.null_count:  # required columns hold no nulls; if one does, it must not hash as a value
        valid = np.asarray(column.is_valid())
        column = column.fill_null("" if text else pa.scalar(0, pa.int64()).cast(kind))
    if text:
        words = [_text_words(column)]
    elif pa.types.is_decimal128(kind):
        pairs = np.frombuffer(column.buffers()[1], dtype=np.uint64,
                              count=2 * (column.offset + len(column))).reshape(-1, 2)[column.offset:]
        words = [pairs[:, 0], pairs[:, 1]]
    elif pa.types.is_integer(kind) or pa.types.is_timestamp(kind):
        words = [np.asarray(column.cast(pa.int64())).view(np.uint64)]
    else:
        raise TypeError(f"the audit cannot hash a {kind} column")
    if valid is not None:
        words.append(valid.astype(np.uint64))
    return words


def _fold(words: Iterable[np.ndarray], seed: int, rows: int) -> np.ndarray:
    state = np.full(rows, seed, dtype=np.uint64)
    for word in words:
        state ^= word
        _mix(state)
    return state


def row_hashes(rows: pa.Table, keys: Sequence[str] = ()) -> tuple[np.ndarray, ...]:
    """A 64-bit hash of every row over all its columns, in order; with ``keys``, also two independent
    64-bit hashes of each row's key (a 128-bit fingerprint: keys are compared by it)."""
    words = {name: _words(contiguous(rows, name)) for name in rows.column_names}
    count = rows.num_rows
    hashes = [_fold((w for name in rows.column_names for w in words[name]), _ROW_SEED, count)]
    if keys:
        hashes += [_fold((w for name in keys for w in words[name]), seed, count) for seed in _KEY_SEEDS]
    return tuple(hashes)



def add_partition_sums(totals: dict[int, list[int]], codes: np.ndarray, hashes: np.ndarray) -> None:
    """Add each partition's row count and hash sum (modulo 2**64) to ``totals``."""
    if not len(codes):
        return
    found, index = np.unique(codes, return_inverse=True)
    sums = np.zeros(len(found), dtype=np.uint64)
    np.add.at(sums, index, hashes)  # uint64: wraps, i.e. modulo 2**64
    counts = np.bincount(index, minlength=len(found))
    for code, count, total in zip(found.tolist(), counts.tolist(), sums.tolist(), strict=True):
        entry = totals.setdefault(code, [0, 0])
        entry[0] += count
        entry[1] = (entry[1] + total) % 2**64


def repeated_keys(codes: np.ndarray, key_a: np.ndarray, key_b: np.ndarray) -> dict[int, int]:
    """Per partition code: rows whose 128-bit key fingerprint an earlier row already has."""
    if len(codes) < 2:
        return {}
    ordered = np.sort(key_a)
    candidates = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(candidates):  # the usual case: one sort of 64-bit values and done
        return {}
    maybe = np.flatnonzero(np.isin(key_a, candidates))
    order = maybe[np.lexsort((key_b[maybe], key_a[maybe]))]
    a, b = key_a[order], key_b[order]
    repeated = order[1:][(a[1:] == a[:-1]) & (b[1:] == b[:-1])]
    found, counts = np.unique(codes[repeated], return_counts=True)
    return dict(zip(found.tolist(), counts.tolist(), strict=True))
