"""The coordinator's live display: the agents' last heartbeats added into one view (the phase, counts and latency
percentiles over every agent so far) and a row per agent (its node, counts, requests in flight, heartbeat age, loss)."""

from __future__ import annotations

from typing import Any

from flux_async.measure.recorder import Recorder, add_part, stat_ms


def merged_so_far(parts: list[dict]) -> Recorder:
    """The agents' cumulative heartbeats (recorder.encode_part's shape) added into one recorder."""
    recorder = Recorder()
    for part in parts:
        add_part(recorder, part)
    return recorder


def render(agents: list[Any], elapsed_s: float):
    """One frame: the whole run so far, then one row per agent (`agents`: coordinator.Agent)."""
    from rich.table import Table

    beats = [a.last for a in agents if a.last]
    recorder = merged_so_far(beats)
    phases = sorted({b["phase"] for b in beats if b.get("phase")})
    total = recorder.merged_counters(set(recorder.counters))
    latency = recorder.merged("latency", set(phases)) if phases else None
    p50, p99 = stat_ms(latency, "p50"), stat_ms(latency, "p99")
    head = Table.grid(padding=(0, 2))
    head.add_row(f"[bold]{', '.join(phases) or 'starting …'}[/bold]", f"{elapsed_s:.1f}s",
                 f"agents {sum(1 for a in agents if not a.lost)}/{len(agents)}")
    head.add_row(f"sent {total.sent}  ok {total.ok}  errors {total.errors}  dropped {total.dropped}",
                 "latency p50 " + ("–" if p50 is None else f"{p50:.0f}ms") + "  p99 "
                 + ("–" if p99 is None else f"{p99:.0f}ms") + " (current phases, every agent)", "")
    rows = Table(box=None, padding=(0, 1))
    for column in ("agent", "address", "sent", "ok", "errors", "in flight", "heartbeat"):
        rows.add_column(column, justify="right")
    for agent in agents:
        counters = [c for c in agent.last.get("counters", {}).values()]
        sent, ok, errors = (sum(c[k] for c in counters) for k in ("sent", "ok", "errors"))
        state = f"[red]LOST: {agent.lost['reason'][:60]}[/red]" if agent.lost else (
            "done" if agent.result is not None else f"{max(0.0, elapsed_s - agent.seen_s):.1f}s ago")
        rows.add_row(str(agent.index), agent.where["address"], str(sent), str(ok), str(errors),
                     str(agent.last.get("in_flight", 0)), state)
    frame = Table.grid()
    frame.add_row(head)
    frame.add_row(rows)
    return frame
