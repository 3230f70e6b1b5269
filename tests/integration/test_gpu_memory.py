"""The test plan's T005 memory test, on a GPU: GPU memory per added image at batch 1, 2, 4, 8 (marked gpu).

Uses gRPC only, so it also runs where tritonclient's HTTP extra (gevent) is not installed.
"""

from __future__ import annotations

import json

import pytest
import tritonclient.grpc as grpcclient

from flux_async.measure.gpu import GpuSampler, peak_memory_during
from flux_async.targets.bls_inputs import bls_inputs


@pytest.mark.gpu
def test_batch_memory_efficiency(triton_server, artifacts):
    """Whole-device memory (pynvml) at 1024². Caching allocators keep what they took, so batches run in increasing
    size and the growth per added image is compared: linear growth means every extra image costs about the same.
    The step from 1 to 2 also holds one-time allocations (seen on an H100 with the tiny weights: 1014 MiB, then
    356 MiB per image from 2 to 4 and from 4 to 8), so linearity is judged from batch 2 on."""
    sampler = GpuSampler()
    assert sampler.available, sampler.reason
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    peaks = {n: peak_memory_during(lambda n=n: client.infer("bls", bls_inputs(
        grpcclient, [f"test prompt {i}" for i in range(n)], seeds=list(range(n)), height=1024, width=1024,
        num_inference_steps=4)), sampler) for n in (1, 2, 4, 8)}
    per_image = {f"{a}->{b}": (peaks[b] - peaks[a]) / (b - a) / 2**20 for a, b in ((1, 2), (2, 4), (4, 8))}
    (artifacts / "batch_memory.json").write_text(json.dumps({"peak_bytes": peaks, "mib_per_added_image": per_image},
                                                            indent=2))
    assert all(g >= 0 for g in per_image.values()), per_image
    later = [per_image["2->4"], per_image["4->8"]]
    assert max(later) <= 1.5 * max(min(later), 1.0), f"memory per added image is not about constant: {per_image}"
