"""Per-stage attribution: the change in Triton's statistics extension over a phase, for every model.

For each model: requests (batch items) and executions, the batch sizes actually executed, and the average time a
request spent queued, gathering its inputs, computing and returning its outputs — so a reader sees which stage
queues first.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

_DURATIONS = ("queue", "compute_input", "compute_infer", "compute_output")


def normalize(payload: dict) -> dict[str, dict]:
    """Triton's statistics (HTTP JSON, or gRPC as JSON with int64 as strings) → {model: plain numbers}."""
    models: dict[str, dict] = {}
    for stats in payload.get("model_stats", []):
        inference = stats.get("inference_stats", {})
        entry: dict[str, Any] = {"inference_count": int(stats.get("inference_count", 0)),
                 "execution_count": int(stats.get("execution_count", 0)),
                 "success": int(inference.get("success", {}).get("count", 0)),
                 "fail": int(inference.get("fail", {}).get("count", 0)),
                 "batches": {}}
        for name in _DURATIONS:
            entry[name] = (int(inference.get(name, {}).get("count", 0)), int(inference.get(name, {}).get("ns", 0)))
        for batch in stats.get("batch_stats", []):
            entry["batches"][int(batch["batch_size"])] = int(batch.get("compute_infer", {}).get("count", 0))
        name = stats["name"]
        models[name] = add(models[name], entry) if name in models else entry  # several versions: summed
    return models


def add(a: dict, b: dict) -> dict:
    """Statistics of two servers (or versions) summed."""
    total = {key: a[key] + b[key] for key in ("inference_count", "execution_count", "success", "fail")}
    for name in _DURATIONS:
        total[name] = (a[name][0] + b[name][0], a[name][1] + b[name][1])
    batches: defaultdict[int, int] = defaultdict(int)
    for source in (a["batches"], b["batches"]):
        for size, count in source.items():
            batches[size] += count
    total["batches"] = dict(batches)
    return total


def merge(snapshots: list[dict[str, dict]]) -> dict[str, dict]:
    """Statistics of several servers (a balanced target) summed per model."""
    merged: dict[str, dict] = {}
    for snapshot in snapshots:
        for model, entry in snapshot.items():
            merged[model] = add(merged[model], entry) if model in merged else entry
    return merged


def delta(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """What each model did between two snapshots, as the report shows it (times in ms per request)."""
    stages = {}
    for model, now in after.items():
        then = before.get(model)
        if then is None:
            continue
        requests = now["inference_count"] - then["inference_count"]
        executions = now["execution_count"] - then["execution_count"]
        if requests == 0 and executions == 0:
            continue
        figures = {"requests": now["success"] - then["success"], "failures": now["fail"] - then["fail"],
                   "batch_items": requests, "executions": executions,
                   "avg_batch_size": round(requests / executions, 3) if executions else 0.0,
                   "batch_sizes": {str(size): count - then["batches"].get(size, 0)
                                   for size, count in sorted(now["batches"].items())
                                   if count - then["batches"].get(size, 0) > 0}}
        for name in _DURATIONS:
            count = now[name][0] - then[name][0]
            figures[f"{name}_ms"] = round((now[name][1] - then[name][1]) / count / 1e6, 3) if count else 0.0
        stages[model] = figures
    return stages


def first_to_queue(stages: dict[str, dict]) -> str | None:
    """The stage model whose requests waited longest in its queue (None when nothing queued)."""
    candidates = {m: f["queue_ms"] for m, f in stages.items() if not m.startswith("bls") and f["queue_ms"] > 0}
    return max(candidates, key=candidates.__getitem__) if candidates else None
