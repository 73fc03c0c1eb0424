"""model.init_from into a two-headed net: a segment run of the same shape loads, its class head
starts fresh; any other mismatch is still refused."""

import pytest
import torch
from safetensors.torch import load_file

from steelseg.files import rundir
from steelseg.models.registry import build_model
from steelseg.models.weights import CLASS_HEAD, load_weights


def _model(fresh_run, **update):
    config = rundir.load_run_config(fresh_run)
    spec = config.model.model_copy(update={"encoder_weights": None, **update})
    return build_model(spec, len(config.output_class_names)), config


def test_a_two_head_student_starts_from_a_segment_run(fresh_run):
    torch.manual_seed(3)
    model, _ = _model(fresh_run, task="two_head")
    head_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(CLASS_HEAD)}
    assert head_before  # the two_head net has a class head the segment run lacks
    load_weights(fresh_run, model, new_class_head=True)
    saved = load_file(fresh_run / rundir.WEIGHTS)
    for key, value in model.state_dict().items():
        expected = head_before[key] if key.startswith(CLASS_HEAD) else saved[key]
        assert torch.equal(value, expected), key


def test_without_the_flag_or_with_another_shape_it_is_refused(fresh_run):
    model, _ = _model(fresh_run, task="two_head")
    with pytest.raises(rundir.RunDirError, match="do not fit"):
        load_weights(fresh_run, model)  # a run's own weights load strictly
    config = rundir.load_run_config(fresh_run)
    other = build_model(
        config.model.model_copy(update={"encoder_weights": None, "task": "two_head"}),
        len(config.output_class_names) + 1,
    )
    with pytest.raises(rundir.RunDirError, match="do not fit"):
        load_weights(fresh_run, other, new_class_head=True)  # one class more: the segment head differs
