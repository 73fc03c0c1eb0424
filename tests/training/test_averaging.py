import pytest
import torch

from steelseg.training.averaging import average_state_dicts


def test_floats_are_averaged_and_counters_take_the_maximum():
    states = [
        {"w": torch.tensor([1.0, 2.0]), "bn.num_batches_tracked": torch.tensor(10)},
        {"w": torch.tensor([3.0, 6.0]), "bn.num_batches_tracked": torch.tensor(30)},
        {"w": torch.tensor([5.0, 1.0]), "bn.num_batches_tracked": torch.tensor(20)},
    ]
    averaged = average_state_dicts(states)
    torch.testing.assert_close(averaged["w"], torch.tensor([3.0, 3.0]))
    assert averaged["bn.num_batches_tracked"].item() == 30


def test_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="different tensors"):
        average_state_dicts([{"a": torch.zeros(1)}, {"b": torch.zeros(1)}])
    with pytest.raises(ValueError, match="nothing to average"):
        average_state_dicts([])
