"""Does the stage-by-stage loop (no Triton) reproduce FluxPipeline on the GPU in bf16? Separates code differences
from cross-process kernel differences when Triton's images differ from in-process ones."""

import asyncio
import sys

import numpy as np
import torch
from diffusers import FluxPipeline

from flux_async.pipeline.generate import GenerationRequest, Geometry, InProcessRunner, generate
from flux_async.pipeline.stages import ClipStage, DitStage, T5Stage, VaeStage
from flux_async.pipeline.weights import resolve_weights

weights = sys.argv[1]
dev, dt = torch.device("cuda", 0), torch.bfloat16
src = resolve_weights(weights)
runner = InProcessRunner(*(cls(src, dev, dt) for cls in (ClipStage, T5Stage, DitStage, VaeStage)))
pipe = FluxPipeline.from_pretrained(weights, torch_dtype=dt).to("cuda")
pipe.set_progress_bar_config(disable=True)
prompt = "A cat holding a sign that says hello world"
for size in (256, 1024):
    request = GenerationRequest((prompt,), (1,), 4, 0.0, size, size, 256)
    ours = asyncio.run(generate(request, runner, Geometry.from_source(src), dev, dt))[0].cpu().numpy()
    runs = [pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(1), num_inference_steps=4,
                 guidance_scale=0.0, height=size, width=size, max_sequence_length=256,
                 output_type="pt").images[0].float().cpu().numpy() for _ in range(2)]
    print(size, "ours-vs-pipeline", float(np.abs(ours - runs[0]).max()),
          "pipeline-vs-itself", float(np.abs(runs[0] - runs[1]).max()))
