"""Seeds without hidden global state.

Library code never reseeds the process-wide RNGs a user's script relies on. Where PyTorch
offers a generator argument, a local :class:`torch.Generator` is used. Where it does not (the
weight initialisation inside ``nn.Module`` constructors, dropout, ``F.gumbel_softmax``), the
work runs inside :func:`forked_rng`: PyTorch's ``fork_rng`` saves the caller's CPU (and the
device's CUDA) RNG state, the block runs on a stream seeded from the run's seed, and the
caller's state is put back when the block ends, whatever happens inside.

Seeds of independent streams (data split, weight init, batch order, sampler; workers and nodes)
come from :func:`derive_seed`, a hash of their names, so two streams never coincide by
arithmetic accident (``seed * 100 + node`` made seed 0 on node 10 equal seed 1 on node 0).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch

__all__ = ["derive_seed", "forked_rng", "local_generator"]

_MAX = 2**63 - 1


def derive_seed(*parts: object) -> int:
    """A seed in ``[0, 2**63)`` determined by ``parts`` (e.g. ``(seed, "sampler", node)``)."""
    text = "\x1f".join(repr(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & _MAX


def local_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh generator seeded with ``seed`` (the global RNG is not touched)."""
    return torch.Generator(device=device).manual_seed(int(seed) & _MAX)


@contextlib.contextmanager
def forked_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run the block on PyTorch's global RNG seeded with ``seed``, then restore the caller's.

    ``device``: a CUDA device whose RNG is forked and seeded too (CPU is always forked).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(int(seed) & _MAX)
        if cuda:  # only the forked device: other GPUs' streams stay the caller's
            with torch.cuda.device(cuda[0]):
                torch.cuda.manual_seed(int(seed) & _MAX)
        yield
