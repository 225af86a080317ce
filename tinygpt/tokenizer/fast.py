"""The fast path: numba versions of the BPE trainer and of the encoder's merge loop.

They compute exactly what ``bpe.py`` computes (tests compare them on random texts); only the
bookkeeping differs.

Trainer. The readable trainer recounts every pair of every word for each merge. Here:
- the unique chunks ("words") are stored once, flat, with their counts;
- pair counts live in a hash table and are updated incrementally: merging (a, b) only
  touches the words that contain (a, b), found through a per-pair list of words;
- the most frequent pair comes from a max-heap with lazy updates. A pair's count only ever
  goes down, except for pairs holding the new token, which are born in that merge and
  pushed then. So a popped entry whose stored count is stale is pushed back with its true
  count, and the first entry whose count is current is the true maximum.
The heap orders pairs by (count desc, left asc, right asc): the tie-break of ``bpe.py``.

Every array is sized up front from N, the total bytes of the unique chunks: each merge
occurrence shortens a word by one, so there are at most N of them over the whole training,
and each creates at most two new adjacent pairs. Hence at most 3N pairs, list entries and
heap entries.

Encoder. Same rule as ``bpe.encode_chunk`` (merge the lowest-ranked adjacent pair, leftmost
on ties), with token ids instead of bytes: a table maps a pair of ids (x, y) to the rank of
the token whose bytes are bytes(x) + bytes(y). Chunks are encoded in batches.

Everything here runs on host (NumPy) memory: tokenization is CPU work on every backend.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, objmode

EMPTY = -1
NO_RANK = np.iinfo(np.int32).max

# ---------------------------------------------------------------------------------------------
# A hash table from a pair of ids to an int32 value (open addressing, linear probing)
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _pair_key(left, right):
    return (np.int64(left) << 32) | np.int64(right)


@njit(cache=True, inline="always")
def _slot(keys, key):
    """Slot holding ``key``, or the empty slot where it would go."""
    mask = keys.size - 1
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads the bits
    i = np.int64(h >> np.uint64(33)) & mask
    while keys[i] != EMPTY and keys[i] != key:
        i = (i + 1) & mask
    return i


@njit(cache=True)
def _build_table(lefts, rights, values):
    """Hash table (keys, values) for the pairs (lefts[i], rights[i]) -> values[i]."""
    size = 1
    while size < 2 * lefts.size + 2:
        size *= 2
    keys = np.full(size, EMPTY, dtype=np.int64)
    vals = np.zeros(size, dtype=np.int32)
    for i in range(lefts.size):
        key = _pair_key(lefts[i], rights[i])
        s = _slot(keys, key)
        keys[s] = key
        vals[s] = values[i]
    return keys, vals


@njit(cache=True, inline="always")
def _lookup(keys, vals, left, right):
    s = _slot(keys, _pair_key(left, right))
    return vals[s] if keys[s] != EMPTY else NO_RANK


# ---------------------------------------------------------------------------------------------
# Encoder: the merge loop over a batch of chunks
# ---------------------------------------------------------------------------------------------


def build_merge_table(ranks: dict[bytes, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pair table for encoding: (id(left), id(right)) -> rank of left + right, for every
    way of cutting every token into two tokens."""
    lefts, rights, merged = [], [], []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = ranks.get(token[:cut]), ranks.get(token[cut:])
            if left is not None and right is not None:
                lefts.append(left)
                rights.append(right)
                merged.append(rank)
    return _build_table(
        np.array(lefts, dtype=np.int32),
        np.array(rights, dtype=np.int32),
        np.array(merged, dtype=np.int32),
    )


@njit(cache=True)
def encode_chunks(data, offsets, byte_ids, keys, vals):
    """BPE-encode the chunks data[offsets[i]:offsets[i+1]] (UTF-8 bytes).

    Returns (ids, ends): chunk i's token ids are ids[ends[i-1]:ends[i]].
    """
    ids = np.empty(data.size, dtype=np.int32)
    ends = np.empty(offsets.size - 1, dtype=np.int64)
    parts = np.empty(data.size + 1, dtype=np.int32)  # token ids of the chunk being merged
    pair_ranks = np.empty(data.size + 1, dtype=np.int32)  # rank of merging parts[i], parts[i+1]
    n_out = 0
    for c in range(offsets.size - 1):
        start, n = offsets[c], offsets[c + 1] - offsets[c]
        for i in range(n):
            parts[i] = byte_ids[data[start + i]]
        for i in range(n - 1):
            pair_ranks[i] = _lookup(keys, vals, parts[i], parts[i + 1])
        while n > 1:
            best = 0
            for i in range(1, n - 1):
                if pair_ranks[i] < pair_ranks[best]:
                    best = i
            rank = pair_ranks[best]
            if rank == NO_RANK:
                break
            # parts[best], parts[best + 1] -> one token; close the gap
            parts[best] = rank
            for i in range(best + 1, n - 1):
                parts[i] = parts[i + 1]
                pair_ranks[i] = pair_ranks[i + 1]
            n -= 1
            if best > 0:
                pair_ranks[best - 1] = _lookup(keys, vals, parts[best - 1], parts[best])
            if best < n - 1:
                pair_ranks[best] = _lookup(keys, vals, parts[best], parts[best + 1])
        for i in range(n):
            ids[n_out + i] = parts[i]
        n_out += n
        ends[c] = n_out
    return ids[:n_out], ends


# ---------------------------------------------------------------------------------------------
# Trainer: incremental pair counts + lazy max-heap
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _before(count_a, pair_a, count_b, pair_b, pair_left, pair_right):
    """Heap order: does (count_a, pair_a) come before (count_b, pair_b)?"""
    if count_a != count_b:
        return count_a > count_b
    if pair_left[pair_a] != pair_left[pair_b]:
        return pair_left[pair_a] < pair_left[pair_b]
    return pair_right[pair_a] < pair_right[pair_b]


@njit(cache=True)
def _heap_push(heap_count, heap_pair, size, count, pair, pair_left, pair_right):
    i = size
    while i > 0:
        parent = (i - 1) // 2
        if not _before(count, pair, heap_count[parent], heap_pair[parent], pair_left, pair_right):
            break
        heap_count[i], heap_pair[i] = heap_count[parent], heap_pair[parent]
        i = parent
    heap_count[i], heap_pair[i] = count, pair
    return size + 1


@njit(cache=True)
def _heap_pop(heap_count, heap_pair, size, pair_left, pair_right):
    """Remove the top entry (read it before calling); returns the new size."""
    size -= 1
    count, pair = heap_count[size], heap_pair[size]  # the last entry sinks down from the root
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(
            heap_count[child + 1],
            heap_pair[child + 1],
            heap_count[child],
            heap_pair[child],
            pair_left,
            pair_right,
        ):
            child += 1
        if not _before(heap_count[child], heap_pair[child], count, pair, pair_left, pair_right):
            break
        heap_count[i], heap_pair[i] = heap_count[child], heap_pair[child]
        i = child
    heap_count[i], heap_pair[i] = count, pair
    return size


# numba cannot take a Python function as an argument, so the trainer reports progress by
# calling this hook from an object-mode block; ``train_merges`` sets it around the call.
_progress_hook: list[Callable[[int], None] | None] = [None]


def _report_progress(done: int) -> None:
    hook = _progress_hook[0]
    if hook is not None:
        hook(done)


@njit(cache=True)
def _train(tokens, starts, weights, num_merges, report_every):
    """Learn up to ``num_merges`` merges over the words tokens[starts[w]:starts[w+1]].

    ``tokens`` is modified in place. Returns an array of (left, right) rows, one per merge.
    """
    n_words = weights.size
    lengths = starts[1:] - starts[:-1]
    capacity = 3 * tokens.size + 16  # the bound from the module docstring

    # pairs: ids, weighted count, head of the list of words that (may) contain the pair
    table_size = 1
    while table_size < 2 * capacity:
        table_size *= 2
    keys = np.full(table_size, EMPTY, dtype=np.int64)
    pair_index = np.zeros(keys.size, dtype=np.int32)
    pair_left = np.empty(capacity, dtype=np.int32)
    pair_right = np.empty(capacity, dtype=np.int32)
    pair_count = np.zeros(capacity, dtype=np.int64)
    pair_head = np.full(capacity, EMPTY, dtype=np.int64)
    pair_last_word = np.full(capacity, EMPTY, dtype=np.int64)  # skips repeat list entries
    n_pairs = 0
    # the lists of words, as linked lists in one pool
    occ_word = np.empty(capacity, dtype=np.int64)
    occ_next = np.empty(capacity, dtype=np.int64)
    n_occ = 0
    heap_count = np.empty(capacity, dtype=np.int64)
    heap_pair = np.empty(capacity, dtype=np.int32)
    heap_size = 0
    visited = np.full(n_words, EMPTY, dtype=np.int64)  # merge step that last visited a word
    born = np.empty(capacity, dtype=np.int32)  # pairs created during the current merge
    merges = np.empty((num_merges, 2), dtype=np.int32)

    # count every adjacent pair once
    for w in range(n_words):
        s = starts[w]
        for i in range(lengths[w] - 1):
            key = _pair_key(tokens[s + i], tokens[s + i + 1])
            slot = _slot(keys, key)
            if keys[slot] == EMPTY:
                keys[slot] = key
                pair_index[slot] = n_pairs
                pair_left[n_pairs], pair_right[n_pairs] = tokens[s + i], tokens[s + i + 1]
                n_pairs += 1
            p = pair_index[slot]
            pair_count[p] += weights[w]
            if pair_last_word[p] != w:
                pair_last_word[p] = w
                occ_word[n_occ], occ_next[n_occ] = w, pair_head[p]
                pair_head[p] = n_occ
                n_occ += 1
    for p in range(n_pairs):
        heap_size = _heap_push(
            heap_count, heap_pair, heap_size, pair_count[p], p, pair_left, pair_right
        )

    for step in range(num_merges):
        # the most frequent pair: pop until an entry's count is current
        best = EMPTY
        while heap_size > 0:
            count, p = heap_count[0], heap_pair[0]
            heap_size = _heap_pop(heap_count, heap_pair, heap_size, pair_left, pair_right)
            if count == pair_count[p]:
                best = p
                break
            if pair_count[p] > 0:
                heap_size = _heap_push(
                    heap_count, heap_pair, heap_size, pair_count[p], p, pair_left, pair_right
                )
        if best == EMPTY or pair_count[best] <= 0:
            return merges[:step]
        a, b = pair_left[best], pair_right[best]
        new_id = 256 + step
        merges[step, 0], merges[step, 1] = a, b
        n_born = 0

        node = pair_head[best]
        while node != EMPTY:
            w = occ_word[node]
            node = occ_next[node]
            if visited[w] == step:
                continue
            visited[w] = step
            s, n, weight = starts[w], lengths[w], weights[w]
            found = False
            for i in range(n - 1):
                if tokens[s + i] == a and tokens[s + i + 1] == b:
                    found = True
                    break
            if not found:  # a stale list entry: an earlier merge removed the pair here
                continue
            # take the word's pairs out of the counts, merge, put the new pairs in
            for i in range(n - 1):
                slot = _slot(keys, _pair_key(tokens[s + i], tokens[s + i + 1]))
                pair_count[pair_index[slot]] -= weight
            j = 0
            i = 0
            while i < n:
                if i + 1 < n and tokens[s + i] == a and tokens[s + i + 1] == b:
                    tokens[s + j] = new_id
                    i += 2
                else:
                    tokens[s + j] = tokens[s + i]
                    i += 1
                j += 1
            lengths[w] = j
            for i in range(j - 1):
                left, right = tokens[s + i], tokens[s + i + 1]
                key = _pair_key(left, right)
                slot = _slot(keys, key)
                if keys[slot] == EMPTY:
                    keys[slot] = key
                    pair_index[slot] = n_pairs
                    pair_left[n_pairs], pair_right[n_pairs] = left, right
                    born[n_born] = n_pairs
                    n_born += 1
                    n_pairs += 1
                p = pair_index[slot]
                pair_count[p] += weight
                if (left == new_id or right == new_id) and pair_last_word[p] != w:
                    pair_last_word[p] = w
                    occ_word[n_occ], occ_next[n_occ] = w, pair_head[p]
                    pair_head[p] = n_occ
                    n_occ += 1
        for k in range(n_born):
            p = born[k]
            if pair_count[p] > 0:
                heap_size = _heap_push(
                    heap_count, heap_pair, heap_size, pair_count[p], p, pair_left, pair_right
                )
        if report_every > 0 and (step + 1) % report_every == 0:
            with objmode():
                _report_progress(step + 1)
    return merges


def train_merges(
    chunk_counts: dict[bytes, int],
    num_merges: int,
    progress: Callable[[int], None] | None = None,
    report_every: int = 64,
) -> list[tuple[int, int]]:
    """Same contract as ``bpe.train_merges``: up to ``num_merges`` merges, id 256 + i each.

    ``progress(done)`` is called every ``report_every`` merges, and once at the end, with the
    number of merges done so far.
    """
    chunks = [chunk for chunk in chunk_counts if len(chunk) > 1]  # one byte: no pair to count
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    starts = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    tokens = np.frombuffer(b"".join(chunks), dtype=np.uint8).astype(np.int32)
    weights = np.fromiter((chunk_counts[c] for c in chunks), dtype=np.int64, count=len(chunks))
    if progress is None:
        merges = _train(tokens, starts, weights, num_merges, 0)
    else:
        _progress_hook[0] = progress
        try:
            merges = _train(tokens, starts, weights, num_merges, report_every)
        finally:
            _progress_hook[0] = None
        progress(len(merges))
    return [(int(a), int(b)) for a, b in merges]
