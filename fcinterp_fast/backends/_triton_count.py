"""Counting fits of 16-bit heads (float16, bfloat16) for ``backend="triton"``: no comparison sort.

A 16-bit row has at most 2^16 distinct bit patterns, so everything docs/spec.md sections 2-4 ask
of a row is a function of how often each pattern occurs. The arithmetic (order-preserving keys,
entries u with value v_u, count c_u and position P_u, node sums and rank sums from counts, ALD
sums over the gaps between entries, exact float16 sums) is written down once, in docs/spec.md,
"Counting fits of 16-bit heads"; this kernel does it without any sort, per row:

1. **Count.** The keys of the row's bits are counted with atomic adds into a per-program
   histogram of 65536 bins (global scratch that stays in L2), and their high bytes into a
   256-bucket histogram held in registers (``tl.histogram``).
2. **Compact**, two-level: only the high-byte buckets that hold an element are read (256 bins
   each, several buckets a step, scanned as if they were adjacent: the skipped ones hold
   nothing). Running sums give each occupied pattern its entry slot and its position; the
   entries (key, count, position) go to scratch and the bins keep the prefix counts (for the
   ``#{x <= -v}`` look-ups of root="mean", empty buckets answered by their bucket's base).
   Values and ln|v| of a key come from two 65536-entry float64 tables.
3. **ALD**: a reverse pass over the entries stores the suffix sums of (n - P_u) g_u, a forward
   pass forms the prefix sums of P_u g_u and takes the first minimum over the competing entries.
4. **The split tree**, node by node as ``_triton_kernels._fit_sorted_kernel`` walks a sorted row,
   but over each node's entry range: pass 1 sums the node (int64 fixed point for float16,
   float64 products count * value for bfloat16), pass 2 the count-weighted line-fit sums
   (``_magnitude_rank`` at the entry's lowest-ranked position: its first if positive, its last
   if negative), the entries below the mean (the split) and the close calls.
5. **Exact thresholds.** float16 means are the spec's correctly rounded thresholds to the bit,
   so float16 rows are never ambiguous (rows up to ``MAX_FLOAT16_D``; longer ones go to the sort
   kernels). bfloat16 node sums are float64 sums; ``_slack`` proves them exact where the node
   spans few binades (nearly always), and otherwise a row with an entry within the rounding bound
   of its node's threshold is flagged ``ambiguous`` (``fit`` recomputes it), as the sort kernels do.

The memory it needs besides its results is per *program*, not per row: programs are persistent
(each fits rows ``pid, pid + programs, ...``), and each owns a 65537-bin histogram, 256 bucket
bases and counts, the entries of one row (key, count, position: int32; the ALD's suffix sums:
float64) and its node table. The histogram bins a row used are zeroed again before the next row.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..config import FitConfig
from ..result import RowFit
from ._triton_kernels import _line_fit, _magnitude_rank, _nonzero_parts, _slack, _store_ald, _store_node

__all__ = ["fits", "fit_rows", "pattern_tables", "MAX_FLOAT16_D"]

#: Longest float16 row whose node sums fit the exact int64 fixed point: D * 65504 * 2^24 < 2^63.
MAX_FLOAT16_D = 2**22
#: Significand bits of the 16-bit dtypes (``_slack``'s exactness test).
_MANTISSA = {torch.float16: 11, torch.bfloat16: 8}
#: Elements (or entries) per step of every loop over a row.
_CHUNK = 1024
#: Bins of the key histogram (one more than the 2^16 keys: the prefix count past the last key).
_BINS = 65537
#: Scratch memory the programs may hold together, as a fraction of the head's bytes (the target:
#: the fit may hold at most 10% of the head besides its results), at least ``_MIN_SCRATCH`` bytes
#: and one program.
_SCRATCH_FRACTION = 1 / 12
_MIN_SCRATCH = 8 * 2**20


def fits(W: torch.Tensor) -> bool:
    """Whether the counting kernel takes this head: float16 (rows up to ``MAX_FLOAT16_D``) or bfloat16."""
    return W.dtype == torch.bfloat16 or (W.dtype == torch.float16 and W.shape[1] <= MAX_FLOAT16_D)


_tables: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def pattern_tables(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(value, log_magnitude): (65536,) float64 each, indexed by order-preserving key; the log is 0
    for zero and for the non-finite patterns (which a checked head never holds)."""
    cached = _tables.get((dtype, device))
    if cached is None:
        key = torch.arange(65536, dtype=torch.int32)
        bits = torch.where(key >= 0x8000, key - 0x8000, 0xFFFF - key)
        value = bits.to(torch.int16).view(dtype).to(torch.float64)  # int32 -> int16 wraps to the bits
        magnitude = value.abs()
        usable = (magnitude > 0) & torch.isfinite(magnitude)
        log = torch.where(usable, torch.log(torch.where(usable, magnitude, 1.0)), 0.0)
        cached = _tables[(dtype, device)] = (value.to(device), log.to(device))
    return cached


def _programs(W: torch.Tensor, n_columns: int) -> int:
    """Persistent programs: two per SM (at about 128 registers a thread, two of 8 warps fit an
    H100 SM), fewer where their scratch would exceed the budget."""
    R, D = W.shape
    per_program = 4 * (_BINS + 3 * 256 + 3 * D + 2 * n_columns) + 8 * D
    budget = max(_MIN_SCRATCH, int(W.numel() * W.element_size() * _SCRATCH_FRACTION))
    if W.device.type == "cuda":
        wanted = 2 * torch.cuda.get_device_properties(W.device).multi_processor_count
    else:  # the interpreter runs programs one after another
        wanted = 2
    return max(1, min(R, wanted, budget // per_program))


def fit_rows(W: torch.Tensor, cfg: FitConfig, out: RowFit, programs: int | None = None) -> None:
    """Fit every row of ``W`` (R, D) float16/bfloat16 into ``out`` (``cfg.n_columns`` columns).

    ``W``: any strides, finite (checked by ``fit``), on W's device; ``programs``: persistent
    programs (default: ``_programs``). Writes every field of ``out`` (RowFit on W's device).
    """
    if W.dtype not in _MANTISSA:
        raise TypeError(f"the counting kernel fits float16 or bfloat16 heads, got {W.dtype}")
    if not fits(W):
        raise ValueError(f"the counting kernel fits float16 rows of at most {MAX_FLOAT16_D} elements, got {W.shape[1]}")
    R, D = W.shape
    n_programs = programs or _programs(W, cfg.n_columns)
    device = W.device
    bits = W.view(torch.int16)  # the same strides: the kernel reads bit patterns, never 16-bit floats
    value_table, log_table = pattern_tables(W.dtype, device)
    hist = torch.zeros(n_programs, _BINS, dtype=torch.int32, device=device)
    buckets = torch.empty(n_programs, 3, 256, dtype=torch.int32, device=device)
    entries = torch.empty(n_programs, 3, D, dtype=torch.int32, device=device)
    above = torch.empty(n_programs, D, dtype=torch.float64, device=device)
    nodes = torch.empty(n_programs, 2, cfg.n_columns, dtype=torch.int32, device=device)
    outputs = [out.count, out.mean, out.lo, out.hi, out.slope, out.intercept, out.r2,
               out.loc, out.scale, out.kappa, out.loglik, out.ambiguous]  # fmt: skip
    _count_fit_kernel[(n_programs,)](
        bits, value_table, log_table, hist, buckets, entries, above, nodes, *outputs,
        R, D, bits.stride(0), bits.stride(1), cfg.n_columns, cfg.min_size, cfg.levels, int(cfg.grid == "linspace"),
        n_programs,
        CHUNK=_CHUNK, FULL=cfg.tree == "full", ROOT_MEAN=cfg.root == "mean",
        FIXED_POINT=W.dtype == torch.float16, MANTISSA=_MANTISSA[W.dtype],
        num_warps=8,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# The kernel
# ----------------------------------------------------------------------------------------------


@triton.jit
def _entry_position(pos_row, index, U, n):
    """P at entry ``index`` (the elements below it); ``n`` past the last entry."""
    return tl.where(index < U, tl.load(pos_row + tl.minimum(index, U - 1), volatile=True), n)


@triton.jit
def _entry_value(value_table, key_row, index, mask):
    """float64 value of entry ``index`` (0 where ``mask`` is False)."""
    return tl.load(value_table + tl.load(key_row + index, mask=mask, other=0x8000, volatile=True))


@triton.jit
def _value_of(value_table, key_row, index):
    """float64 value of the entry at the (scalar, in range) ``index``."""
    return tl.load(value_table + tl.load(key_row + index, volatile=True))


@triton.jit
def _count_below(value_table, key_row, U, threshold, strict: tl.constexpr, CHUNK: tl.constexpr):
    """Entries with value < threshold (``strict``) or <= threshold."""
    total = tl.zeros((), dtype=tl.int32)
    for start in range(0, U, CHUNK):
        offs = start + tl.arange(0, CHUNK)
        inside = offs < U
        v = _entry_value(value_table, key_row, offs, inside)
        hit = (v < threshold) if strict else (v <= threshold)
        total += tl.sum((inside & hit).to(tl.int32), axis=0)
    return total


@triton.jit
def _prefix_at(hist_row, base_row, occupied_row, key):
    """#{elements with key < ``key``} for any key in 0..65536, from the compacted histogram:
    occupied buckets hold their prefix counts, an empty bucket's are all its base."""
    bucket = tl.minimum(key >> 8, 255)
    occupied = tl.load(occupied_row + bucket, volatile=True) > 0
    in_bucket = tl.load(hist_row + key, volatile=True)
    return tl.where(occupied | (key == 65536), in_bucket, tl.load(base_row + bucket, volatile=True))


# Sizes and options stay runtime values (an argument equal to 1 would otherwise become a
# compile-time constant and recompile the kernel).
@triton.jit(do_not_specialize=["n_rows", "D", "n_columns", "min_size", "levels", "linspace", "n_programs"])
def _count_fit_kernel(
    bits_ptr, value_table, log_table, hist_ptr, buckets_ptr, entries_ptr, above_ptr, nodes_ptr,
    count_ptr, mean_ptr, lo_ptr, hi_ptr, slope_ptr, intercept_ptr, r2_ptr,
    loc_ptr, scale_ptr, kappa_ptr, loglik_ptr, ambiguous_ptr,
    n_rows, D, stride_row, stride_col, n_columns, min_size, levels, linspace, n_programs,
    # Meta-parameters
    CHUNK: tl.constexpr, FULL: tl.constexpr, ROOT_MEAN: tl.constexpr,
    FIXED_POINT: tl.constexpr, MANTISSA: tl.constexpr,
):
    """Fit rows pid, pid + n_programs, ... of the 16-bit head whose bits are ``bits`` (n_rows, D)
    int16; see the module docstring.

    Scratch of this program: ``hist`` (n_programs, 65537) int32, zero on entry and on exit;
    ``buckets`` (n_programs, 3, 256) int32 (bucket bases, bucket counts, the occupied buckets in
    order); ``entries``
    (n_programs, 3, D) int32 (key, count, position); ``above`` (n_programs, D) float64;
    ``nodes`` (n_programs, 2, n_columns) int32 (entry ranges [start, stop) of each node).
    ``FIXED_POINT``: float16 (exact int64 sums); ``MANTISSA``: significand bits (``_slack``).
    """
    # -- map the program to its scratch --------------------------------------------------------
    pid = tl.program_id(0)
    pid64 = pid.to(tl.int64)
    hist_row = hist_ptr + pid64 * 65537
    base_row = buckets_ptr + pid64 * 3 * 256
    occupied_row = base_row + 256
    list_row = occupied_row + 256
    key_row = entries_ptr + pid64 * 3 * D
    count_row = key_row + D
    pos_row = count_row + D
    above_row = above_ptr + pid64 * D
    start_row = nodes_ptr + pid64 * 2 * n_columns
    stop_row = start_row + n_columns
    lane = tl.arange(0, CHUNK)  # (CHUNK,)
    bucket_ids = tl.arange(0, 256)  # (256,)
    n = D.to(tl.float64)

    for step in range(0, tl.cdiv(n_rows - pid, n_programs)):
        row = pid64 + step * n_programs.to(tl.int64)
        # -- count: keys into the histogram, high bytes into registers -------------------------
        high = tl.zeros((256,), dtype=tl.int32)
        for start in range(0, D, CHUNK):
            offs = start + lane
            inside = offs < D
            b = tl.load(bits_ptr + row * stride_row + offs.to(tl.int64) * stride_col, mask=inside, other=0)
            b = b.to(tl.int32) & 0xFFFF
            key = tl.where(b >= 0x8000, 0xFFFF - b, b + 0x8000)
            key = tl.where(b == 0x8000, 0x8000, key)  # -0 counts as +0
            tl.atomic_add(hist_row + key, 1, mask=inside, sem="relaxed")
            high += tl.histogram(key >> 8, 256, mask=inside)
        tl.debug_barrier()

        # -- compact: occupied patterns into entries (key, count, position), bins to prefixes --
        # Only the occupied buckets are read, one after another as if they were adjacent: the
        # skipped ones hold no element, so running sums over the read bins are the row's prefixes.
        tl.store(base_row + bucket_ids, tl.cumsum(high, axis=0) - high)  # elements below each bucket
        tl.store(occupied_row + bucket_ids, high)
        occupied_bucket = high > 0
        tl.store(list_row + tl.cumsum(occupied_bucket.to(tl.int32), axis=0) - 1, bucket_ids, mask=occupied_bucket)
        read_bins = tl.sum(occupied_bucket.to(tl.int32), axis=0) * 256
        tl.debug_barrier()
        n_entries = tl.zeros((), dtype=tl.int32)
        negative_entries = tl.zeros((), dtype=tl.int32)  # entries with key < 0x8000 (v < 0)
        elements_below = tl.zeros((), dtype=tl.int32)
        for start in range(0, read_bins, CHUNK):
            offs = start + lane
            inside = offs < read_bins
            bins = tl.load(list_row + offs // 256, mask=inside, other=0, volatile=True) * 256 + offs % 256
            c = tl.load(hist_row + bins, mask=inside, other=0, volatile=True)
            occupied = c > 0
            slot = n_entries + tl.cumsum(occupied.to(tl.int32), axis=0) - 1
            position = elements_below + tl.cumsum(c, axis=0) - c
            tl.store(key_row + slot, bins, mask=occupied)
            tl.store(count_row + slot, c, mask=occupied)
            tl.store(pos_row + slot, position, mask=occupied)
            tl.store(hist_row + bins, position, mask=inside)
            n_entries += tl.sum(occupied.to(tl.int32), axis=0)
            negative_entries += tl.sum((occupied & (bins < 0x8000)).to(tl.int32), axis=0)
            elements_below += tl.sum(c, axis=0)
        tl.store(hist_row + 65536, D)
        for column in range(0, n_columns, CHUNK):  # no node yet
            tl.store(start_row + column + lane, 0, mask=column + lane < n_columns)
            tl.store(stop_row + column + lane, 0, mask=column + lane < n_columns)
        tl.debug_barrier()
        U = n_entries
        # the zero entry (if any) is [zs, ze); its elements the positions [z0, z1)
        zs = negative_entries
        zero_key = tl.load(key_row + tl.minimum(zs, U - 1), volatile=True)
        ze = tl.where((zs < U) & (zero_key == 0x8000), zs + 1, zs)
        z0 = _entry_position(pos_row, zs, U, D)
        z1 = _entry_position(pos_row, ze, U, D)

        # -- ALD: suffix sums of (n - P_u) g_u into scratch, then prefix sums and the first minimum
        carry = tl.zeros((), dtype=tl.float64)
        n_chunks = tl.cdiv(U, CHUNK)
        for k in range(0, n_chunks):
            offs = (n_chunks - 1 - k) * CHUNK + lane
            nxt = offs + 1
            v = _entry_value(value_table, key_row, offs, offs < U)
            v_next = _entry_value(value_table, key_row, nxt, nxt < U)
            p_next = tl.load(pos_row + nxt, mask=nxt < U, other=0, volatile=True).to(tl.float64)
            term = tl.where(nxt < U, (n - p_next) * (v_next - v), 0.0)  # the gap above entry u
            suffix = tl.cumsum(term, axis=0, reverse=True) + carry
            tl.store(above_row + offs, suffix, mask=offs < U)
            carry = tl.sum(term, axis=0) + carry
        tl.debug_barrier()
        carry = tl.zeros((), dtype=tl.float64)
        best = tl.full((), float("inf"), dtype=tl.float64)
        best_alpha = tl.zeros((), dtype=tl.float64)
        best_beta = tl.zeros((), dtype=tl.float64)
        best_loc = tl.zeros((), dtype=tl.float64)
        for start in range(0, U, CHUNK):
            offs = start + lane
            inside = offs < U
            v = _entry_value(value_table, key_row, offs, inside)
            previous = _entry_value(value_table, key_row, offs - 1, inside & (offs >= 1))
            p = tl.load(pos_row + offs, mask=inside, other=0, volatile=True)
            c = tl.load(count_row + offs, mask=inside, other=0, volatile=True)
            term = tl.where(inside & (offs >= 1), p.to(tl.float64) * (v - previous), 0.0)  # the gap below
            below = tl.cumsum(term, axis=0) + carry
            carry = tl.sum(term, axis=0) + carry
            alpha = tl.load(above_row + offs, mask=inside, other=0.0, volatile=True) / n
            beta = below / n
            interior = inside & (p <= D - 2) & (p + c - 1 >= 1)  # some position in 1 .. n - 2
            objective = tl.where(interior, tl.sqrt(alpha) + tl.sqrt(beta), float("inf"))
            chunk_best = tl.min(objective, axis=0)
            at = offs == (start + tl.argmin(objective, axis=0))
            if chunk_best < best:  # strict: the first minimum over the whole row wins
                best = chunk_best
                best_alpha = tl.sum(tl.where(at, alpha, 0.0), axis=0)
                best_beta = tl.sum(tl.where(at, beta, 0.0), axis=0)
                best_loc = tl.sum(tl.where(at, v, 0.0), axis=0)
        _store_ald(loc_ptr, scale_ptr, kappa_ptr, loglik_ptr, row, D > 0, D, best_loc, best_alpha, best_beta)

        # -- root split: + = entries [split, U), - = [0, lower_end) -------------------------------
        ambiguous = tl.zeros((), dtype=tl.int32)
        if ROOT_MEAN:
            fixed_total = tl.zeros((), dtype=tl.int64)
            total = tl.zeros((), dtype=tl.float64)
            abs_total = tl.zeros((), dtype=tl.float64)
            for start in range(0, U, CHUNK):
                offs = start + lane
                inside = offs < U
                v = _entry_value(value_table, key_row, offs, inside)
                c = tl.load(count_row + offs, mask=inside, other=0, volatile=True)
                if FIXED_POINT:
                    fixed_total += tl.sum(c.to(tl.int64) * (v * 16777216.0).to(tl.int64), axis=0)
                else:
                    total += tl.sum(c.to(tl.float64) * v, axis=0)
                    abs_total += tl.sum(c.to(tl.float64) * tl.abs(v), axis=0)
            if FIXED_POINT:
                mu = fixed_total.to(tl.float64) * 5.9604644775390625e-08 / n  # 2^-24: exact
            else:
                mu = total / n
                largest_negative = _value_of(value_table, key_row, tl.maximum(zs - 1, 0))
                smallest_positive = _value_of(value_table, key_row, tl.minimum(ze, U - 1))
                row_smallest = tl.minimum(tl.where(zs > 0, -largest_negative, float("inf")),
                                          tl.where(ze < U, smallest_positive, float("inf")))  # fmt: skip
                slack = _slack(D, abs_total, row_smallest, MANTISSA)
                for start in range(0, U, CHUNK):
                    offs = start + lane
                    inside = offs < U
                    v = _entry_value(value_table, key_row, offs, inside)
                    close = inside & (tl.abs(v - mu) <= slack)
                    ambiguous = tl.maximum(ambiguous, tl.max(close.to(tl.int32), axis=0))
            split = _count_below(value_table, key_row, U, mu, True, CHUNK)
            lower_end = split
        else:
            split = ze
            lower_end = zs
        tl.store(start_row, split)
        tl.store(stop_row, U)
        tl.store(stop_row + 1, lower_end)
        tl.debug_barrier()

        # -- the split tree, node by node over entry ranges -------------------------------------
        for level in range(1, levels + 1):
            if FULL:
                width = 1 << level
                first_column = width - 2
            else:
                width = 2
                first_column = 2 * (level - 1)
            for w in range(0, width):
                column = first_column + w
                s = tl.load(start_row + column, volatile=True)
                e = tl.load(stop_row + column, volatile=True)
                if e > s:
                    s_pos = _entry_position(pos_row, s, U, D)
                    e_pos = _entry_position(pos_row, e, U, D)
                    count = e_pos - s_pos
                    # Pass 1: the node's sum (exact for float16) and sum of magnitudes.
                    fixed_total = tl.zeros((), dtype=tl.int64)
                    node_total = tl.zeros((), dtype=tl.float64)
                    node_abs = tl.zeros((), dtype=tl.float64)
                    for start in range(s, e, CHUNK):
                        offs = start + lane
                        inside = offs < e
                        v = _entry_value(value_table, key_row, offs, inside)
                        c = tl.load(count_row + offs, mask=inside, other=0, volatile=True)
                        if FIXED_POINT:
                            fixed_total += tl.sum(c.to(tl.int64) * (v * 16777216.0).to(tl.int64), axis=0)
                        else:
                            node_total += tl.sum(c.to(tl.float64) * v, axis=0)
                            node_abs += tl.sum(c.to(tl.float64) * tl.abs(v), axis=0)
                    if FIXED_POINT:
                        node_total = fixed_total.to(tl.float64) * 5.9604644775390625e-08
                    mean = node_total / count.to(tl.float64)
                    lo = _value_of(value_table, key_row, s)
                    hi = _value_of(value_table, key_row, e - 1)
                    neg_end, pos_start, L = _nonzero_parts(s_pos, e_pos, z0, z1)
                    # the node's entries nearest zero on each side
                    nearest_negative = _value_of(value_table, key_row, tl.maximum(tl.minimum(e, zs) - 1, 0))
                    nearest_positive = _value_of(value_table, key_row, tl.minimum(tl.maximum(s, ze), U - 1))
                    smallest = tl.minimum(
                        tl.where(neg_end > s_pos, -nearest_negative, float("inf")),
                        tl.where(pos_start < e_pos, nearest_positive, float("inf")),
                    )
                    y_min = tl.log(tl.where(L > 0, smallest, 1.0))
                    split_node = (count >= min_size) & (lo != hi) & (level < levels)
                    if FIXED_POINT:
                        slack = -1.0  # the exact threshold: nothing to flag
                    else:
                        slack = _slack(count, node_abs, smallest, MANTISSA)
                    # Pass 2: count-weighted line-fit sums, entries below the mean, close calls.
                    sum_d = tl.zeros((), dtype=tl.float64)
                    sum_rd = tl.zeros((), dtype=tl.float64)
                    sum_dd = tl.zeros((), dtype=tl.float64)
                    n_lower = tl.zeros((), dtype=tl.int32)
                    for start in range(s, e, CHUNK):
                        offs = start + lane
                        inside = offs < e
                        key = tl.load(key_row + offs, mask=inside, other=0x8000, volatile=True)
                        v = tl.load(value_table + key)
                        y = tl.load(log_table + key)
                        c = tl.load(count_row + offs, mask=inside, other=0, volatile=True)
                        p = tl.load(pos_row + offs, mask=inside, other=0, volatile=True)
                        if ROOT_MEAN:  # #{x <= -v}: the prefix count just past the key of -v
                            mirrored = tl.where(inside & (v != 0), 0x10000 - key, 0x8000)
                            mirror = _prefix_at(hist_row, base_row, occupied_row, mirrored)
                        else:
                            mirror = z0
                        fit_member = inside & (v != 0)
                        d = tl.where(fit_member, y - y_min, 0.0)
                        # the entry's lowest magnitude rank: its first position if positive, its last if negative
                        lowest = tl.where(v > 0, p, p + c - 1)
                        r0 = tl.where(fit_member, _magnitude_rank(lowest, v, s_pos, e_pos, z0, z1, mirror), 0.0)
                        cf = c.to(tl.float64)
                        sum_d += tl.sum(cf * d, axis=0)
                        sum_dd += tl.sum(cf * d * d, axis=0)
                        sum_rd += tl.sum((cf * r0 + cf * (cf - 1.0) * 0.5) * d, axis=0)
                        n_lower += tl.sum((inside & (v < mean)).to(tl.int32), axis=0)
                        close = inside & (tl.abs(v - mean) <= slack) & split_node
                        ambiguous = tl.maximum(ambiguous, tl.max(close.to(tl.int32), axis=0))
                    slope, intercept, r2 = _line_fit(L, y_min, sum_d, sum_rd, sum_dd, linspace)
                    _store_node(
                        count_ptr, mean_ptr, lo_ptr, hi_ptr, slope_ptr, intercept_ptr, r2_ptr,
                        row * n_columns + column, count > 0, count, mean, lo, hi, slope, intercept, r2,
                    )
                    if split_node:
                        cut = s + n_lower
                        if FULL:  # children 2w (upper) and 2w + 1 (lower) of the next level
                            child = 2 * width - 2 + 2 * w
                            tl.store(start_row + child, cut)
                            tl.store(stop_row + child, e)
                            tl.store(start_row + child + 1, s)
                            tl.store(stop_row + child + 1, cut)
                        else:  # + keeps its upper child, - its lower child
                            child = first_column + 2 + w
                            tl.store(start_row + child, tl.where(w == 0, cut, s))
                            tl.store(stop_row + child, tl.where(w == 0, e, cut))
            tl.debug_barrier()
        tl.store(ambiguous_ptr + row, ambiguous.to(tl.int1))

        # -- clear the bins this row used, for the next row ----------------------------------------
        for start in range(0, read_bins, CHUNK):
            offs = start + lane
            inside = offs < read_bins
            bins = tl.load(list_row + offs // 256, mask=inside, other=0, volatile=True) * 256 + offs % 256
            tl.store(hist_row + bins, 0, mask=inside)
        tl.store(hist_row + 65536, 0)
        tl.debug_barrier()
