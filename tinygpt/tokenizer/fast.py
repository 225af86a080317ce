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
the token whose bytes are bytes(x) + bytes(y). Chunks are encoded in batches. Short chunks
find each merge by a scan; long ones (LONG_CHUNK) with a heap, O(n log n) instead of O(n^2).

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


# A chunk longer than this is merged with a heap instead of by scanning: the scan finds
# each merge in O(n), O(n^2) a chunk, which a long run with no split point (a line of
# "=====", a long number) turns into seconds (100K "=" took 6.8 s, tiktoken 0.02 s); the heap
# takes O(n log n). Per chunk of GPT-2 ranks, scan vs heap: 24 bytes 0.7-0.9 vs 1.0-1.3 us,
# 48 bytes about even, 96 bytes 5.4-8.0 vs 3.5-5.3 us, 1000 bytes 393-569 vs 31-61 us.
# Almost every chunk of real text is short and stays on the scan.
LONG_CHUNK = 64


@njit(cache=True, inline="always")
def _sift_up(heap, i):
    while i > 0:
        up = (i - 1) // 2
        if heap[up] <= heap[i]:
            break
        heap[up], heap[i] = heap[i], heap[up]
        i = up


@njit(cache=True, inline="always")
def _sift_down(heap, size):
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and heap[child + 1] < heap[child]:
            child += 1
        if heap[i] <= heap[child]:
            break
        heap[i], heap[child] = heap[child], heap[i]
        i = child


@njit(cache=True)
def _merge_heap(parts, n, keys, vals):
    """The merges of encode_chunks' scan, found with a min-heap: parts[:n] become a linked
    list (a part is named by the position of its first byte, so position order is text
    order), and the heap holds (rank, position) of every adjacent pair as rank << 32 |
    position: lowest rank first, leftmost on ties, as the scan picks. A merge changes the
    pairs on both sides of the new part; they are pushed anew, and an old entry is
    recognised when popped because its pair's rank is no longer its own. Returns the new
    length."""
    nxt = np.arange(1, n + 1)  # n: no next part
    prv = np.arange(-1, n - 1)
    heap = np.empty(3 * n, dtype=np.int64)  # n - 1 pairs, then at most 2 more a merge
    size = 0
    for i in range(n - 1):
        rank = _lookup(keys, vals, parts[i], parts[i + 1])
        if rank != NO_RANK:
            heap[size] = (np.int64(rank) << 32) | i
            _sift_up(heap, size)
            size += 1
    length = n
    while size > 0:
        top = heap[0]
        size -= 1
        heap[0] = heap[size]
        _sift_down(heap, size)
        rank, i = np.int32(top >> 32), top & 0xFFFFFFFF
        j = nxt[i]
        if prv[i] == -2 or j >= n or _lookup(keys, vals, parts[i], parts[j]) != rank:
            continue  # a part merged away, or a pair that has changed since it was pushed
        parts[i] = rank  # part i absorbs part j
        nxt[i] = nxt[j]
        if nxt[j] < n:
            prv[nxt[j]] = i
        prv[j] = -2  # gone
        length -= 1
        for left in (prv[i], i):  # the new pairs: (before, i) and (i, after)
            if left >= 0 and nxt[left] < n:
                r = _lookup(keys, vals, parts[left], parts[nxt[left]])
                if r != NO_RANK:
                    heap[size] = (np.int64(r) << 32) | left
                    _sift_up(heap, size)
                    size += 1
    k, i = 0, 0
    while i < n:  # the surviving parts, in order, to the front
        parts[k] = parts[i]
        k += 1
        i = nxt[i]
    return length


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
        if n > LONG_CHUNK:
            n = _merge_heap(parts, n, keys, vals)
        else:  # the scan, written out here: as a function call it cost 10-25% of encoding
            # Shakespeare (a call per chunk)
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
