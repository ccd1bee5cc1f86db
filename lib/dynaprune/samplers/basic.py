"""The no-pruning reference: every sample once per epoch, shuffled, weight 1."""
from __future__ import annotations

from .base import DynamicSampler, Method


class Full(DynamicSampler):
    """All n samples each epoch (the "full" baseline of every paper)."""

    def __init__(self, n, *, num_epochs=None, seed=0, distributed=None):
        super().__init__(n, seed=seed, num_epochs=num_epochs, distributed=distributed)


METHODS = {"full": Method(Full, "full data", fixed={}, share=1.0)}   # the reference: one run in a wide comparison
