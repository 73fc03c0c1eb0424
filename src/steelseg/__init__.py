"""steelseg: find and outline defects on photos of steel sheet.

from steelseg import Predictor
predictor = Predictor.from_run_dir("runs/unet", backend="auto", device="auto")
masks = predictor.predict(image)  # (H, W) uint8 -> (C, H, W) bool
"""

from steelseg.version import __version__

__all__ = ["Predictor", "__version__"]


def __getattr__(name: str):
    # Imported on first use: `import steelseg` (and the light commands) stay fast.
    if name == "Predictor":
        from steelseg.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'steelseg' has no attribute {name!r}")
