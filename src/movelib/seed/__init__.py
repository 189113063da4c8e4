"""The seed: plan, publish, verify, the quick reseed, drift, the run."""
