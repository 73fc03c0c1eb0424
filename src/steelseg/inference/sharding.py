"""Sharded prediction: the image list split across processes started by ``torchrun`` (one per
GPU, or several CPU processes, on one or several machines), merged into one submission.

Each process predicts every world-size-th batch of the same batches a single process makes
(``Predictor.iter_folder``'s ``shard``), so every image's numbers are the ones a single
process computes; rank 0 gathers the candidates, gates them all at once (near-duplicate
clusters see every image) and writes the submission, byte for byte a single process's.
Candidates are a few run-length strings per image, so the gather goes through gloo (TCP) on
GPUs too.
"""

from __future__ import annotations

import os

from steelseg.files.images import require_images


def world() -> tuple[int, int] | None:
    """(rank, world size) when started by torchrun with more than one process, else None."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), size) if size > 1 else None


def rank_device(device: str) -> str:
    """``auto`` -> this process's own GPU (LOCAL_RANK) when there are GPUs."""
    if device != "auto" or "LOCAL_RANK" not in os.environ:
        return device
    from steelseg.hardware import cuda_available

    return f"cuda:{os.environ['LOCAL_RANK']}" if cuda_available() else "cpu"


def predict_sharded(predictor, image_dir, progress: bool = True, scores: dict | None = None, budget=None, skip=None):
    """This process's shard of ``image_dir``; on rank 0 the merged, gated ``Annotations``
    (``scores`` filled), on the others None. ``skip`` (``SkippedImages``): each process logs
    the bad images of its own shard and leaves them out; rank 0's receives them all."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        rank, size = dist.get_rank(), dist.get_world_size()
        mine = predictor.candidates_folder(
            image_dir, progress and rank == 0, shard=(rank, size), budget=budget, skip=skip
        )
        gathered = [None] * size if rank == 0 else None
        dist.gather_object((mine, dict(skip.reasons) if skip is not None else {}), gathered, dst=0)
        if rank != 0:
            return None
        merged = {}
        for part, skipped in gathered:
            merged.update(part)
            if skip is not None:
                skip.merge(skipped)
        # the file order; only --skip-bad leaves an image out
        ordered = {p.name: merged[p.name] for p in require_images(image_dir) if skip is None or p.name in merged}
        return predictor.finish(ordered, str(image_dir), scores)
    finally:
        dist.destroy_process_group()
