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
