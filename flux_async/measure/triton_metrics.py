"""Triton's Prometheus /metrics, scraped once per interval: the nv_inference_* counters (as deltas per model),
the nv_gpu_* gauges, and what each FLUX model says it runs (`flux_model_settings`: dtype, precision, speed switches)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from flux_async.contract import SETTINGS_METRIC
from flux_async.http_session import client_session

if TYPE_CHECKING:
    import aiohttp

COUNTERS = ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
            "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
            "nv_inference_request_duration_us")
GAUGES = ("nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_power_usage")


def parse(text: str) -> dict[str, dict[str, float]]:
    """{metric: {model or gpu uuid: value}} for the families we keep (counters summed over their other labels)."""
    values: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in COUNTERS + GAUGES:
            continue
        for sample in family.samples:
            if sample.name not in (family.name, family.name + "_total"):  # the parser names counters *_total
                continue
            key = sample.labels.get("model") or sample.labels.get("gpu_uuid") or ""
            bucket = values.setdefault(family.name, {})
            bucket[key] = bucket.get(key, 0.0) + float(sample.value)
    return values


def model_settings(text: str) -> dict[str, dict[str, str]]:
    """{model: {setting: value}} from the `flux_model_settings` samples (empty for a server that has none)."""
    found: dict[str, dict[str, str]] = {}
    for family in text_string_to_metric_families(text):
        if family.name == SETTINGS_METRIC:
            for sample in family.samples:
                labels = dict(sample.labels)
                model = labels.pop("flux_model", "") or labels.pop("model", "")
                found[model] = {k: v for k, v in sorted(labels.items()) if k != "version"}
    return found


class MetricsScraper:
    """An async sampler: each call returns the counters' change since the previous call and the gauges' values."""

    def __init__(self, url: str):
        self.url = url
        self._previous: dict[str, dict[str, float]] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.model_settings: dict[str, dict[str, str]] = {}  # the server's models' settings, read once

    async def __call__(self) -> dict:
        import aiohttp

        if self._session is None:
            self._session = client_session(timeout=aiohttp.ClientTimeout(total=5))
        async with self._session.get(self.url) as response:
            response.raise_for_status()
            text = await response.text()
        current = parse(text)
        if not self.model_settings:  # fixed while the models are loaded: not parsed again every interval
            self.model_settings = model_settings(text)
        previous, self._previous = self._previous, current
        result = {name: current.get(name, {}) for name in GAUGES if name in current}
        if previous is not None:
            for name in COUNTERS:
                now, then = current.get(name, {}), previous.get(name, {})
                changed = {key: now[key] - then.get(key, 0.0) for key in now if now[key] != then.get(key, 0.0)}
                if changed:
                    result[name] = changed
        return result

    @staticmethod
    def combine(earlier: dict, later: dict) -> dict:
        """Two consecutive readings as one: counters' changes added, gauges from the later."""
        result = dict(later)
        for name in COUNTERS:
            if name in earlier:
                both = dict(earlier[name])
                for key, value in later.get(name, {}).items():
                    both[key] = both.get(key, 0.0) + value
                result[name] = both
        return result

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
