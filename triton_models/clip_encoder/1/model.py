"""Triton python-backend entry point of `clip_encoder`; the logic lives in the installed flux_async package."""

from flux_async.serving.stage_models import ClipEncoderModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
