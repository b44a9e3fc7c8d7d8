r"""Prefix reuse: the prefix-block hashes of a trace, an LRU prefix cache, and ideal hit ratios.

Trace blocks and vLLM blocks
    Mooncake traces carry ``hash_ids``: one id per 512-token block of the prompt, the last block
    partial; equal ids are equal token content *and* equal content before it (the hash chains over
    the prefix), so a prompt's reusable KV is its longest run of leading ids already cached.
    vLLM's automatic prefix caching works on ``block_size`` = 16-token blocks, also hash-chained,
    and caches only full blocks. One full trace block is exactly 32 vLLM blocks with the same
    chain, so a cached trace block is a hit of 512 tokens; a matched partial last block counts its
    tokens rounded down to whole 16-token blocks. vLLM always computes at least the prompt's last
    token (it needs its logits), so a hit is capped at ⌊(input − 1)/16⌋·16 tokens.

The cache
    :class:`PrefixCache` holds trace blocks in LRU order with their token counts. Lookups walk a
    prompt's ids from the first and stop at the first miss; the matched blocks become most
    recently used. A prompt's blocks are inserted last block first, so that its tail is evicted
    before its head — what vLLM's free-block queue does when a request frees its blocks in
    reverse order, and what keeps shared heads (system prompts, conversation history) longest.

    In the simulator (:mod:`planner.sim.engine`) each worker owns one cache bounded by the KV it
    is not using: cached blocks live in free KV and yield to admissions and decode growth (the
    worker trims its cache to ``capacity − in use`` at every scheduler step). A running request
    reserves its whole prompt, hit or not: a block it shares with the cache is counted twice,
    which under-states the cache by the shared heads of running requests (conservative; vLLM
    shares them by reference count). A pp > 1 replica runs pp workers, each with its own cache.

Ideal hit ratio
    :func:`ideal_hit_ratio` replays a stream of prompts through one cache of a given size (or
    unbounded) in arrival order: the token-weighted share of prompt tokens a perfectly
    cache-aware router could skip with that much KV for cached prefixes. It is what
    ``planner demand --prefix-cache`` reports per type and window.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

from planner.errors import InputError

TRACE_BLOCK = 512
"""Tokens per ``hash_ids`` block in the Mooncake traces (the last block of a prompt is partial)."""

VLLM_BLOCK = 16
"""vLLM's default ``--block-size``: prefix caching matches whole blocks of this many tokens."""

SOURCE_SHIFT = 40
"""Ids of the k-th file of a merged trace are ``(k << SOURCE_SHIFT) | id``: equal ids in two files are
unrelated prompts."""


def block_tokens(inp: int, j: int) -> int:
    """Tokens of trace block ``j`` of an ``inp``-token prompt."""
    return max(0, min(TRACE_BLOCK, inp - j * TRACE_BLOCK))


def hit_cap(inp: int) -> int:
    """The most tokens of an ``inp``-token prompt vLLM can take from the cache."""
    return max(0, (inp - 1) // VLLM_BLOCK * VLLM_BLOCK)


class PrefixCache:
    """LRU cache of trace blocks (id → tokens held); ``capacity`` in tokens, None for unbounded."""

    __slots__ = ("blocks", "capacity", "evicted", "tokens")

    def __init__(self, capacity: int | None = None) -> None:
        self.blocks: OrderedDict[int, int] = OrderedDict()
        self.capacity = capacity
        self.tokens = 0  # Σ tokens of the cached blocks
        self.evicted = 0  # blocks evicted so far

    def __len__(self) -> int:
        return len(self.blocks)

    def peek(self, hashes: Sequence[int], inp: int) -> int:
        """Tokens of the prompt's prefix that are cached, as vLLM would reuse them; no LRU update."""
        blocks = self.blocks
        got = 0
        for j, h in enumerate(hashes):
            held = blocks.get(h)
            if held is None:
                break
            n = block_tokens(inp, j)
            got += min(held, n)
            if held < n or n < TRACE_BLOCK:
                break  # a partial block ends the chain
        return min(got // VLLM_BLOCK * VLLM_BLOCK, hit_cap(inp))

    def match(self, hashes: Sequence[int], inp: int) -> int:
        """:meth:`peek`, and the matched blocks become the most recently used."""
        got = self.peek(hashes, inp)
        if got:
            move = self.blocks.move_to_end
            # Touch the head last: it is the block the most future prompts share.
            for h in reversed(hashes[: -(-got // TRACE_BLOCK)]):
                move(h)
        return got

    def insert(self, hashes: Sequence[int], inp: int) -> None:
        """The prompt's blocks are now cached (its prefill computed them): tail first, head most
        recent; then the least recently used blocks go until the cache fits its capacity."""
        blocks = self.blocks
        for j in range(min(len(hashes), -(-inp // TRACE_BLOCK)) - 1, -1, -1):
            h, n = hashes[j], block_tokens(inp, j)
            held = blocks.get(h)
            if held is None:
                blocks[h] = n
                self.tokens += n
            else:
                if n > held:  # the same block seen longer (a partial block completed)
                    blocks[h] = n
                    self.tokens += n - held
                blocks.move_to_end(h)
        if self.capacity is not None:
            self.trim(self.capacity)

    def trim(self, capacity: int) -> None:
        """Evict least recently used blocks until at most ``capacity`` tokens are cached."""
        blocks = self.blocks
        while self.tokens > capacity and blocks:
            _, n = blocks.popitem(last=False)
            self.tokens -= n
            self.evicted += 1


def ideal_hit_ratio(
    prompts: Iterable[tuple[int, Sequence[int] | None]], capacity: int | None = None
) -> tuple[int, int]:
    """(hit tokens, prompt tokens) of ``(input tokens, hash ids)`` prompts in arrival order through
    one LRU cache of ``capacity`` tokens (None: unbounded); prompts without ids never hit."""
    cache = PrefixCache(capacity)
    hit = total = 0
    for inp, hashes in prompts:
        total += inp
        if hashes:
            hit += cache.match(hashes, inp)
            cache.insert(hashes, inp)
    return hit, total


class PrefixIndex:
    """The ``hash_ids`` of a trace's JSON-lines files, by (file order, line number).

    Read once per file; the simulator's request stream looks each request's ids up by the
    ``(source, line)`` the trace reader reports (:class:`planner.sim.traces.TraceRequest`). Ids of
    the k-th file are offset by ``k << SOURCE_SHIFT`` (see there). Files without ``hash_ids``
    (CSV formats, or JSON lines without the key) contribute nothing.
    """

    def __init__(self, paths: Sequence[str | Path]) -> None:
        self.by_file: list[dict[int, tuple[int, ...]]] = [self._read(Path(p), k) for k, p in enumerate(paths)]

    def __bool__(self) -> bool:
        return any(self.by_file)

    def get(self, source: int, line: int) -> tuple[int, ...] | None:
        return self.by_file[source].get(line)

    @staticmethod
    def _read(path: Path, k: int) -> dict[int, tuple[int, ...]]:
        out: dict[int, tuple[int, ...]] = {}
        offset = k << SOURCE_SHIFT
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                first = fh.readline()
                if not first.lstrip("\ufeff").lstrip().startswith("{"):
                    return out  # a CSV trace: no prefix hashes
                _add(out, 1, first, offset, path)
                for n, text in enumerate(fh, start=2):
                    _add(out, n, text, offset, path)
        except OSError as exc:
            raise InputError(str(path), "-", f"cannot read: {exc.strerror or exc}") from None
        return out


def _add(out: dict[int, tuple[int, ...]], n: int, text: str, offset: int, path: Path) -> None:
    if '"hash_ids"' not in text:
        return
    try:
        ids = json.loads(text).get("hash_ids")
    except (json.JSONDecodeError, AttributeError):
        return  # the trace reader names a bad line (or skips it with skip_bad)
    if ids is None:
        return
    if not isinstance(ids, list) or not all(_is_id(h) for h in ids):
        raise InputError(str(path), f"line {n}", f"hash_ids must be a list of whole numbers in [0, 2^{SOURCE_SHIFT})")
    out[n] = tuple(h | offset for h in ids) if offset else tuple(ids)


def _is_id(h: object) -> bool:
    return isinstance(h, int) and not isinstance(h, bool) and 0 <= h < 1 << SOURCE_SHIFT
