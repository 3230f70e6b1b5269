"""Scenarios: the YAML file as typed config, the workload it draws requests from, and thresholds."""
