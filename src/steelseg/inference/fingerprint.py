"""A predictor's fingerprint: what decides each image's candidate, as JSON-ready values. The
manifest of a resumable prediction (``inference.resume``) records it, and a work folder left
by a predictor with another fingerprint is refused. (Not the dataset fingerprint of a plan.)
No torch."""

from __future__ import annotations

import json
from pathlib import Path

from steelseg.files import rundir
from steelseg.inference.ensemble import Member


def predictor_fingerprint(predictor) -> dict:
    """Every member's model file and its SHA-256, backend, views, weight, temperature and
    classes; the post-processing; the windows; the batch size (batches are the unit of
    computation) and the clusters of ``predictor`` (a ``Predictor``). Two predictors with the
    same fingerprint give the same candidates for the same image."""
    members = [
        {
            "model": str(Path(m.name).resolve()),
            "sha256": weights_sha256(m),
            "backend": m.backend.describe(),
            "views": list(m.views),
            "weight": m.weight,
            "temperature": m.temperature,
            "channels": list(m.channels),
        }
        for m in predictor.members
    ]
    return {
        "members": members,
        "postprocess": json.loads(predictor.postprocess.to_json()),
        "window": predictor.window,
        "overlap": predictor.overlap,
        "batch_size": predictor.batch_size,
        "clusters": None if predictor.clusters is None else predictor.clusters.model_dump(),
    }


def weights_sha256(member: Member) -> str | None:
    """SHA-256 of the file a member's backend loaded: an ONNX file, else the run's weights."""
    onnx = getattr(member.backend, "path", None)
    if onnx is not None:
        return rundir.file_sha256(onnx)
    weights = Path(member.name) / rundir.WEIGHTS
    return rundir.file_sha256(weights) if weights.is_file() else None
