"""flux_async."""
