"""Converters from public exercise catalogues into the movement data format."""
