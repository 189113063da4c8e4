"""Where data comes from: data files, catalogue importers, synthetic data."""
