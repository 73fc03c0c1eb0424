"""Training: the only package that imports Lightning (and, in augment.py, albumentations)."""
