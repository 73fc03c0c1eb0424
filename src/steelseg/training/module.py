"""The LightningModule of every ``model.task``: the plain network plus loss, optimiser and
validation scoring (competition Dice for pixel outputs, screening for class scores)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from steelseg.config import Config
from steelseg.core.metrics import DiceAccumulator
from steelseg.core.outputs import CLASSES, PIXELS, TASK_OUTPUTS, to_image
from steelseg.core.postprocess import PostProcess, per_class
from steelseg.core.screening import present, screening_report, tune_screen_thresholds
from steelseg.core.search import PostprocessSearch
from steelseg.files.rundir import EpochResult
from steelseg.models.registry import build_model
from steelseg.models.weights import load_weights
from steelseg.training.distill_loss import distill_loss
from steelseg.training.losses import build_loss
from steelseg.training.mixup import mixup_batch
from steelseg.training.optim import build_optimizer, build_scheduler


def labels_of(masks: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) masks -> (N, C) labels: 1 where the class has a pixel in the (augmented)
    crop. A crop that misses a defect, or a defect blacked out, is labelled clean."""
    return masks.flatten(2).amax(dim=2)


class SegmentationModule(L.LightningModule):
    """Validation scores full images. Pixel outputs get the competition metric twice: with the
    configured post-processing and with the best one found on this epoch's predictions. Class
    scores (a class head's, or the max / top-K pixel probability) get the screening report at
    screening thresholds tuned on them. After each validation, ``epoch_result`` holds the scores,
    ``tuned_postprocess`` the tuned post-processing (None without pixel outputs); the
    screening report, with the tuned screening thresholds, is ``epoch_result.screening``.

    A classifier has no masks to score: its ``val_dice`` is the presence accuracy at the
    configured ``postprocess.screen_threshold`` and ``val_dice_tuned`` at the tuned thresholds,
    which is the competition's mean Dice if every mask let through were perfect (see
    screening.py), so the best epoch is chosen as for the other tasks.

    Validation computes outputs exactly as the Predictor does: the network's activation at its
    resolution, then ``core.outputs.to_image`` at the image's size, so the thresholds tuned here are
    applied to the same numbers at prediction."""

    def __init__(self, config: Config):
        super().__init__()
        if not config.data.class_names:
            raise ValueError("resolve the dataset's class names before building the module")
        self.config = config
        self.class_names = config.output_class_names
        self.num_classes = num_classes = len(self.class_names)
        self.task = config.model.task
        self.outputs = TASK_OUTPUTS[self.task]
        self.model = build_model(config.model, num_classes)
        if config.model.init_from:  # a previous stage or run: every layer, not just the encoder
            load_weights(config.model.init_from, self.model, new_class_head=self.task == "two_head")
        self.memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        # Mask R-CNN brings its own losses (RPN, boxes, classes, masks).
        self.loss = (
            build_loss(config.train.loss, num_classes, config.model.head)
            if self.task in ("segment", "two_head")
            else None
        )
        self.class_loss = (
            build_loss(config.train.class_loss, num_classes, "sigmoid") if CLASSES in self.outputs else None
        )
        self.class_weight = 1.0 if self.task == "classify" else config.train.class_loss_weight
        post = config.postprocess
        self.default_postprocess = PostProcess.uniform(num_classes, post.pixel_threshold, post.min_area)
        self.default_screen_threshold = per_class(post.screen_threshold, num_classes, "screen_threshold")
        self.epoch_result: EpochResult | None = None
        self.tuned_postprocess: PostProcess | None = None
        self._train_losses: list[float] = []

    def _loss(self, logits: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        """Pixel loss + class_weight x class loss, in fp32 whatever the autocast dtype. The class
        loss sees (N, C) as (N, C, 1, 1): the pixel loss registry applies unchanged."""
        total = torch.zeros((), device=masks.device)
        if PIXELS in logits:
            total = total + self.loss(logits[PIXELS].float(), masks)
        if CLASSES in logits:
            labels = labels_of(masks)[..., None, None]
            total = total + self.class_weight * self.class_loss(logits[CLASSES].float()[..., None, None], labels)
        return total

    def training_step(self, batch, batch_index):
        x, y, *soft = batch  # distillation: the teacher's targets too (training.distill_data)
        if self.config.train.mixup_alpha:
            x, y = mixup_batch(x, y, self.config.train.mixup_alpha, self._mixup_generator)
        x = x.contiguous(memory_format=self.memory_format)
        if self.task == "instance":
            loss = self.model.losses(x, y)
        elif soft:
            loss = distill_loss(self._loss, self.model.logits(x), y, soft[0], self.config.distill, self.class_weight)
        else:
            loss = self._loss(self.model.logits(x), y)
        self.log("loss", loss, prog_bar=True)
        self._train_losses.append(loss.item())
        return loss

    def on_validation_epoch_start(self) -> None:
        self._scores = DiceAccumulator(self.num_classes)
        post = self.config.postprocess
        self._search = PostprocessSearch(self.num_classes, post.threshold_grid, post.min_area_grid)
        self._val_losses: list[float] = []
        self._class_scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def validation_step(self, batch, batch_index):
        x, y = batch  # whole images of one size (validation batches are grouped by size)
        x = x.contiguous(memory_format=self.memory_format)
        if self.task == "instance":  # eval mode: detections merged into pixel probabilities
            net_probs = {PIXELS: self.model(x)}
        else:
            logits = self.model.logits(x)
            net_probs = self.model.activation(logits)
            self._val_losses.append(self._loss(_at_size(logits, y.shape[-2:]), y).item())
        outputs = to_image({k: v.float().cpu().numpy() for k, v in net_probs.items()}, y.shape[-2:], self.config.model)
        truths = y.cpu().numpy().astype(bool)
        self._class_scores.append(outputs.scores)
        self._labels.append(truths.any(axis=(2, 3)))
        if outputs.pixels is not None:
            for p, t in zip(outputs.pixels, truths):
                self._scores.update(self.default_postprocess(p), t)
                self._search.update(p, t)

    def on_validation_epoch_end(self) -> None:
        class_scores, labels = np.concatenate(self._class_scores), np.concatenate(self._labels)
        post = self.config.postprocess
        thresholds, accuracy = tune_screen_thresholds(
            class_scores, labels, post.screen_threshold_grid, post.screen_min_recall
        )
        if PIXELS in self.outputs:
            scores = self._scores.result()
            self.tuned_postprocess, class_dice = self._search.best()
            dice, iou = scores.mean_dice, scores.mean_iou
        else:  # presence accuracy: see the class docstring
            class_dice, iou = accuracy, None
            dice = float((present(class_scores, self.default_screen_threshold) == labels).mean())
        self.epoch_result = EpochResult(
            epoch=self.current_epoch + 1,
            train_loss=float(np.mean(self._train_losses)) if self._train_losses else float("nan"),
            val_loss=float(np.mean(self._val_losses)) if self._val_losses else None,
            val_dice=dice,
            val_dice_tuned=float(class_dice.mean()),
            val_class_dice_tuned=class_dice.tolist(),
            val_iou=iou,
            lr=self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan"),
            screening=screening_report(class_scores, labels, thresholds),
        )
        self._train_losses = []
        self.log("val_dice", dice, prog_bar=True)
        self.log("val_dice_tuned", self.epoch_result.val_dice_tuned, prog_bar=True)

    def on_train_epoch_start(self) -> None:
        # Dropout and friends draw from the global generator: seed it per epoch so that an epoch
        # replayed after a crash draws the same numbers as the first time.
        epoch_seed = self.config.train.seed * 100_003 + self.current_epoch
        torch.manual_seed(epoch_seed)
        self._mixup_generator = torch.Generator().manual_seed(epoch_seed)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.parameters(), self.config.train)
        scheduler = build_scheduler(optimizer, self.config.train.scheduler, self.trainer.estimated_stepping_batches)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}


def _at_size(logits: dict[str, torch.Tensor], size) -> dict[str, torch.Tensor]:
    """Pixel logits resized to the masks' size, for the reported validation loss only."""
    resized = {name: value.float() for name, value in logits.items()}
    if PIXELS in resized and resized[PIXELS].shape[-2:] != tuple(size):
        resized[PIXELS] = F.interpolate(resized[PIXELS], size=tuple(size), mode="bilinear", align_corners=False)
    return resized
