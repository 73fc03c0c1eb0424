"""The LightningModule: the plain network plus loss, optimiser and validation scoring."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from steelseg.config import Config
from steelseg.metrics import DiceAccumulator
from steelseg.model import build_model
from steelseg.postprocess import PostProcess
from steelseg.preprocess import upsample_probs
from steelseg.rundir import EpochResult
from steelseg.training.losses import build_loss
from steelseg.training.mixup import mixup_batch
from steelseg.training.optim import build_optimizer, build_scheduler
from steelseg.tune import PostprocessSearch
from steelseg.weights import load_weights


class SegmentationModule(L.LightningModule):
    """Validation scores full images with the competition metric, twice: with the configured
    post-processing and with the best one found on this epoch's predictions. After each
    validation, ``epoch_result`` holds both and ``tuned_postprocess`` the tuned one.

    Validation computes probabilities exactly as the Predictor does: the network's
    ``activation(logits)`` at its resolution, then ``upsample_probs`` to the image's size, so
    the thresholds tuned here are applied to the same numbers at prediction."""

    def __init__(self, config: Config):
        super().__init__()
        if not config.data.class_names:
            raise ValueError("resolve the dataset's class names before building the module")
        self.config = config
        self.class_names = config.output_class_names
        self.num_classes = num_classes = len(self.class_names)
        self.model = build_model(config.model, num_classes)
        if config.model.init_from:  # a previous stage or run: every layer, not just the encoder
            load_weights(config.model.init_from, self.model)
        self.memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.loss = build_loss(config.train.loss, num_classes, config.model.head)
        post = config.postprocess
        self.default_postprocess = PostProcess.uniform(num_classes, post.pixel_threshold, post.min_area)
        self.epoch_result: EpochResult | None = None
        self.tuned_postprocess: PostProcess | None = None
        self._train_losses: list[float] = []

    def training_step(self, batch, batch_index):
        x, y = batch
        if self.config.train.mixup_alpha:
            x, y = mixup_batch(x, y, self.config.train.mixup_alpha, self._mixup_generator)
        logits = self.model.logits(x.contiguous(memory_format=self.memory_format))
        loss = self.loss(logits.float(), y)  # losses in fp32 whatever the autocast dtype
        self.log("loss", loss, prog_bar=True)
        self._train_losses.append(loss.item())
        return loss

    def on_validation_epoch_start(self) -> None:
        self._scores = DiceAccumulator(self.num_classes)
        post = self.config.postprocess
        self._search = PostprocessSearch(self.num_classes, post.threshold_grid, post.min_area_grid)
        self._val_losses: list[float] = []

    def validation_step(self, batch, batch_index):
        x, y = batch  # whole images of one size (validation batches are grouped by size)
        logits = self.model.logits(x.contiguous(memory_format=self.memory_format))
        net_probs = self.model.activation(logits).float().cpu().numpy()
        probs = upsample_probs(net_probs, y.shape[-2:])
        # The loss is only reported: it compares logits resized to the masks' size.
        full_logits = logits.float()
        if full_logits.shape[-2:] != y.shape[-2:]:
            full_logits = F.interpolate(full_logits, size=y.shape[-2:], mode="bilinear", align_corners=False)
        self._val_losses.append(self.loss(full_logits, y).item())
        truths = y.cpu().numpy().astype(bool)
        for p, t in zip(probs, truths):
            self._scores.update(self.default_postprocess(p), t)
            self._search.update(p, t)

    def on_validation_epoch_end(self) -> None:
        scores = self._scores.result()
        tuned, tuned_class_dice = self._search.best()
        self.tuned_postprocess = tuned
        self.epoch_result = EpochResult(
            epoch=self.current_epoch + 1,
            train_loss=float(np.mean(self._train_losses)) if self._train_losses else float("nan"),
            val_loss=float(np.mean(self._val_losses)),
            val_dice=scores.mean_dice,
            val_dice_tuned=float(tuned_class_dice.mean()),
            val_class_dice_tuned=tuned_class_dice.tolist(),
            val_iou=scores.mean_iou,
            lr=self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else float("nan"),
        )
        self._train_losses = []
        self.log("val_dice", scores.mean_dice, prog_bar=True)
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
