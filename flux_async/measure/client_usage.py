"""What the load generator itself cost, and whether it was the bottleneck (the report's `client`).

The tester is called saturated — its figures may describe the tester, not the service — when any of these held over
the load window:
  - its process used more than CORES_LIMIT of a core (the event loop and the pacing thread share one interpreter);
  - its event loop's thread was busy (on the CPU) for more than LOOP_BUSY_LIMIT of an interval's wall time, in
    its busiest interval: one core, nearly full, leaves the loop no idle time to send and receive on schedule;
  - requests left later than their schedule: schedule lag p99 above LAG_P99_LIMIT_MS and above LAG_SHARE_LIMIT of
    the service time's p50 (a few ms of lag before requests that take seconds changes no figure);
  - its outbound queue grew: at two interval ends in a row, more than QUEUE_LIMIT requests were due but not yet
    sent (one reading alone may catch a burst the loop is still handing out).
"""

from __future__ import annotations

import asyncio
import os
import time

from flux_async.measure.recorder import stat_ms

CORES_LIMIT = 0.9
LOOP_BUSY_LIMIT = 0.85
LAG_P99_LIMIT_MS = 10.0
LAG_SHARE_LIMIT = 0.05
QUEUE_LIMIT = 10
WARNING = "figures may describe the tester, not the service"


def _rss_mb() -> float:
    """This process's resident memory now, in MB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def lag_limit_ms(service_p50_ms: float | None) -> float:
    """The schedule lag p99 above which the tester counts as late: 10 ms, or 5 % of the service time's p50."""
    return max(LAG_P99_LIMIT_MS, LAG_SHARE_LIMIT * (service_p50_ms or 0.0))


def saturation_reasons(loop_busy: float, lag_p99_ms: float | None, queue_max: int,
                       service_p50_ms: float | None = None, cores: float = 0.0) -> list[str]:
    """Why the tester was the bottleneck ([] when it was not)."""
    reasons = []
    if cores > CORES_LIMIT:
        reasons.append(f"its process used {cores:.0%} of a core over the load window (limit {CORES_LIMIT:.0%})")
    if loop_busy > LOOP_BUSY_LIMIT:
        reasons.append(f"its event loop was busy {loop_busy:.0%} of its busiest interval (limit {LOOP_BUSY_LIMIT:.0%} "
                       "of a core)")
    lag_limit = lag_limit_ms(service_p50_ms)
    if lag_p99_ms is not None and lag_p99_ms > lag_limit:
        reasons.append(f"requests left late: schedule lag p99 {lag_p99_ms:.1f} ms (limit {lag_limit:.3g} ms)")
    if queue_max > QUEUE_LIMIT:
        reasons.append(f"its outbound queue grew to {queue_max} requests due but not sent (limit {QUEUE_LIMIT})")
    return reasons


class ClientUsage:
    """Started on the event loop's thread before the load and finished there after it."""

    def __init__(self):
        self.cpu, self.loop_cpu, self.wall = time.process_time(), time.thread_time(), time.perf_counter()
        self.rss = _rss_mb()

    def finish(self, sent: int, recorder, engine) -> dict:
        """The report's `client`: CPU, memory, loop busy share (whole window and busiest interval), lag, queue,
        and the verdict with its reasons. `engine`: the Engine that ran (its loop and queue readings)."""
        wall = max(time.perf_counter() - self.wall, 1e-9)
        cpu, loop_busy = time.process_time() - self.cpu, (time.thread_time() - self.loop_cpu) / wall
        lag_p99_ms, service_p50_ms = stat_ms(recorder.merged("lag"), "p99"), stat_ms(recorder.merged("service"), "p50")
        busiest, outbound_queue_max = max(engine.loop_busy_max, loop_busy), engine.outbound_queue_max
        reasons = saturation_reasons(busiest, lag_p99_ms, outbound_queue_max, service_p50_ms, cpu / wall)
        return {"requests": sent, "cpu_s": round(cpu, 3),
                "cpu_us_per_request": round(cpu / sent * 1e6, 1) if sent else None, "cores": round(cpu / wall, 3),
                "loop_busy": round(loop_busy, 3), "loop_busy_max": round(busiest, 3),
                "schedule_lag_p99_ms": None if lag_p99_ms is None else round(lag_p99_ms, 3),
                "outbound_queue_max": outbound_queue_max,
                "rss_mb_start": round(self.rss, 1), "rss_mb_end": round(_rss_mb(), 1),
                "event_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
                "saturated": bool(reasons), "reasons": reasons,
                "limits": {"cores": CORES_LIMIT, "loop_busy": LOOP_BUSY_LIMIT,
                           "schedule_lag_p99_ms": round(lag_limit_ms(service_p50_ms), 3),
                           "outbound_queue": QUEUE_LIMIT}}


def combine(clients: list[dict]) -> dict | None:
    """Several processes' `client` sections (workers, capacity steps) as one: saturated if any one was; each
    figure the largest of the parts' (lag: the largest p99); None without parts."""
    clients = [c for c in clients if c]
    if not clients:
        return None
    reasons = [f"{c['name']}: {r}" if c.get("name") else r for c in clients for r in c.get("reasons", [])]
    cpu, sent = sum(c["cpu_s"] for c in clients), sum(c.get("requests", 0) for c in clients)
    return {"requests": sent, "cpu_s": round(cpu, 3),
            "cpu_us_per_request": round(cpu / sent * 1e6, 1) if sent else None,
            "loop_busy": max((c.get("loop_busy", 0.0) for c in clients), default=0.0),
            "loop_busy_max": max((c.get("loop_busy_max", 0.0) for c in clients), default=0.0),
            "schedule_lag_p99_ms": max((c["schedule_lag_p99_ms"] for c in clients
                                        if c.get("schedule_lag_p99_ms") is not None), default=None),
            "outbound_queue_max": max((c.get("outbound_queue_max", 0) for c in clients), default=0),
            "event_loop": clients[0].get("event_loop"),
            "saturated": bool(reasons), "reasons": reasons, "parts": len(clients),
            "limits": clients[0].get("limits")}


def warning_line(client: dict | None) -> str | None:
    """'TESTER SATURATED: … (reasons)' for the console and the HTML verdict, or None."""
    if not client or not client.get("saturated"):
        return None
    return f"TESTER SATURATED: {WARNING} ({'; '.join(client['reasons'])})"
