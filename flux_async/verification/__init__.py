"""Verification: every checked image against its reference, under a gate."""
