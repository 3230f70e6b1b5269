"""HTTP front ends before Triton's `bls`: what teams put in front of Triton, which has no images route."""
