"""Load generation: the engine that runs phases, a Pacer over a schedule's intended start times, and fault injection."""
