"""Load generation: the engine that runs phases, the pacer's intended start times, and fault injection."""
