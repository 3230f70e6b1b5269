"""Reporting: the JSON report, the console, the HTML page and its plots, interval logs and their merge."""
