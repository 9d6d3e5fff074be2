"""Shared data sets by name (segue.data.load_photos): a generator trains on one split's people without a copy."""

import pytest
import torch

from segue.data import celeba234_people, load_photos, shared_root


def _celeba_or_skip():
    try:
        return shared_root("CelebA234", "SEGUE_CELEBA234")
    except FileNotFoundError:
        pytest.skip("CelebA234 is not on this machine ($SEGUE_CELEBA234 or ../shared/data/CelebA234)")


def test_a_celeba234_split_by_name_is_its_people_only():
    _celeba_or_skip()
    test = load_photos("celeba234:test", 16)
    assert test.classes == celeba234_people("test") and len(test.classes) == 35
    assert torch.equal(test.labels.unique(), torch.arange(35)) and test.images.shape[1:] == (3, 16, 16)
    assert not set(test.classes) & set(celeba234_people("train"))  # the split keeps people apart
    assert all(p.parent.name in test.classes for p in test.paths)
