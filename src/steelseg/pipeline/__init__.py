"""Whole workflows across stages: the demo (and, next, fingerprint, plan and fit)."""
