"""Learned Gaussian slot initialisers (reference ``NormalSeparat`` and ``NormalShared``)."""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from metaslot.errors import ConfigError


class PerSlotGaussian(nn.Module):
    """One learned mean and log-std per slot; samples in training, returns the mean at evaluation.

    Slot order is meaningful (each slot has its own distribution), which makes evaluation deterministic.
    """

    def __init__(self, num_slots: int, slot_dim: int) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.slot_dim = slot_dim
        self.mean = nn.Parameter(torch.empty(1, num_slots, slot_dim))
        self.log_std = nn.Parameter(torch.empty(1, num_slots, slot_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Xavier on the (k, d) matrix, as the reference (``xavier_uniform_(mean[0])``): bound
        # sqrt(6 / (k + d)). On the (1, k, d) tensor torch would count k·d inputs and d outputs, a
        # 2.6-3.4× smaller bound for the paper's 6-11 slots, leaving initial slots mostly sampling noise.
        with torch.no_grad():
            nn.init.xavier_uniform_(self.mean[0])
        # std d^-1/2, as the reference.
        nn.init.constant_(self.log_std, math.log(self.slot_dim**-0.5))

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> Float[Tensor, "b k d"]:
        mean = self.mean.expand(batch_size, -1, -1)
        if not self.training:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + noise * self.log_std.exp()


class SharedGaussian(nn.Module):
    """One learned mean and log-std shared by all slots (slots are exchangeable).

    Samples at evaluation too unless ``sample_at_eval`` is False (the reference always samples).
    """

    def __init__(self, num_slots: int, slot_dim: int, sample_at_eval: bool = True) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.slot_dim = slot_dim
        self.sample_at_eval = sample_at_eval
        self.mean = nn.Parameter(torch.empty(1, 1, slot_dim))
        self.log_std = nn.Parameter(torch.empty(1, 1, slot_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Both xavier-uniform on the (1, 1, d) tensors, as the reference's NormalShared: torch counts d
        # inputs and d outputs, so the bound is sqrt(6 / (2d)) (0.108 for d = 256, a std of about 1).
        nn.init.xavier_uniform_(self.mean)
        nn.init.xavier_uniform_(self.log_std)

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> Float[Tensor, "b k d"]:
        mean = self.mean.expand(batch_size, self.num_slots, -1)
        if not (self.training or self.sample_at_eval):
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + noise * self.log_std.exp()


class LearntQueries(nn.Module):
    """One learnt query per slot, the same at training and evaluation (SPOT's stage-2 student,
    ``nn.Embedding`` initialised xavier-uniform on the (k, d) matrix)."""

    def __init__(self, num_slots: int, slot_dim: int) -> None:
        super().__init__()
        self.num_slots = num_slots
        self.slot_dim = slot_dim
        self.queries = nn.Parameter(torch.empty(num_slots, slot_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.queries)

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> Float[Tensor, "b k d"]:
        return self.queries.expand(batch_size, -1, -1)


def build_initializer(kind: str, num_slots: int, slot_dim: int, shared_samples_at_eval: bool) -> nn.Module:
    """The initialiser named by a spec's ``initializer`` field."""
    if kind == "per-slot":
        return PerSlotGaussian(num_slots, slot_dim)
    if kind == "shared":
        return SharedGaussian(num_slots, slot_dim, sample_at_eval=shared_samples_at_eval)
    if kind == "learnt":
        return LearntQueries(num_slots, slot_dim)
    raise ConfigError(f"unknown initializer {kind!r}: choose 'per-slot', 'shared' or 'learnt'")
