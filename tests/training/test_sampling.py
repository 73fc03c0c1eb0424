import numpy as np

from steelseg.training.sampling import EpochSampler, balanced_weights, decode


def test_order_depends_on_seed_and_epoch_only_and_carries_the_epoch():
    sampler = EpochSampler(10, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(10)) and first == list(EpochSampler(10, seed=1))
    sampler.set_epoch(3)
    third = list(sampler)
    assert [decode(i, 10)[0] for i in third] == [3] * 10
    assert sorted(decode(i, 10)[1] for i in third) == list(range(10))
    assert [decode(i, 10)[1] for i in third] != first


def test_balanced_weights_equalise_class_signatures():
    presence = np.array([[0, 0]] * 6 + [[1, 0]] * 3 + [[0, 1]], dtype=bool)
    weights = balanced_weights(presence)
    np.testing.assert_allclose(weights[[0, 6, 9]], [1 / 6, 1 / 3, 1.0])
    sampler = EpochSampler(10, seed=0, weights=weights)
    counts = np.zeros(3)
    for epoch in range(300):
        sampler.set_epoch(epoch)
        for value in sampler:
            index = decode(value, 10)[1]
            counts[0 if index < 6 else 1 if index < 9 else 2] += 1
    shares = counts / counts.sum()
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.03)  # the single rare image: a third of draws
