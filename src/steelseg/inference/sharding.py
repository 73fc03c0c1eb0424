"""Sharded prediction: the image list split across processes started by ``torchrun`` (one per
GPU, or several CPU processes, on one or several machines), merged into one submission.

Each process predicts every world-size-th batch of the same batches a single process makes
(``Predictor.iter_folder``'s ``shard``), so every image's numbers are the ones a single
process computes; rank 0 gathers the candidates, gates them all at once (near-duplicate
clusters see every image) and writes the submission, byte for byte a single process's.
Candidates are a few run-length strings per image, so the gather goes through gloo (TCP) on
GPUs too. They travel as bytes, never pickles (``gather_object`` would unpickle whatever another
rank sent): each rank's candidates as the arrays of ``CandidateCodec`` in an ``.npz`` read with
``allow_pickle=False``, its skipped images as JSON.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np

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
        from steelseg.inference.candidates import CandidateCodec

        codec = CandidateCodec.of(predictor)
        payload = _pack(codec.encode(mine), dict(skip.reasons) if skip is not None else {})
        gathered = _gather_bytes(dist, payload, rank, size)
        if rank != 0:
            return None
        merged = {}
        for part, skipped in (_unpack(codec, data) for data in gathered):
            merged.update(part)
            if skip is not None:
                skip.merge(skipped)
        # the file order; only --skip-bad leaves an image out
        ordered = {p.name: merged[p.name] for p in require_images(image_dir) if skip is None or p.name in merged}
        return predictor.finish(ordered, str(image_dir), scores)
    finally:
        dist.destroy_process_group()


def _pack(arrays: dict[str, np.ndarray], skipped: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, skipped=np.frombuffer(json.dumps(skipped).encode(), np.uint8), **arrays)
    return buffer.getvalue()


def _unpack(codec, data: bytes) -> tuple[dict, dict[str, str]]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    skipped = json.loads(arrays.pop("skipped").tobytes().decode())
    return (codec.decode(arrays) if "image_ids" in arrays else {}), skipped


def _gather_bytes(dist, payload: bytes, rank: int, size: int) -> list[bytes] | None:
    """Every rank's ``payload`` on rank 0 (None elsewhere): lengths first, then the bytes padded
    to the longest, as uint8 tensors."""
    import torch

    length = torch.tensor([len(payload)], dtype=torch.int64)
    lengths = [torch.zeros(1, dtype=torch.int64) for _ in range(size)]
    dist.all_gather(lengths, length)
    longest = int(max(n.item() for n in lengths))
    mine = torch.zeros(longest, dtype=torch.uint8)
    mine[: len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
    buffers = [torch.zeros(longest, dtype=torch.uint8) for _ in range(size)] if rank == 0 else None
    dist.gather(mine, buffers, dst=0)
    if rank != 0:
        return None
    return [bytes(buffer[: int(n.item())].numpy()) for buffer, n in zip(buffers, lengths)]
