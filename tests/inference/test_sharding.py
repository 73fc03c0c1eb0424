"""Sharded prediction: each process every world-size-th batch, rank 0 merges; the submission is a
single process's, byte for byte."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from steelseg.config import load_config
from steelseg.core.outputs import PIXELS
from steelseg.core.postprocess import PostProcess
from steelseg.files.annotations import read_annotations
from steelseg.inference import sharding
from steelseg.inference.ensemble import Member
from steelseg.inference.predictor import Predictor


class Brightness:
    """A network that answers each pixel's brightness for class a and its darkness for b."""

    name = "fake"

    def __call__(self, x):
        return {PIXELS: np.concatenate([x, 1 - x], axis=1)}

    def describe(self):
        return "fake"


@pytest.fixture
def seven_images(half_scale_run, tmp_path):
    """7 of the tiny run's images: with batch size 2, batches of 2, 2, 2 and 1."""
    _, data = half_scale_run
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((data / "train_images").iterdir())[:7]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.mark.parametrize(
    ("shard", "expected"),
    [
        ((0, 1), [0, 1, 2, 3, 4, 5, 6]),
        ((0, 2), [0, 1, 4, 5]),
        ((1, 2), [2, 3, 6]),
        ((2, 3), [4, 5]),
        ((3, 4), [6]),
        ((0, 5), [0, 1]),
    ],
)
def test_a_shard_is_every_world_size_th_batch(seven_images, shard, expected):
    config = load_config(None, ["data.class_names=[a, b]", "model.input_mean=0", "model.input_std=1"])
    predictor = Predictor(
        [Member("fake", config, Brightness(), [0, 1])], PostProcess.uniform(2, 0.5, 0), ["a", "b"], batch_size=2
    )
    names = sorted(p.name for p in seven_images.iterdir())
    candidates = predictor.candidates_folder(seven_images, progress=False, shard=shard)
    assert list(candidates) == [names[i] for i in expected]
    from steelseg.files.images import read_gray

    for name, candidate in candidates.items():
        brightness = read_gray(seven_images / name).astype(np.float64) / 255
        np.testing.assert_allclose(candidate.scores, [brightness.max(), 1 - brightness.min()], atol=1e-6)


def test_world_and_rank_device(monkeypatch):
    from steelseg import hardware

    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert sharding.world() is None and sharding.rank_device("auto") == "auto"
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert sharding.world() is None  # one process: not sharded
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert sharding.world() == (2, 3)
    monkeypatch.setattr(hardware, "cuda_available", lambda: True)
    assert sharding.rank_device("auto") == "cuda:1" and sharding.rank_device("cpu") == "cpu"
    monkeypatch.setattr(hardware, "cuda_available", lambda: False)
    assert sharding.rank_device("auto") == "cpu"


def test_two_processes_write_the_single_process_submission(half_scale_run, seven_images, tmp_path):
    run, _ = half_scale_run
    # The 1-epoch run's probabilities sit near 0.5: 0.51 gives some masks, not all.
    options = [
        "--backend",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        "2",
        "--post",
        "pixel_threshold=0.51",
        "--post",
        "min_area=0",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)

    def predict(prefix, name):
        out, scores = tmp_path / f"{name}.csv", tmp_path / f"{name}-scores.csv"
        command = prefix + [
            "-m",
            "steelseg",
            "predict",
            str(run),
            str(seven_images),
            "--out",
            str(out),
            "--scores",
            str(scores),
        ]
        result = subprocess.run(command + options, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return out, scores, result.stdout

    single, single_scores, _ = predict([sys.executable], "single")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    sharded, sharded_scores, said = predict(torchrun, "sharded")
    assert (
        "predicting with torch (fp32, cpu), 2 processes" in said and said.count("wrote 28 rows") == 1
    )  # rank 0 writes
    assert sharded.read_bytes() == single.read_bytes()
    assert sharded_scores.read_bytes() == single_scores.read_bytes()
    table = read_annotations(single)
    assert table.image_ids == sorted(p.name for p in seven_images.iterdir())  # the file order, not the shards'
    encoded = [table.get(i, c) for i in table.image_ids for c in range(1, 5)]
    assert any(encoded) and not all(encoded)  # masks to compare, and empty ones too


def test_candidates_travel_between_ranks_as_arrays_not_pickles():
    """What a rank sends is an .npz of plain arrays and JSON: read back bit for bit, and a payload
    holding a pickled object is refused instead of unpickled."""
    import io

    from steelseg.inference.candidates import Candidate, CandidateCodec

    codec = CandidateCodec(num_classes=2, heads=True, embedding=False)
    rng = np.random.default_rng(0)
    mine = {
        f"{i}.jpg": Candidate(["1 3 10 2", ""], rng.random(2, np.float32), rng.random(2, np.float32), rng.random(2))
        for i in range(3)
    }
    data = sharding._pack(codec.encode(mine), {"bad.jpg": "cannot read image"})
    back, skipped = sharding._unpack(codec, data)
    assert skipped == {"bad.jpg": "cannot read image"} and list(back) == list(mine)
    for name, candidate in mine.items():
        assert back[name].encoded == candidate.encoded
        np.testing.assert_array_equal(back[name].heads, candidate.heads)
        np.testing.assert_array_equal(back[name].scores, candidate.scores)
    empty, _ = sharding._unpack(codec, sharding._pack(codec.encode({}), {}))
    assert empty == {}
    planted = io.BytesIO()
    np.savez(planted, image_ids=np.array([object()], dtype=object), skipped=np.frombuffer(b"{}", np.uint8))
    with pytest.raises(ValueError, match="allow_pickle"):
        sharding._unpack(codec, planted.getvalue())
