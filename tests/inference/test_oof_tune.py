"""``steelseg tune`` end to end on hand-made run directories: a config.yaml and an oof.npz
written as ``training.oof.save_oof`` writes it, with planted probabilities; no training."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from steelseg.config import load_config
from steelseg.core.postprocess import PostProcess
from steelseg.files import rundir
from steelseg.inference.ensemble import scale_logits
from steelseg.inference.sources import read_ensemble_file, resolve
from steelseg.inference.tune import Entry, OofMember, TuneError, _load_members, fit_temperature, tune

CLASSES = ["pits", "scratches"]
GRIDS = {"head_grid": (), "peak_grid": (), "progress": False}  # segmentation members: no heads


def make_run(
    path: Path, ids, probs: np.ndarray, masks: np.ndarray, scale: int = 1, overrides=(), scores=None, tta=None
) -> Path:
    """A run directory: config.yaml and oof.npz holding ``probs`` (N, C, h, w) of images
    ``scale`` times larger on each side, and class scores (N, C) (default: the max pixel);
    ``tta``: the views it records (None: a file from before they were recorded)."""
    config = load_config(None, [f"data.class_names={json.dumps(CLASSES)}", *overrides])
    path.mkdir(parents=True)
    rundir.save_config(path, config)
    n, _, h, w = probs.shape
    np.savez(
        path / rundir.OOF,
        image_ids=np.array(ids, dtype=str),
        scores=(probs.reshape(n, len(CLASSES), -1).max(axis=2) if scores is None else scores).astype(np.float32),
        labels=masks.any(axis=(2, 3)),
        image_shapes=np.array([(h * scale, w * scale)] * n, dtype=np.int64),
        backend=np.array("test"),
        probs=probs.astype(np.float16),
        masks=masks,
        shapes=np.array([(h, w)] * n, dtype=np.int64),
        **({} if tta is None else {"tta": np.array(tta)}),
    )
    return path


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * (pred & truth).sum() / total


def direct_dice(post: PostProcess, probs: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(C,) mean Dice of ``post`` applied image by image, by hand."""
    return np.array([[dice(p, t) for p, t in zip(post(image), truth)] for image, truth in zip(probs, masks)]).mean(
        axis=0
    )


def planted(rng) -> tuple[list[str], np.ndarray, np.ndarray]:
    """4 images of 16 x 32 at full scale. Class 1: a true 16-pixel defect at 0.9 (image 0),
    4 false pixels at 0.55 (image 1). Class 2: a true 16-pixel defect at 0.45 (image 2).
    The config's post-processing (pixel >= 0.5, no min area) scores 3/4 on each class (image 1
    of class 1 predicted, image 2 of class 2 missed); a pixel threshold of 0.6 for class 1 and
    0.4-0.45 for class 2 scores 1."""
    probs = rng.uniform(0.0, 0.2, (4, 2, 16, 32))
    masks = np.zeros(probs.shape, bool)
    probs[0, 0, 2:6, 2:6], masks[0, 0, 2:6, 2:6] = 0.9, True
    probs[1, 0, 8:10, 20:22] = 0.55
    probs[2, 1, 4:8, 10:14], masks[2, 1, 4:8, 10:14] = 0.45, True
    return ["a.jpg", "b.jpg", "c.jpg", "d.jpg"], probs, masks


def report_rows(report: str) -> dict[str, list[float]]:
    rows = {}
    for line in report.splitlines():
        words = line.split()
        if words and words[0] in ("before", "after"):
            rows[words[0]] = [float(w) for w in words[1:]]
    return rows


def test_a_cv_folder_is_one_member_and_tuning_beats_the_config(tmp_path):
    ids, probs, masks = planted(np.random.default_rng(0))
    folder = tmp_path / "cv"
    make_run(folder / "fold-0", ids[:2], probs[:2], masks[:2])  # disjoint halves
    make_run(folder / "fold-1", ids[2:], probs[2:], masks[2:])
    members = _load_members(resolve([folder]).networks, {0: 0, 1: 1}, 2)
    assert len(members) == 1 and sorted(members[0].entries) == ids

    result = tune([folder], **GRIDS)
    assert (result.images, result.skipped, result.temperatures) == (4, 0, [])
    np.testing.assert_array_equal(result.before, [0.75, 0.75])  # by hand: see planted()
    np.testing.assert_array_equal(result.after, [1.0, 1.0])
    assert result.written == [folder / rundir.POSTPROCESS]
    assert not (folder / "ensemble.yaml").exists()

    written = PostProcess.from_json((folder / rundir.POSTPROCESS).read_text(), 2)
    assert written.pixel_threshold[0] == 0.85  # ties: the most cautious of 0.6 ... 0.85, all perfect
    assert 0.2 <= written.pixel_threshold[1] <= 0.45
    # "after" is what the written file does to the stored probabilities, computed by hand
    np.testing.assert_allclose(direct_dice(written, probs.astype(np.float16).astype(np.float32), masks), result.after)
    assert report_rows(result.report()) == {"before": [0.75, 0.75, 0.75], "after": [1.0, 1.0, 1.0]}
    assert f"wrote {folder / rundir.POSTPROCESS}" in result.report()


def test_after_is_never_below_before_on_noisy_members(tmp_path):
    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 1, (6, 2, 12, 20)) ** 3  # mostly low, scattered high pixels
    masks = rng.random(probs.shape) < probs
    run = make_run(tmp_path / "run", [f"{i}.jpg" for i in range(6)], probs, masks)
    result = tune([run], **GRIDS)
    assert (result.after >= result.before - 1e-12).all()
    written = PostProcess.from_json((run / rundir.POSTPROCESS).read_text(), 2)
    np.testing.assert_allclose(direct_dice(written, probs.astype(np.float16).astype(np.float32), masks), result.after)
    rows = report_rows(result.report())
    assert rows["after"] == pytest.approx([result.after.mean(), *result.after], abs=5e-5)


def _calibrated(rng, n=12, shape=(16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and truth drawn from them: calibrated by construction."""
    probs = rng.uniform(0.02, 0.98, (n, 2, *shape)).astype(np.float32)
    return probs, rng.random(probs.shape) < probs


@pytest.mark.parametrize(
    "temperature", [0.5, 1.0, 2.0, 3.0], ids=["under-confident", "calibrated", "over", "very-over"]
)
def test_fit_temperature_recovers_the_planted_one(temperature):
    probs, truth = _calibrated(np.random.default_rng(2))
    # sigmoid(logit(p) * T): what a temperature T brings back to calibrated
    stored = scale_logits(probs, 1 / temperature).astype(np.float16).astype(np.float32)
    entries = {str(i): Entry(stored[i], None, truth[i], truth[i].any(axis=(1, 2)), 1.0) for i in range(len(probs))}
    member = OofMember("m", 1.0, entries)
    assert fit_temperature(member, [str(i) for i in range(len(probs))]) == pytest.approx(temperature, rel=0.12)


def test_fit_temperature_of_a_classifier_uses_its_class_scores():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0.02, 0.98, (3000, 2)).astype(np.float32)
    labels = rng.random(scores.shape) < scores
    sharp = scale_logits(scores, 1 / 2.0)
    member = OofMember("c", 1.0, {str(i): Entry(None, sharp[i], None, labels[i], 1.0) for i in range(len(scores))})
    assert fit_temperature(member, [str(i) for i in range(len(scores))]) == 2.0


def test_two_members_get_their_temperatures_and_an_ensemble_file(tmp_path):
    rng = np.random.default_rng(4)
    probs, truth = _calibrated(rng)
    ids = [f"{i}.jpg" for i in range(len(probs))]
    good = make_run(tmp_path / "good", ids, probs, truth)
    sharp = make_run(tmp_path / "sharp", ids, scale_logits(probs, 0.5), truth)  # over-confident: T = 2
    out = tmp_path / "ensemble"
    result = tune([good, sharp], out=out, **GRIDS)
    (_, t_good), (_, t_sharp) = result.temperatures
    assert t_good == pytest.approx(1.0, rel=0.12) and t_sharp == 2.0
    assert result.written == [out / rundir.POSTPROCESS, out / "ensemble.yaml"]

    specs, post_path, clusters = read_ensemble_file(out / "ensemble.yaml")  # no Predictor
    assert [Path(s.run) for s in specs] == [good.resolve(), sharp.resolve()]
    assert [s.temperature for s in specs] == [t_good, 2.0] and [s.weight for s in specs] == [1.0, 1.0]
    assert post_path == out / rundir.POSTPROCESS and clusters is None
    PostProcess.from_json(post_path.read_text(), 2)
    assert len(resolve([out / "ensemble.yaml"]).networks) == 2
    # the members combined as predict combines them: each through its temperature, averaged
    stored_good, stored_sharp = probs.astype(np.float16), scale_logits(probs, 0.5).astype(np.float16)
    combined = (scale_logits(stored_good, t_good) + scale_logits(stored_sharp, 2.0)) / 2
    written = PostProcess.from_json(post_path.read_text(), 2)
    np.testing.assert_allclose(direct_dice(written, combined, truth), result.after, atol=1e-12)


def test_the_ensemble_file_predicts_with_the_views_its_members_were_tuned_on(tmp_path):
    """Out-of-fold files made with flip TTA (``train.oof_tta``) tune thresholds for TTA-averaged
    probabilities: the ensemble file says so, or predict would threshold other numbers. An
    entry's own TTA and files without a record are left as they are."""
    ids, probs, masks = planted(np.random.default_rng(7))
    make_run(tmp_path / "cv" / "fold-0", ids[:2], probs[:2], masks[:2], tta="both")
    make_run(tmp_path / "cv" / "fold-1", ids[2:], probs[2:], masks[2:], tta="both")
    make_run(tmp_path / "old", ids, probs, masks)  # no record: predicted as before
    make_run(tmp_path / "own", ids, probs, masks, tta="both")
    (tmp_path / "in.yaml").write_text("members:\n  - run: own\n    tta: hflip\n")
    tune([tmp_path / "cv", tmp_path / "old", tmp_path / "in.yaml"], out=tmp_path / "out", **GRIDS)
    members = yaml.safe_load((tmp_path / "out" / "ensemble.yaml").read_text())["members"]
    assert [m.get("tta") for m in members] == ["both", None, "hflip"]
    specs = [n.spec.tta for n in resolve([tmp_path / "out" / "ensemble.yaml"]).networks]
    assert specs == ["both", "both", "none", "hflip"]


def test_one_source_tuned_on_tta_files_says_which_tta_to_predict_with(tmp_path):
    ids, probs, masks = planted(np.random.default_rng(8))
    run = make_run(tmp_path / "run", ids, probs, masks, tta="both")
    assert "made with TTA both: predict with the same --tta" in tune([run], **GRIDS).report()
    plain = make_run(tmp_path / "plain", ids, probs, masks, tta="none")
    assert "--tta" not in tune([plain], **GRIDS).report()


def test_a_cv_folder_and_a_run_make_two_members(tmp_path):
    ids, probs, masks = planted(np.random.default_rng(5))
    make_run(tmp_path / "cv" / "fold-0", ids[:2], probs[:2], masks[:2])
    make_run(tmp_path / "cv" / "fold-1", ids[2:], probs[2:], masks[2:])
    make_run(tmp_path / "run", ids, probs, masks)
    result = tune([tmp_path / "cv", tmp_path / "run"], out=tmp_path / "out", **GRIDS)
    assert result.images == 4 and len(result.temperatures) == 2
    document = yaml.safe_load((tmp_path / "out" / "ensemble.yaml").read_text())
    assert [m["run"] for m in document["members"]] == [
        str((tmp_path / "cv").resolve()),
        str((tmp_path / "run").resolve()),
    ]
    networks = resolve([tmp_path / "out" / "ensemble.yaml"]).networks
    assert [n.run_dir.resolve() for n in networks] == [
        (tmp_path / p).resolve() for p in ("cv/fold-0", "cv/fold-1", "run")
    ]
    assert [n.member for n in networks] == [0, 0, 1]


def test_an_ensemble_files_temperature_is_used_when_not_fitted(tmp_path):
    """A member's temperature from the ensemble file applies to its out-of-fold probabilities as
    it does at prediction: thresholds are tuned on the numbers predict will threshold."""
    probs = np.full((2, 2, 8, 16), 0.05)
    masks = np.zeros(probs.shape, bool)
    probs[0, 0, 2:6, 2:6], masks[0, 0, 2:6, 2:6] = 0.7, True  # at T = 2: 0.604
    probs[1, 0, 2:6, 2:6] = 0.55  # false, at T = 2: 0.525
    make_run(tmp_path / "run", ["a.jpg", "b.jpg"], probs, masks)
    (tmp_path / "ensemble.yaml").write_text("members:\n  - run: run\n    temperature: 2.0\n")
    result = tune([tmp_path / "ensemble.yaml"], **GRIDS)
    written = PostProcess.from_json((tmp_path / rundir.POSTPROCESS).read_text(), 2)
    assert 0.55 <= written.pixel_threshold[0] <= 0.6  # between 0.525 and 0.604
    predicted = scale_logits(probs.astype(np.float16), 2.0)
    np.testing.assert_allclose(direct_dice(written, predicted, masks), result.after)
    assert result.after[0] == 1.0


def test_a_fitted_temperature_replaces_the_ensemble_files(tmp_path):
    rng = np.random.default_rng(6)
    probs, truth = _calibrated(rng)
    ids = [f"{i}.jpg" for i in range(len(probs))]
    make_run(tmp_path / "good", ids, probs, truth)
    make_run(tmp_path / "sharp", ids, scale_logits(probs, 0.5), truth)
    (tmp_path / "in.yaml").write_text("members:\n  - run: good\n    temperature: 3.0\n  - run: sharp\n")
    tune([tmp_path / "in.yaml"], out=tmp_path / "out", **GRIDS)
    specs, _, _ = read_ensemble_file(tmp_path / "out" / "ensemble.yaml")
    assert specs[0].temperature == pytest.approx(1.0, rel=0.12) and specs[1].temperature == 2.0


@pytest.mark.parametrize(
    "quantile, expected",
    [
        pytest.param(0.1, 56, id="between-sizes"),  # 40 + 0.4 * (80 - 40)
        pytest.param(0.25, 80, id="on-a-size"),
        pytest.param(0.0, 40, id="smallest"),
    ],
)
def test_min_area_quantile_of_true_sizes_in_full_size_pixels(tmp_path, quantile, expected):
    """Stored at half scale: true masks of 10, 20, 30, 40, 50 stored pixels are 40 ... 200 full-size."""
    probs = np.full((6, 2, 16, 32), 0.05)
    masks = np.zeros(probs.shape, bool)
    for i, (h, w) in enumerate([(2, 5), (4, 5), (5, 6), (5, 8), (5, 10)]):
        probs[i, 0, 1 : 1 + h, 1 : 1 + w], masks[i, 0, 1 : 1 + h, 1 : 1 + w] = 0.9, True
    probs[5, 0, 10:14, 20:22] = 0.9  # 8 false stored pixels (32 full-size): under every quantile here
    run = make_run(tmp_path / "run", [f"{i}.jpg" for i in range(6)], probs, masks, scale=2)
    result = tune([run], min_area_quantile=quantile, **GRIDS)
    assert result.postprocess.min_area.tolist() == [expected, 0]  # class 2 has no true mask: 0
    # the written post-processing at full size (every stored pixel a 2 x 2 block) scores "after"
    written = PostProcess.from_json((run / rundir.POSTPROCESS).read_text(), 2)
    full = np.kron(probs.astype(np.float16).astype(np.float32), np.ones((1, 1, 2, 2), np.float32))
    np.testing.assert_allclose(direct_dice(written, full, np.kron(masks, np.ones((1, 1, 2, 2), bool))), result.after)
    assert result.after[0] == pytest.approx(1.0 if expected <= 40 else 5 / 6)  # the 40-pixel mask under min_area


def test_a_two_headed_members_class_head_is_tuned_as_a_head_gate(tmp_path):
    """Class 1: the same 16-pixel blob at 0.9 on every image, true on 2 of 4; the class head
    (0.95 on the true ones, 0.2 on the others) is all that separates them. The config's
    post-processing gates nothing: 2/4. Every head threshold of the grid separates: the most
    cautious, 0.9, is chosen."""
    probs = np.full((4, 2, 8, 16), 0.05)
    masks = np.zeros(probs.shape, bool)
    probs[:, 0, 2:6, 2:6] = 0.9
    masks[:2, 0, 2:6, 2:6] = True
    heads = np.array([[0.95, 0.1], [0.95, 0.1], [0.2, 0.1], [0.2, 0.1]])
    run = make_run(tmp_path / "run", list("abcd"), probs, masks, overrides=["model.task=two_head"], scores=heads)
    result = tune([run], head_grid=(0.3, 0.6, 0.9), peak_grid=(), progress=False)
    written = PostProcess.from_json((run / rundir.POSTPROCESS).read_text(), 2)
    assert written.head_threshold.tolist() == [0.9, 0.9]  # class 2: nothing predicted either way, a gate wins ties
    np.testing.assert_array_equal(result.before, [0.5, 1.0])
    np.testing.assert_array_equal(result.after, [1.0, 1.0])
    stored = probs.astype(np.float16).astype(np.float32)
    by_hand = np.mean(
        [[dice(p, t) for p, t in zip(written(image, h), truth)] for image, h, truth in zip(stored, heads, masks)],
        axis=0,
    )
    np.testing.assert_array_equal(by_hand, result.after)


def test_a_missing_oof_file_is_a_one_line_error_naming_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rundir.save_config(run, load_config(None, [f"data.class_names={json.dumps(CLASSES)}"]))
    with pytest.raises(TuneError) as caught:
        tune([run], **GRIDS)
    message = str(caught.value)
    assert str(run / rundir.OOF) in message and "\n" not in message


def test_members_without_common_images_are_an_error(tmp_path):
    ids, probs, masks = planted(np.random.default_rng(7))
    make_run(tmp_path / "one", ids[:2], probs[:2], masks[:2])
    make_run(tmp_path / "two", ids[2:], probs[2:], masks[2:])
    with pytest.raises(TuneError, match="no image was predicted out of fold by every member"):
        tune([tmp_path / "one", tmp_path / "two"], out=tmp_path / "out", **GRIDS)
    assert not (tmp_path / "out").exists()


def test_several_sources_need_an_out_folder(tmp_path):
    ids, probs, masks = planted(np.random.default_rng(8))
    make_run(tmp_path / "one", ids, probs, masks)
    make_run(tmp_path / "two", ids, probs, masks)
    with pytest.raises(TuneError, match="--out"):
        tune([tmp_path / "one", tmp_path / "two"], **GRIDS)


def test_images_some_member_lacks_are_skipped_and_counted(tmp_path):
    ids, probs, masks = planted(np.random.default_rng(9))
    make_run(tmp_path / "one", ids, probs, masks)
    make_run(tmp_path / "two", ids[1:], probs[1:], masks[1:])
    result = tune([tmp_path / "one", tmp_path / "two"], out=tmp_path / "out", temperatures=False, **GRIDS)
    assert (result.images, result.skipped) == (3, 1)
    assert "(1 skipped: not predicted by every member)" in result.report()


def test_a_class_keeps_the_sources_setting_where_the_grid_found_nothing_better():
    from steelseg.inference.tune import keep_better

    own = PostProcess.uniform(2, [0.3, 0.6], [10, 20])
    tuned = PostProcess.uniform(2, [0.5, 0.5], [0, 0], min_component=[150, 150])
    post, kept = keep_better(own, np.array([0.9, 0.5]), tuned, np.array([0.8, 0.7]))
    assert kept.tolist() == [True, False]
    assert post.pixel_threshold.tolist() == [0.3, 0.5] and post.min_area.tolist() == [10, 0]
    assert post.min_component.tolist() == [0, 150]
    # a setting shared by every class differs: the better as a whole
    soft = PostProcess.uniform(2, 0.5, 0, peak="top_k")
    post, kept = keep_better(own, np.array([0.9, 0.5]), soft, np.array([0.8, 0.7]))
    assert post is soft and not kept.any()  # mean 0.75 beats 0.70
    post, kept = keep_better(own, np.array([0.9, 0.9]), soft, np.array([0.8, 0.7]))
    assert post is own and kept.all()
