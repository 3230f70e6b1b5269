"""A finished run's outputs: the JSON report, the plot and the HTML page when asked, then the console summary."""

from __future__ import annotations

from flux_async.errors import EXIT_FAILED, EXIT_OK
from flux_async.measure.machine import describe_machine
from flux_async.report.json_report import write_json
from flux_async.run.session import RunOptions


def finish(report: dict, options: RunOptions, plot, describe, console) -> tuple[dict, int]:
    """Write the JSON, the plot and the HTML page when asked, print the summary; (report, exit code)."""
    report.setdefault("machine", describe_machine())
    if options.report:
        write_json(report, options.report)
    if options.plot:
        plot(report, options.plot)
    if options.html:
        from flux_async.report.html import write_html

        write_html(report, options.html, hlog=options.hlog)
    describe(report, console)
    return report, EXIT_OK if report["passed"] else EXIT_FAILED
