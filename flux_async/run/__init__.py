"""Orchestration: `run` in one process or several, and `capacity`, from start to exit code."""
