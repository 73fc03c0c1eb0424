import pytest
import torch

from steelseg.config import load_config
from steelseg.core.postprocess import PostProcess
from steelseg.files import rundir
from steelseg.models.registry import build_model
from steelseg.models.weights import load_weights, save_weights

TINY = ["model.encoder_name=tu-test_resnet", "model.arch_params={decoder_channels: [8, 8, 8, 8, 8]}"]


def test_round_trip_of_config_weights_and_postprocessing(tmp_path):
    config = load_config(None, TINY + ["data.class_names=[a, b]"])
    model = build_model(config.model, 2)
    rundir.save_config(tmp_path, config)
    save_weights(tmp_path, model)
    back = rundir.load_run_config(tmp_path)
    assert back == config
    # no post-processing file yet: the config's defaults
    assert rundir.load_postprocess(tmp_path, back).pixel_threshold.tolist() == [0.5, 0.5]
    rundir.save_postprocess(tmp_path, PostProcess.uniform(2, [0.3, 0.7], [10, 20]))
    assert rundir.load_postprocess(tmp_path, back).min_area.tolist() == [10, 20]
    other = build_model(config.model, 2)
    load_weights(tmp_path, other)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_errors_name_what_is_missing_or_wrong(tmp_path):
    with pytest.raises(rundir.RunDirError, match="config.yaml not found"):
        rundir.load_run_config(tmp_path)
    config = load_config(None, TINY + ["data.class_names=[a, b]"])
    save_weights(tmp_path, build_model(config.model, 3))
    with pytest.raises(rundir.RunDirError, match="weights do not fit the model"):
        load_weights(tmp_path, build_model(config.model, 2))
    rundir.save_postprocess(tmp_path, PostProcess.uniform(3, 0.5, 0))
    with pytest.raises(rundir.RunDirError, match=r"pixel_threshold must list one value per class \(2\)"):
        rundir.load_postprocess(tmp_path, config)
    with pytest.raises(ValueError, match="resolve the class names"):
        rundir.save_config(tmp_path, load_config(None, TINY))


def _old_run(run_dir, gate: str | None, post: str | None, summary: bool):
    """A run directory as an earlier version wrote it: the screening keys named label_*."""
    config = load_config(None, ["data.class_names=[a, b]"])
    text = config.to_yaml().replace("screen_threshold: 0.5", "label_threshold: 0.25")
    text = text.replace("screen_min_recall: null", "label_min_recall: 0.9")
    run_dir.mkdir()
    (run_dir / rundir.CONFIG).write_text(text)
    if gate is not None:
        (run_dir / rundir.GATE).write_text(gate)
    if post is not None:
        (run_dir / rundir.POSTPROCESS).write_text(post)
    if summary:
        fields = {"epoch": 1, "train_loss": 0.5, "val_dice": 0.5, "val_dice_tuned": 0.5, "lr": 0.1}
        run = rundir.RunSummary(
            **fields, val_class_dice_tuned=[0.5, 0.5], class_names=["a", "b"], torch="2", input_divisor=64
        )
        rundir.save_summary(run_dir, run)
    return run_dir


OLD_POST = '{"pixel_threshold": [0.4, 0.6], "min_area": [0, 9], "label_threshold": [0.0, 0.7]}'
LOAD_RUN = [  # id, gate.json, postprocess.json, summary.json?, expected gate, head_threshold, input divisor
    pytest.param(None, None, False, [0.25, 0.25], [0.0, 0.0], None, id="bare-run-config-defaults"),
    pytest.param('{"label_threshold": [0.3, 0.8]}', OLD_POST, True, [0.3, 0.8], [0.0, 0.7], 64, id="old-key-files"),
    pytest.param('{"screen_threshold": [0.1, 0.9]}', None, True, [0.1, 0.9], [0.0, 0.0], 64, id="new-gate-no-post"),
]


@pytest.mark.parametrize("gate, post, summary, expected_gate, head, divisor", LOAD_RUN)
def test_load_run_reads_old_and_new_files(tmp_path, gate, post, summary, expected_gate, head, divisor):
    run = rundir.load_run(_old_run(tmp_path / "run", gate, post, summary))
    assert run.config.postprocess.screen_threshold == 0.25 and run.config.postprocess.screen_min_recall == 0.9
    assert run.gate.tolist() == expected_gate
    assert run.postprocess.head_threshold.tolist() == head
    assert (None if run.summary is None else run.summary.input_divisor) == divisor


def test_load_run_reads_each_file_once(tmp_path, monkeypatch):
    run = rundir.load_run(_old_run(tmp_path / "run", '{"screen_threshold": [0.1, 0.9]}', OLD_POST, True))
    reads = []
    monkeypatch.setattr(rundir, "load_gate", lambda *args: reads.append("gate"))
    monkeypatch.setattr(rundir, "load_postprocess", lambda *args: reads.append("post"))
    for _ in range(3):
        _ = (run.gate, run.postprocess)
    assert reads == ["gate", "post"]


def test_new_files_use_the_new_keys(tmp_path):
    rundir.save_gate(tmp_path, [0.5, 0.6])
    rundir.save_postprocess(tmp_path, PostProcess.uniform(2, 0.5, 0, head_threshold=0.6))
    assert '"screen_threshold"' in (tmp_path / rundir.GATE).read_text()
    text = (tmp_path / rundir.POSTPROCESS).read_text()
    assert '"head_threshold"' in text and "label_threshold" not in text
