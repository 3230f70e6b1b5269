"""Launching Triton: the bundled (or a given) tritonserver with the model repository, one per GPU or one."""
