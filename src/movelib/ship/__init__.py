"""Seed dumps shipped between databases: dump, restore, manifests, releases, signatures."""
