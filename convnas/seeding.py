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

__all__ = ["STREAMS", "check_seeds", "derive_seed", "forked_rng", "local_generator", "stream_seed"]

_MAX = 2**63 - 1

#: The independent random streams of a search, each seeded on its own (config ``seeds:``):
#: ``data`` the train/validation split (and augmentation), ``init`` the weights' initial values,
#: ``batches`` the batch order (and the supernet's path draws), ``sampler`` the search proposals.
STREAMS = ("data", "init", "batches", "sampler")


def check_seeds(seeds: dict[str, int] | None, key: str = "seeds") -> dict[str, int]:
    """Validate a ``{stream: seed}`` override map (unknown streams and bad values refused)."""
    from convnas.errors import ConfigError

    seeds = dict(seeds or {})
    for name, value in seeds.items():
        if name not in STREAMS:
            raise ConfigError(f"unknown stream {name!r}; the streams are {list(STREAMS)}", key=key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX:
            raise ConfigError(
                f"must be an integer in [0, 2**63), but got {value!r}", key=f"{key}.{name}"
            )
    return seeds


def stream_seed(seed: int, seeds: dict[str, int] | None, stream: str) -> int:
    """The seed of ``stream``: its override in ``seeds`` if set, else the run's ``seed``.

    The default is the run's seed itself (each stream feeds a different generator, so one
    integer serves them all); setting one stream varies only that source of noise.
    """
    if stream not in STREAMS:
        raise KeyError(stream)
    value = (seeds or {}).get(stream)
    return int(seed) if value is None else int(value)


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
