"""Triton python-backend entry point of `bls_stream`; the logic lives in the installed flux_async package."""

from flux_async.serving.bls_models import BlsStreamModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
