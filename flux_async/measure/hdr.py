"""numpy fast paths over hdrh's HdrHistogram: record many values at once, and read percentiles and the mean.

hdrh does both in pure Python, value by value and bucket by bucket; these give the same numbers (tests compare
them) at a fraction of the CPU, which matters when the load generator records tens of thousands of values a second.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from hdrh.histogram import HdrHistogram


def _counts(histogram: HdrHistogram) -> np.ndarray:
    """The histogram's counts as a writable numpy view (no copy)."""
    return np.frombuffer(histogram.counts, dtype=np.int64, count=histogram.counts_len)


def _bit_length(values: np.ndarray) -> np.ndarray:
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)  # exact for integers below 2**53


def indexes(histogram: HdrHistogram, values: np.ndarray) -> np.ndarray:
    """hdrh's `_counts_index_for`, vectorized."""
    h = histogram
    bucket = _bit_length(values | h.sub_bucket_mask) - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + h.unit_magnitude)
    return ((bucket + 1) << h.sub_bucket_half_count_magnitude) + (sub_bucket - h.sub_bucket_half_count)


def record_many(histogram: HdrHistogram, values: np.ndarray) -> int:
    """Record every value (int64, >= 0); returns how many were out of range and not recorded (as record_value)."""
    if values.size == 0:
        return 0
    index = indexes(histogram, values)
    valid = (values >= 0) & (index >= 0) & (index < histogram.counts_len)
    kept, index = values[valid], index[valid]
    if kept.size:
        counts = _counts(histogram)
        counts += np.bincount(index, minlength=histogram.counts_len)
        histogram.total_count += int(kept.size)
        histogram.min_value = min(histogram.min_value, int(kept.min()))
        histogram.max_value = max(histogram.max_value, int(kept.max()))
    return int(values.size - kept.size)


@lru_cache(maxsize=8)
def _tables(lowest: int, highest: int, digits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per counts index: the lowest, highest and median equivalent values, for one histogram layout (hdrh's
    get_value_from_index and equivalent-value functions, vectorized)."""
    h = HdrHistogram(lowest, highest, digits)
    index = np.arange(h.counts_len, dtype=np.int64)
    bucket = (index >> h.sub_bucket_half_count_magnitude) - 1
    sub_bucket = (index & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
    first = bucket < 0
    sub_bucket[first] -= h.sub_bucket_half_count
    bucket[first] = 0
    values = sub_bucket << (bucket + h.unit_magnitude)
    bucket = _bit_length(values | h.sub_bucket_mask) - h.unit_magnitude - (h.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + h.unit_magnitude)
    lowest_eq = sub_bucket << (bucket + h.unit_magnitude)
    size = np.left_shift(1, h.unit_magnitude + bucket + (sub_bucket >= h.sub_bucket_count).astype(np.int64))
    return lowest_eq, lowest_eq + size - 1, lowest_eq + (size >> 1)


def _layout(histogram: HdrHistogram):
    return _tables(histogram.lowest_trackable_value, histogram.highest_trackable_value,
                   histogram.significant_figures)


def value_at_percentile(histogram: HdrHistogram, percentile: float) -> int:
    """hdrh's `get_value_at_percentile`, with one cumulative sum instead of a Python loop."""
    if histogram.total_count == 0:
        return 0
    target = histogram.get_target_count_at_percentile(percentile)
    cumulative = np.cumsum(_counts(histogram))
    index = int(np.searchsorted(cumulative, target))
    if index >= histogram.counts_len:
        return 0
    lowest_eq, highest_eq, _ = _layout(histogram)
    return int(highest_eq[index] if percentile else lowest_eq[index])


def mean(histogram: HdrHistogram) -> float:
    """hdrh's `get_mean_value` (median equivalent value of each recorded bucket)."""
    if histogram.total_count == 0:
        return 0.0
    _, _, median_eq = _layout(histogram)
    counts = _counts(histogram)
    return float((counts * median_eq).sum()) / histogram.total_count
