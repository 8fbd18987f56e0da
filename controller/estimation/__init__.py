"""State estimation: what the controller infers between at-line samples (docs/soft-sensor.md)."""
