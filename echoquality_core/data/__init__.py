"""Clips as model input: preprocessing, the clip cache and Dataset, augmentation."""
