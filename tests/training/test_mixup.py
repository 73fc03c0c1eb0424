"""Mixup checked against its formula on batches whose values say which sample they came from."""

import pytest
import torch

from steelseg.training.mixup import mix, mixup_batch, sample_mixup

N, C = 6, 6


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] filled with i; y[i] the one-hot mask of class i: (N, 1, 4, 5) and (N, C, 4, 5)."""
    x = torch.arange(N, dtype=torch.float32).view(N, 1, 1, 1).expand(N, 1, 4, 5).clone()
    y = torch.eye(N, C).view(N, C, 1, 1).expand(N, C, 4, 5).clone()
    return x, y


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mixup_mixes_inputs_and_targets_by_the_formula():
    x, y = _batch()
    lam, perm = sample_mixup(N, 0.4, _generator())
    assert 0 <= lam <= 1 and sorted(perm.tolist()) == list(range(N))
    assert perm.tolist() != list(range(N))  # this seed pairs samples with others
    x_mixed, y_mixed = mixup_batch(x, y, 0.4, _generator())
    for i, j in enumerate(perm.tolist()):
        assert torch.allclose(x_mixed[i], torch.full((1, 4, 5), lam * i + (1 - lam) * j))
        expected = torch.zeros(C)
        expected[i] += lam
        expected[j] += 1 - lam
        assert torch.allclose(y_mixed[i, :, 2, 3], expected)
    assert torch.allclose(y_mixed.sum(dim=1), torch.ones(N, 4, 5))  # soft masks stay a partition


def test_mixup_depends_on_the_generator_only():
    x, y = _batch()
    torch.manual_seed(1)
    before = torch.get_rng_state()
    first = mixup_batch(x, y, 0.4, _generator(3))
    assert torch.equal(torch.get_rng_state(), before)  # the global state is left as it was
    torch.manual_seed(2)
    again = mixup_batch(x, y, 0.4, _generator(3))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    other = mixup_batch(x, y, 0.4, _generator(4))
    assert not torch.equal(first[0], other[0])


def test_lambda_follows_beta_alpha_alpha():
    generator = _generator()
    near_half = [sample_mixup(N, 10_000.0, generator)[0] for _ in range(20)]
    assert all(abs(lam - 0.5) < 0.05 for lam in near_half)
    extreme = [sample_mixup(N, 0.02, generator)[0] for _ in range(20)]
    assert sum(min(lam, 1 - lam) < 0.05 for lam in extreme) >= 15  # mass piles up at 0 and 1


def test_mix_makes_hard_targets_soft_and_checks_alpha():
    x, y = _batch()
    _, y_mixed = mix(x, y.bool(), 0.25, torch.arange(N).roll(1))
    assert y_mixed.dtype == torch.float32
    assert torch.allclose(y_mixed[1, :, 0, 0], 0.25 * torch.eye(N)[1] + 0.75 * torch.eye(N)[0])
    with pytest.raises(ValueError, match="alpha"):
        mixup_batch(x, y, 0.0, _generator())
