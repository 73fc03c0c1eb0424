"""The planning probe: real batches from training's own loaders, or random ones; the memory of
a sample grows with its pixels as activations do."""

from __future__ import annotations

import pytest

from steelseg.config import load_config
from steelseg.files.datasets import open_dataset
from steelseg.pipeline.plan import MemberPlan
from steelseg.training.probe import probe
from tiny_runs import TINY_SETTINGS


@pytest.fixture(scope="module")
def tiny_config():
    config = load_config("default", MemberPlan(name="p", settings=TINY_SETTINGS, minutes=1).overrides())
    data = config.data.model_copy(update={"class_names": ["pits", "crazing", "scratches", "blotches"]})
    return config.model_copy(update={"data": data})


def test_a_probe_on_real_batches_times_training_and_validation(tiny_config, tiny_data):
    result = probe(tiny_config, (32, 64), (128, 512), 2, "cpu", dataset=open_dataset(tiny_data))
    assert result.train_seconds_per_image > 0 and result.predict_seconds_per_image > 0
    assert result.bytes_per_sample > 0 and result.batch_size == 2


def test_a_samples_memory_grows_with_its_pixels(tiny_config):
    small = probe(tiny_config, (32, 64), (64, 64), 2, "cpu", steps=1)
    large = probe(tiny_config, (64, 128), (64, 64), 2, "cpu", steps=1)
    assert 3.5 < large.bytes_per_sample / small.bytes_per_sample < 4.5  # 4x the pixels, 4x the activations


def test_a_per_class_model_is_probed_on_its_own_class_masks(tiny_config, tiny_data):
    # the 10th place trains one network per class (data.classes): one output channel, whose
    # masks must be its class's alone, as training selects them
    data = tiny_config.data.model_copy(update={"classes": [2]})
    config = tiny_config.model_copy(update={"data": data})
    result = probe(config, (32, 64), (128, 512), 2, "cpu", steps=1, dataset=open_dataset(tiny_data))
    assert result.train_seconds_per_image > 0
