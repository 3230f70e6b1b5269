"""Triton python-backend entry point of `dit_transformer`; the logic lives in the installed flux_async package."""

from flux_async.serving.stage_models import DitTransformerModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
