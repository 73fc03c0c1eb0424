"""The teacher's cache: float16 within float16 precision of the teacher's float32 outputs, each
chunk computed once (a killed run recomputes only what is missing, a damaged chunk is computed
again) and another teacher refused in one line. The teacher here is a planted numpy predictor
whose outputs are known exactly, with a count of the images it predicted."""

import numpy as np
import pytest

from steelseg.core.outputs import Outputs
from steelseg.files import synth
from steelseg.files.images import list_images, read_gray
from steelseg.inference.resume import ResumeError
from steelseg.inference.teacher_cache import cache_teacher

N, CHUNK = 10, 4  # chunks of 4, 4 and 2 images


class PlantedTeacher:
    """pixels[c] = (image / 255) ** (c + 1) * 0.999, scores = their max; ``fail_after`` images,
    it raises (a kill)."""

    num_classes, batch_size, has_masks = 4, 2, True

    def __init__(self, name="planted", fail_after=None):
        self.name, self.fail_after, self.predicted = name, fail_after, []

    def fingerprint(self) -> dict:
        return {"members": [self.name]}

    @staticmethod
    def outputs(image: np.ndarray) -> Outputs:
        gray = image.astype(np.float32) / 255
        pixels = np.stack([gray ** (c + 1) * np.float32(0.999) for c in range(4)])
        return Outputs(pixels, pixels.max(axis=(1, 2)))

    def iter_folder(self, folder, progress, *, paths):
        for path in paths:
            if self.fail_after is not None and len(self.predicted) >= self.fail_after:
                raise KeyboardInterrupt
            self.predicted.append(path.name)
            image = read_gray(path)
            yield path, image, self.outputs(image)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher-cache")
    synth.write_dataset(root, N, seed=4, height=32, width=64, progress=False)
    return list_images(root / "train_images")


def _cache(teacher, images, folder):
    return cache_teacher(teacher, images, folder, progress=False, log=lambda line: None, size=CHUNK)


def test_float16_targets_are_within_float16_precision_of_the_teachers_float32(images, tmp_path):
    targets = _cache(PlantedTeacher(), images, tmp_path / "cache")
    assert len(targets) == N
    for path in images:
        truth = PlantedTeacher.outputs(read_gray(path))
        got = targets.load(path.name)
        assert got.pixels.dtype == got.scores.dtype == np.float16
        # round to nearest: at most half a float16 step, eps/2 relative (above float16's tiny normals)
        tolerance = np.finfo(np.float16).eps / 2 * np.abs(truth.pixels) + 2.0**-25
        assert np.all(np.abs(got.pixels.astype(np.float32) - truth.pixels) <= tolerance)
        np.testing.assert_allclose(got.scores, truth.scores, rtol=np.finfo(np.float16).eps / 2, atol=0)
        assert np.abs(got.pixels.astype(np.float32) - truth.pixels).max() > 0  # it is float16, not a copy


def test_a_killed_run_computes_only_the_chunks_it_had_not_finished(images, tmp_path):
    killed = PlantedTeacher(fail_after=6)  # the first chunk (4 images) finished, the second did not
    with pytest.raises(KeyboardInterrupt):
        _cache(killed, images, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("chunk-*.npz"))) == 1
    again = PlantedTeacher()
    targets = _cache(again, images, tmp_path / "cache")
    assert again.predicted == [p.name for p in images[CHUNK:]]
    fresh = _cache(PlantedTeacher(), images, tmp_path / "fresh")
    for path in images:
        np.testing.assert_array_equal(targets.load(path.name).pixels, fresh.load(path.name).pixels)
    finished = PlantedTeacher()
    _cache(finished, images, tmp_path / "cache")
    assert finished.predicted == []  # nothing left to compute


def test_a_damaged_chunk_is_reported_and_computed_again(images, tmp_path):
    _cache(PlantedTeacher(), images, tmp_path / "cache")
    second = sorted((tmp_path / "cache").glob("chunk-000001-*.npz"))[0]
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0xFF
    second.write_bytes(bytes(data))
    lines, again = [], PlantedTeacher()
    targets = cache_teacher(again, images, tmp_path / "cache", progress=False, log=lines.append, size=CHUNK)
    assert again.predicted == [p.name for p in images[CHUNK : 2 * CHUNK]]
    assert any("fails its checksum" in line and second.name in line for line in lines)
    truth = PlantedTeacher.outputs(read_gray(images[5])).pixels
    np.testing.assert_allclose(targets.load(images[5].name).pixels, truth, atol=2.0**-11)


@pytest.mark.parametrize(
    "change", [pytest.param("teacher", id="another-teacher"), pytest.param("images", id="other-images")]
)
def test_another_teacher_or_image_list_is_refused_in_one_line(images, tmp_path, change):
    _cache(PlantedTeacher(), images, tmp_path / "cache")
    teacher = PlantedTeacher("another") if change == "teacher" else PlantedTeacher()
    with pytest.raises(ResumeError) as refused:
        _cache(teacher, images if change == "teacher" else images[:-1], tmp_path / "cache")
    message = str(refused.value)
    assert "\n" not in message and str(tmp_path / "cache") in message
    assert ("'members'" if change == "teacher" else "'images'") in message
    assert teacher.predicted == []
