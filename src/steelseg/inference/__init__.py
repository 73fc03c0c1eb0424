"""Inference: the Predictor and its backends. No Lightning here, and no torch unless a torch
backend is chosen."""

from steelseg.inference.predictor import InputError, Predictor, SizeLimits

__all__ = ["InputError", "Predictor", "SizeLimits"]
