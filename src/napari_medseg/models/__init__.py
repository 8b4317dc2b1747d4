"""Segmentation models: specs and catalogue (no torch at import), loaders (torch)."""
