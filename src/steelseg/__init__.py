"""steelseg: find and outline defects on photos of steel sheet."""

__version__ = "0.1.0"
