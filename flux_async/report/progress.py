"""The live progress display (rich): phase, elapsed, intended vs achieved rate, in flight, counts, p50/p99 so far."""

from __future__ import annotations

import asyncio
import time

from flux_async.load.engine import NS, Engine
from flux_async.measure.recorder import stat_ms


def render(engine: Engine):
    """One frame for the current phase."""
    from rich.table import Table

    phase = engine.current
    table = Table.grid(padding=(0, 2))
    if phase is None:
        table.add_row("starting …")
        return table
    counters = engine.recorder.counters[phase.name]
    elapsed = (time.perf_counter_ns() - phase.started_ns) / NS
    planned = f" / {phase.planned_s:.0f}s" if phase.planned_s else ""
    index = engine.phases.index(phase) + 1
    latency = engine.recorder.merged("latency", {phase.name})
    p50, p99 = stat_ms(latency, "p50"), stat_ms(latency, "p99")
    table.add_row(f"[bold]{phase.name}[/bold] ({index}/{len(engine.phases)}, {phase.config.executor}"
                  f"{', warm-up' if phase.config.warmup else ''})", f"{elapsed:.1f}s{planned}")
    table.add_row(f"rate: intended {phase.scheduled / elapsed if elapsed else 0:.2f}/s, "
                  f"achieved {counters.ok / elapsed if elapsed else 0:.2f}/s",
                  f"in flight {engine.in_flight}")
    table.add_row(f"sent {counters.sent}  ok {counters.ok}  errors {counters.errors}  dropped {counters.dropped}",
                  "latency p50 " + ("–" if p50 is None else f"{p50:.0f}ms") + "  p99 "
                  + ("–" if p99 is None else f"{p99:.0f}ms"))
    if counters.errors_by_kind:
        table.add_row("errors: " + ", ".join(f"{k} × {v}" for k, v in counters.errors_by_kind.items()), "")
    return table


async def show_progress(engine: Engine, console, period_s: float = 0.5) -> None:
    """Redraw until cancelled."""
    from rich.live import Live

    with Live(render(engine), console=console, refresh_per_second=4, transient=True) as live:
        while True:
            await asyncio.sleep(period_s)
            live.update(render(engine))
