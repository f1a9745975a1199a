"""The engine: plan what runs, run it, persist every transition."""
