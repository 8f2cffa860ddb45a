"""``procto.train.torch_threads``: a thread count for one block only."""

from __future__ import annotations

import pytest
import torch

from procto.train import torch_threads


def test_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(target):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before  # restored on errors too
    for leave in (None, 0):
        with torch_threads(leave):
            assert torch.get_num_threads() == before
