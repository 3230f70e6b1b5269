"""Triton python-backend entry point of `bls`; the logic lives in the installed flux_async package."""

from flux_async.serving.bls_models import BlsModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
