"""``steelseg predict --review N --review-out DIR``: the N images the model is least sure of,
with its masks as pre-annotations for people to correct (``files.review_folder``), ranked by
``core.uncertainty``. No torch.

The uncertainty comes from the very ``Outputs`` the submission is made of: ``Review.record`` is
handed each image's outputs as the prediction makes them (``iter_candidates(observe=...)``) and
keeps a few numbers per class. Images a resumed prediction took from its part files went
through no network in this process: ``write`` runs those through the Predictor again
(``iter_folder``), for their numbers only. The masks written are the submission's own.
"""

from __future__ import annotations

import os
from pathlib import Path

from steelseg.core import uncertainty
from steelseg.core.outputs import Outputs
from steelseg.files.annotations import Annotations
from steelseg.files.images import require_images
from steelseg.files.review_folder import Reviewed, check_review_folder, write_review_folder


class Review:
    """The numbers of every image predicted (``record``), and the review folder made from them
    (``write``). ``count``: how many images to write; ``folder``: where (new or empty)."""

    def __init__(self, predictor, count: int, folder: str | os.PathLike, band: float = uncertainty.BAND):
        if count < 1:
            raise ValueError(f"a review needs at least one image, got {count}")
        check_review_folder(folder)
        self.predictor = predictor
        self.count, self.folder, self.band = count, Path(folder), band
        self.pixel_threshold = predictor.postprocess.pixel_threshold
        self.counts: dict[str, uncertainty.Counts] = {}

    def record(self, path: Path, outputs: Outputs) -> None:
        """Keep one image's numbers from its ``Outputs`` (pixels (C, H, W), scores (C,))."""
        near, sure = uncertainty.pixel_counts(outputs.pixels, self.pixel_threshold, self.band)
        self.counts[path.name] = uncertainty.Counts(outputs.scores, near, sure, outputs.pixels.shape[1:])

    def write(
        self, predictions: Annotations, image_dir: str | os.PathLike, image_ids: list[str], progress: bool
    ) -> str:
        """Rank ``image_ids`` (the images predicted), write the ``count`` most uncertain with
        their masks in ``predictions`` (the submission's) into the folder; a line for people."""
        paths = {path.name: path for path in require_images(image_dir)}
        missing = [paths[image_id] for image_id in image_ids if image_id not in self.counts]
        if missing:  # resumed from part files: their numbers were not kept there
            for path, _, outputs in self.predictor.iter_folder(image_dir, progress, paths=missing):
                self.record(path, outputs)
        doubts = {image_id: self._doubt(image_id) for image_id in image_ids}
        chosen = uncertainty.most_uncertain({i: float(d.max()) for i, d in doubts.items()}, self.count)
        items = [self._reviewed(paths[i], doubts[i], predictions) for i in chosen]
        write_review_folder(self.folder, self.predictor.class_names, items)
        fewer = f" (all there are; --review asked for {self.count})" if len(items) < self.count else ""
        return (
            f"wrote the {len(items)} images the model is least sure of{fewer} to {self.folder}: "
            f"annotations.json (COCO, for CVAT), images/ with LabelMe files, review.csv (why each)"
        )

    def _doubt(self, image_id: str):
        return uncertainty.doubt(self.counts[image_id], self.predictor.presence_threshold)

    def _reviewed(self, path: Path, doubt, predictions: Annotations) -> Reviewed:
        numbers = self.counts[path.name]
        c = int(doubt.argmax())  # the first class on a tie
        names = self.predictor.class_names
        score, threshold = float(numbers.scores[c]), float(self.predictor.presence_threshold[c])
        near, pixel_threshold = int(numbers.near[c]), float(self.pixel_threshold[c])
        reason = (
            f"class {c + 1} ({names[c]}): score {score:.3f} vs threshold {threshold:.3f}; {near} pixels within "
            f"{self.band:g} of the pixel threshold {pixel_threshold:.3f}"
        )
        masks = predictions.masks(path.name, len(names), numbers.shape)
        return Reviewed(path, masks, float(doubt[c]), c + 1, score, threshold, near, pixel_threshold, reason)
