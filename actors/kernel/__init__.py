"""Building, validating and running wasm kernels (no Ray here)."""
