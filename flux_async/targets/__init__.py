"""Targets: what a request is sent to, and the bytes on the wire."""
