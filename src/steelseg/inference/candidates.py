"""One image's prediction before the gates (``Candidate``), and candidates as plain arrays for
the resumable part files of ``inference.resume``. No torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Candidate:
    """One image's prediction before the gates: each class's mask run-length encoded, its
    peak, class-head probabilities (or None), class scores, and encoder features (or None)."""

    encoded: list[str]
    peaks: np.ndarray
    heads: np.ndarray | None
    scores: np.ndarray
    embedding: np.ndarray | None = None


class CandidateCodec:
    """``Candidate``s as arrays (``resume.WorkFolder``'s part files): run-length strings joined (their lengths kept),
    peaks, class scores, class heads and embeddings stacked in their own dtypes, so that they
    load bit for bit."""

    @classmethod
    def of(cls, predictor) -> CandidateCodec:
        """The codec of ``predictor``'s candidates (class heads, near-duplicate embeddings or not)."""
        return cls(predictor.num_classes, predictor.has_heads, predictor.clusters is not None)

    def __init__(self, num_classes: int, heads: bool, embedding: bool):
        self.num_classes = num_classes
        self.optional = {"heads": heads, "embedding": embedding}  # which of them the predictor's candidates have

    def encode(self, records: dict) -> dict[str, np.ndarray]:
        candidates = list(records.values())
        arrays = {"image_ids": np.array(list(records), dtype=str)}
        arrays.update(encode_strings([c.encoded for c in candidates], self.num_classes))
        for name in ("peaks", "scores", "heads", "embedding"):
            values = [getattr(c, name) for c in candidates]
            if values and values[0] is not None:
                arrays[name] = np.stack(values)
        return arrays

    def decode(self, arrays: dict[str, np.ndarray]) -> dict:
        image_ids = arrays["image_ids"].tolist()
        encoded = decode_strings(arrays, len(image_ids), self.num_classes)
        self._check(arrays, len(image_ids))
        heads, embedding = arrays.get("heads"), arrays.get("embedding")
        return {
            image_id: Candidate(
                encoded[i],
                arrays["peaks"][i],
                None if heads is None else heads[i],
                arrays["scores"][i],
                None if embedding is None else embedding[i],
            )
            for i, image_id in enumerate(image_ids)
        }

    def _check(self, arrays: dict[str, np.ndarray], count: int) -> None:
        """Arrays a gate can take, or a ValueError: a part file is only as good as its contents."""
        if not count:
            return
        for name in ("peaks", "scores", *(k for k, used in self.optional.items() if used)):
            array = arrays[name]  # a KeyError when missing
            rows = (count, self.num_classes) if name != "embedding" else (count,)
            if array.dtype.kind != "f" or array.shape[: len(rows)] != rows or array.ndim != 2:
                raise ValueError(
                    f"{name} of shape {array.shape} and dtype {array.dtype} for {count} images of "
                    f"{self.num_classes} classes"
                )


def encode_strings(rows: list[list[str]], width: int) -> dict[str, np.ndarray]:
    """(n, width) strings -> their UTF-8 bytes joined and their (n, width) lengths: numpy's own
    string arrays would pad every run-length string to the longest."""
    lengths = np.array([[len(s) for s in row] for row in rows], dtype=np.int64).reshape(len(rows), width)
    return {
        "text": np.frombuffer("".join(s for row in rows for s in row).encode("ascii"), np.uint8),
        "lengths": lengths,
    }


def decode_strings(arrays: dict[str, np.ndarray], count: int, width: int) -> list[list[str]]:
    text, lengths = arrays["text"].tobytes().decode("ascii"), arrays["lengths"]
    if lengths.shape != (count, width) or lengths.sum() != len(text):
        raise ValueError(f"run-length strings of shape {lengths.shape} for {count} images of {width} classes")
    ends = np.cumsum(lengths.ravel())
    flat = [text[end - n : end] for end, n in zip(ends.tolist(), lengths.ravel().tolist())]
    return [flat[i * width : (i + 1) * width] for i in range(count)]
