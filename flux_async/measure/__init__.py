"""Measurement: HDR histograms and their recorder, the run's timeline, Triton's own statistics and metrics, the
client's cost, GPUs, and image scores with the gates that judge them."""
