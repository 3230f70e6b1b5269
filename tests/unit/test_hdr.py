"""The numpy fast paths give exactly what hdrh gives."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from flux_async.measure import hdr


@pytest.mark.parametrize("layout", [(1, 3_600_000_000, 3), (1, 1_000_000, 2), (1000, 10_000_000, 4)])
def test_bulk_recording_and_reading_match_hdrh(layout):
    rng = np.random.default_rng(7)
    values = np.concatenate([(rng.lognormal(9, 2.5, 20_000)).astype(np.int64) + layout[0],
                             [layout[0], layout[1], layout[1] * 3]])
    one_by_one, bulk = HdrHistogram(*layout), HdrHistogram(*layout)
    rejected = sum(0 if one_by_one.record_value(int(v)) else 1 for v in values)
    assert hdr.record_many(bulk, values) == rejected
    assert bulk.equals(one_by_one) and bulk.get_total_count() == one_by_one.get_total_count()
    assert (bulk.get_min_value(), bulk.get_max_value()) == (one_by_one.get_min_value(), one_by_one.get_max_value())
    for percentile in (0, 0.1, 1, 25, 50, 90, 99, 99.9, 99.99, 100):
        assert hdr.value_at_percentile(bulk, percentile) == one_by_one.get_value_at_percentile(percentile)
    assert hdr.mean(bulk) == pytest.approx(one_by_one.get_mean_value(), rel=1e-12)


def test_empty_histogram():
    histogram = HdrHistogram(1, 1000, 3)
    assert hdr.value_at_percentile(histogram, 99) == 0 and hdr.mean(histogram) == 0.0
    assert hdr.record_many(histogram, np.array([], dtype=np.int64)) == 0
