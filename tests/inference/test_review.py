"""``predict --review N --review-out DIR`` on the tiny run, end to end: the folder's COCO file and
LabelMe files go back through the existing importers (``files.importers``, what ``steelseg
convert`` runs) to the very masks of the submission, one class at a time and as the label maps
``convert`` writes; a polygon shifted by one pixel fails that comparison. The images chosen
are the most uncertain by the formula of ``core.uncertainty``, recomputed here from the
Predictor's outputs; a resumed prediction writes the same folder; images --skip-bad left out
are not reviewed; user mistakes are one line.

Measured tolerance of the round trip: none. Both the COCO RLE and the LabelMe polygons give
back every predicted pixel (0 pixels differ, IoU 1.0 for every mask, holes and components on
the image border included), so the comparisons below are exact.
"""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from steelseg.commands.cli import main
from steelseg.files.annotations import read_annotations
from steelseg.files.images import list_images, read_gray
from steelseg.files.importers import convert
from steelseg.files.importers.coco import read_coco
from steelseg.files.importers.labelme import read_labelme
from steelseg.inference import resume
from steelseg.inference.predictor import Predictor
from steelseg.inference.review import Review

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")  # pycocotools
SHAPE = (64, 320)  # the tiny run's strips
COUNT = 4


def _thresholds(run, images) -> list[float]:
    """Per class, a pixel threshold that cuts the run's probabilities into masks with edges,
    holes and several components (a one-epoch network sits near 0.5 everywhere)."""
    predictor = Predictor.load([run], backend="torch", device="cpu")
    pixels = predictor.predict_outputs(np.stack([read_gray(p) for p in list_images(images)[:2]])).pixels
    return np.quantile(pixels, 0.85, axis=(0, 2, 3)).round(5).tolist()


@pytest.fixture(scope="module")
def options(half_scale_run):
    run, data = half_scale_run
    post = f"pixel_threshold=[{','.join(map(str, _thresholds(run, data / 'train_images')))}]"
    return ["--backend", "torch", "--device", "cpu", "--batch-size", "2", "--quiet", "--post", post]


def _predict(run, images, out, review, options, *more) -> int:
    command = ["predict", str(run), str(images), "--out", str(out), "--review", str(COUNT)]
    return main([*command, "--review-out", str(review), *options, "--post", "min_area=0", *more])


@pytest.fixture(scope="module")
def reviewed(half_scale_run, options, tmp_path_factory):
    """(review folder, submission, class names)."""
    run, data = half_scale_run
    tmp = tmp_path_factory.mktemp("review")
    assert _predict(run, data / "train_images", tmp / "sub.csv", tmp / "review", options) == 0
    names = json.loads((data / "classes.json").read_text())["class_names"]
    return tmp / "review", read_annotations(tmp / "sub.csv"), names


def _predicted(submission, folder, names) -> dict[str, np.ndarray]:
    """The submission's (C, H, W) masks of the reviewed images."""
    chosen = [p.name for p in (folder / "images").iterdir() if p.suffix == ".jpg"]
    assert len(chosen) == COUNT
    return {image_id: submission.masks(image_id, len(names), SHAPE) for image_id in chosen}


def _imported(reader, source, images, names) -> dict[str, np.ndarray]:
    """Each image's label map from the importer, in the model's class ids."""
    imported = reader(source, images)
    to_model = np.array([0] + [names.index(name) + 1 for name in imported.class_names], np.uint8)
    return {sample.name: to_model[sample.labels(SHAPE)] for sample in imported.samples}


def _one_class_at_a_time(reader, write_filtered, folder, names, tmp_path) -> dict[str, np.ndarray]:
    """(C, H, W) masks per image: the importer run on the files cut down to one class each, so
    that a class hidden under another where they overlap is compared too."""
    masks: dict[str, np.ndarray] = {}
    for class_id, name in enumerate(names, start=1):
        source = write_filtered(folder, name, class_id, tmp_path / name)
        for image_id, labels in _imported(reader, source, folder / "images", names).items():
            masks.setdefault(image_id, np.zeros((len(names), *SHAPE), bool))[class_id - 1] = labels == class_id
    return masks


def _coco_of_one_class(folder, name, class_id, tmp):
    document = json.loads((folder / "annotations.json").read_text())
    document["annotations"] = [a for a in document["annotations"] if a["category_id"] == class_id]
    tmp.mkdir()
    (tmp / "annotations.json").write_text(json.dumps(document))
    return tmp / "annotations.json"


def _labelme_of_one_class(folder, name, class_id, tmp, shift=0):
    tmp.mkdir()
    for path in (folder / "images").glob("*.json"):
        document = json.loads(path.read_text())
        document["shapes"] = [s for s in document["shapes"] if s["label"] == name]
        for shape in document["shapes"]:
            shape["points"] = [[x + shift, y] for x, y in shape["points"]]
        (tmp / path.name).write_text(json.dumps(document))
    return tmp


def _differing(predicted, imported) -> int:
    assert imported.keys() == predicted.keys()
    return sum(int((imported[i] != predicted[i]).sum()) for i in predicted)


def test_the_masks_are_worth_a_round_trip(reviewed):
    folder, submission, names = reviewed
    masks = np.stack(list(_predicted(submission, folder, names).values()))
    assert 0.05 < masks.mean() < 0.5 and (masks.sum(axis=1) > 1).any()  # edges, and classes that overlap
    assert sum(len(json.loads(p.read_text())["shapes"]) for p in (folder / "images").glob("*.json")) > 20


def test_the_coco_file_imports_back_to_exactly_the_predicted_masks(reviewed, tmp_path):
    pytest.importorskip("pycocotools")  # what the COCO importer rasterises with
    folder, submission, names = reviewed
    predicted = _predicted(submission, folder, names)
    assert _differing(predicted, _one_class_at_a_time(read_coco, _coco_of_one_class, folder, names, tmp_path)) == 0
    # the whole file, as `steelseg convert DIR` writes it: the model's class ids
    assert convert(folder, tmp_path / "converted").format == "coco"
    expected = {i: _label_map(m, range(1, len(names) + 1)) for i, m in predicted.items()}
    assert _differing(expected, _converted(tmp_path / "converted", names)) == 0


def _label_map(masks, class_ids) -> np.ndarray:
    """The label map an importer paints: where classes overlap, the higher id wins."""
    return np.max(masks * np.array(list(class_ids), np.uint8)[:, None, None], axis=0)


def _converted(out, names) -> dict[str, np.ndarray]:
    """The label maps of a mask folder by image id, in its own class ids (checked against its
    classes.json: the model's order for COCO, alphabetical for LabelMe)."""
    assert json.loads((out / "classes.json").read_text())["class_names"] in (names, sorted(names))
    return {p.name: np.asarray(Image.open(out / "masks" / f"{p.stem}.png")) for p in (out / "images").iterdir()}


def test_the_labelme_files_import_back_to_exactly_the_predicted_masks(reviewed, tmp_path):
    folder, submission, names = reviewed
    predicted = _predicted(submission, folder, names)
    assert (
        _differing(predicted, _one_class_at_a_time(read_labelme, _labelme_of_one_class, folder, names, tmp_path)) == 0
    )
    # the whole folder, as `steelseg convert DIR/images` writes it: LabelMe numbers the labels
    # alphabetically, so where classes overlap the later name wins
    assert convert(folder / "images", tmp_path / "converted").format == "labelme"
    assert json.loads((tmp_path / "converted" / "classes.json").read_text())["class_names"] == sorted(names)
    expected = {i: _label_map(m, [sorted(names).index(name) + 1 for name in names]) for i, m in predicted.items()}
    assert _differing(expected, _converted(tmp_path / "converted", names)) == 0


def test_a_polygon_shifted_by_one_pixel_fails_the_comparison(reviewed, tmp_path):
    folder, submission, names = reviewed
    predicted = _predicted(submission, folder, names)

    def shifted(folder, name, class_id, tmp):
        return _labelme_of_one_class(folder, name, class_id, tmp, shift=1)

    assert _differing(predicted, _one_class_at_a_time(read_labelme, shifted, folder, names, tmp_path)) > 100


def _uncertainty_by_hand(predictor, images) -> dict[str, tuple[float, int]]:
    """core.uncertainty's docstring, written out: (uncertainty, its class id) per image."""
    threshold, pixel_threshold = predictor.presence_threshold, predictor.postprocess.pixel_threshold
    found = {}
    for path, _, outputs in predictor.iter_folder(images, False):
        class_doubt = 1 - np.abs(outputs.scores - threshold) / np.maximum(threshold, 1 - threshold)
        offset = outputs.pixels - pixel_threshold[:, None, None]
        near, sure = (np.abs(offset) <= 0.1).sum(axis=(1, 2)), (offset > 0.1).sum(axis=(1, 2))
        doubt = (np.clip(class_doubt, 0, 1) + near / (near + sure + 100)) / 2
        found[path.name] = (float(doubt.max()), int(doubt.argmax()) + 1)
    return found


def test_the_review_holds_the_most_uncertain_images_highest_first(half_scale_run, options, reviewed):
    run, data = half_scale_run
    folder, _, names = reviewed
    post = [options[i + 1] for i, option in enumerate(options) if option == "--post"] + ["min_area=0"]
    predictor = Predictor.load([run], backend="torch", device="cpu", batch_size=2, overrides=post)
    by_hand = _uncertainty_by_hand(predictor, data / "train_images")
    ranked = sorted(by_hand, key=lambda image_id: (-by_hand[image_id][0], image_id))[:COUNT]
    rows = [line.split(",", 9) for line in (folder / "review.csv").read_text().splitlines()[1:]]
    assert [row[1] for row in rows] == ranked
    for row in rows:
        uncertainty, class_id = by_hand[row[1]]
        assert float(row[2]) == pytest.approx(uncertainty, abs=1e-4) and int(row[3]) == class_id
        assert row[4] == names[class_id - 1] and row[9].startswith(f"class {class_id} ({row[4]}): score ")


def test_a_resumed_prediction_writes_the_same_review(half_scale_run, options, reviewed, tmp_path, monkeypatch):
    run, data = half_scale_run
    folder, _, _ = reviewed
    save, saved = resume.WorkFolder._save, []

    def save_then_stop(self, *args, **kwargs):
        save(self, *args, **kwargs)
        saved.append(1)
        if len(saved) == 2:
            raise KeyboardInterrupt  # a Ctrl-C after two part files (4 of the 10 images)

    with monkeypatch.context() as patch:
        patch.setattr(resume.WorkFolder, "_save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            _predict(
                run, data / "train_images", tmp_path / "sub.csv", tmp_path / "review", options, "--chunk-size", "2"
            )
    assert not (tmp_path / "review").exists() and resume.parts_folder(tmp_path / "sub.csv").is_dir()
    resumed = _predict(
        run, data / "train_images", tmp_path / "sub.csv", tmp_path / "review", options, "--chunk-size", "2"
    )
    assert resumed == 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        assert (tmp_path / "review" / path.relative_to(folder)).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--review", "2"], "--review N needs --review-out DIR"),
        (["--review-out", "{tmp}/review"], "--review-out needs --review N"),
        (["--review", "2", "--review-out", "{tmp}/full"], "--review-out {tmp}/full is not empty"),
    ],
    ids=["review without its folder", "folder without review", "a folder not empty"],
)
def test_user_mistakes_are_one_line_before_any_image_is_predicted(half_scale_run, tmp_path, capsys, arguments, message):
    run, data = half_scale_run
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("")
    arguments = [a.format(tmp=tmp_path) for a in arguments]
    assert main(["predict", str(run), str(data / "train_images"), "--out", str(tmp_path / "sub.csv"), *arguments]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"steelseg predict: error: {message.format(tmp=tmp_path)}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no submission, no progress, no review


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_the_count_must_be_a_positive_integer(half_scale_run, tmp_path, capsys, count):
    run, data = half_scale_run
    with pytest.raises(SystemExit) as exited:
        main(["predict", str(run), str(data / "train_images"), "--out", str(tmp_path / "s.csv"), "--review", count])
    assert exited.value.code == 2 and "argument --review" in capsys.readouterr().err


def test_skipped_images_are_not_reviewed_and_a_count_above_the_images_takes_them_all(
    half_scale_run, options, tmp_path, capsys
):
    run, data = half_scale_run
    images = shutil.copytree(data / "train_images", tmp_path / "images")
    (images / "zz_bad.jpg").write_bytes(b"not an image")
    command = ["predict", str(run), str(images), "--out", str(tmp_path / "sub.csv"), "--review", "50"]
    assert main([*command, "--review-out", str(tmp_path / "review"), *options, "--skip-bad"]) == 0
    rows = (tmp_path / "review" / "review.csv").read_text().splitlines()[1:]
    assert sorted(row.split(",")[1] for row in rows) == sorted(p.name for p in list_images(data / "train_images"))
    assert "wrote the 10 images the model is least sure of (all there are; --review asked for 50)" in (
        capsys.readouterr().out
    )


def test_a_review_needs_at_least_one_image(tmp_path):
    with pytest.raises(ValueError, match="at least one image, got 0"):
        Review(None, 0, tmp_path / "review")
