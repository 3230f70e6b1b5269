"""Triton python-backend entry point of `vae_decoder`; the logic lives in the installed flux_async package."""

from flux_async.serving.stage_models import VaeDecoderModel as TritonPythonModel

__all__ = ["TritonPythonModel"]
