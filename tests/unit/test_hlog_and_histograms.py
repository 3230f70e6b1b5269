"""The .hlog format written in one place, and recorder histograms encoded for another process and added back."""

from __future__ import annotations

import random
import re

from flux_async.measure.recorder import (
    Counters,
    Interval,
    Recorder,
    add_encoded,
    encode_histograms,
    new_histogram,
)
from flux_async.report.hlog import HlogWriter, read_log
from flux_async.report.hlog_merge import merge_logs, write_log

LINE = r"Tag=[^,]+,\d+\.\d{3},\d+\.\d{3},\d+\.\d{3},\S+"


def _histogram(values):
    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    return histogram


def _log(path, intervals):
    writer = HlogWriter(path)
    for start_ns, end_ns, histograms in intervals:
        writer.write(Interval(start_ns, end_ns, histograms, {"p": Counters()}))
    writer.close()


def test_run_and_merged_logs_share_the_header_and_line_format(tmp_path):
    ns = HlogWriter(tmp_path / "probe.hlog").start_ns
    _log(tmp_path / "a.hlog", [(ns, ns + 10**9, {("p", "latency"): _histogram([1000, 2000])}),
                               (ns + 10**9, ns + 2 * 10**9, {("p 1", "service"): _histogram([5000])})])
    write_log(merge_logs([tmp_path / "a.hlog"]), tmp_path / "m.hlog")
    run, merged = ((tmp_path / name).read_text().splitlines() for name in ("a.hlog", "m.hlog"))
    assert run[0] == "#[flux_async interval log: tags are <phase>:<metric>, values in microseconds]"
    assert merged[0] == ("#[flux_async merged interval log of 1 files: tags are <phase>:<metric>, "
                         "values in microseconds]")
    for lines in (run, merged):
        assert lines[1] == "#[Histogram log format version 1.3]"
        assert re.fullmatch(r"#\[StartTime: \d+\.\d{3} \(seconds since epoch\), \S+\]", lines[2])
        assert re.fullmatch(r"#\[BaseTime: \d+\.\d{3} \(seconds since epoch\)\]", lines[3])
        assert lines[4] == '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"'
        assert len(lines) == 7 and all(re.fullmatch(LINE, line) for line in lines[5:])
    assert run[6].startswith("Tag=p_1:service,") and run[5].split(",")[3] == "2.000"
    assert [i[1:3] for i in read_log(tmp_path / "m.hlog")] == [i[1:3] for i in read_log(tmp_path / "a.hlog")]
    assert merged[5].split(",", 2)[2] == run[5].split(",", 2)[2]  # the same interval, the same max and payload


def test_encoded_histograms_add_up_exactly_in_another_recorder():
    rng = random.Random(3)
    parts = []
    for _ in range(2):
        recorder = Recorder()
        for prompts in (1, 2):
            recorder.histograms[("steady", "latency", "grpc", prompts, "")] = _histogram(
                rng.randint(1000, 900_000) for _ in range(500))
        parts.append(recorder)
    total = Recorder()
    for recorder in parts:
        add_encoded(total, encode_histograms(recorder))
    assert set(total.histograms) == {("steady", "latency", "grpc", 1, ""), ("steady", "latency", "grpc", 2, "")}
    expected = new_histogram()
    for recorder in parts:
        expected.add(recorder.histograms[("steady", "latency", "grpc", 2, "")])
    got = total.histograms[("steady", "latency", "grpc", 2, "")]
    assert got.get_total_count() == 1000
    for percentile in (50, 99, 99.9):
        assert got.get_value_at_percentile(percentile) == expected.get_value_at_percentile(percentile)
    assert got.get_max_value() == expected.get_max_value()
