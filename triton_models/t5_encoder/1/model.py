"""Triton python-backend entry point of `t5_encoder`; the logic lives in the installed flux_async package."""

from flux_async.serving.stage_models import T5EncoderModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
