"""The model an export gives: a folded deploy network with its input contract.

:class:`ExportedModel` carries the input normalisation a network was trained with (the
``metadata.data`` a search records) as buffers TorchScript keeps, so a user can feed it
without reading the source; :func:`deploy_model` is the folded eval-mode copy every export is
made of.
"""

from __future__ import annotations

import torch
from torch import nn

from convnas.errors import ArchitectureError
from convnas.folding import fold
from convnas.search_space import Architecture

__all__ = ["ExportedModel", "deploy_model", "exported_model", "input_normalisation"]


def input_normalisation(
    arch: Architecture,
) -> tuple[list[int], list[float] | None, list[float] | None]:
    """``(input_shape, mean, std)`` the network was trained with (``metadata.data``).

    ``mean`` and ``std`` are ``None`` when the architecture records no normalisation (data
    without one, or a file written before searches recorded it).
    """
    data = arch.metadata.get("data") or {}
    shape = data.get("input_shape") or arch.settings.get("input_shape") or []
    mean, std = data.get("mean"), data.get("std")
    return (
        [int(s) for s in shape],
        None if mean is None else [float(v) for v in mean],
        None if std is None else [float(v) for v in std],
    )


class ExportedModel(nn.Module):
    """A deploy network with its input contract, as exports and :func:`load_exported` give it.

    Buffers (kept by TorchScript): ``input_shape`` (int64 ``[C, H, W]`` of one image),
    ``input_mean`` and ``input_std`` (float32 ``[C]``, the training normalisation; 0 and 1 when
    the data was not normalised), ``normalizes_input`` (bool: ``forward`` takes raw pixels in
    [0, 1] and applies ``(x - input_mean) / input_std`` itself).

    Args:
        network: the folded deploy network.
        input_shape: ``(C, H, W)``.
        mean: per-channel mean of pixels in [0, 1], or ``None`` for no normalisation.
        std: matching standard deviations, or ``None``.
        normalize: normalise in ``forward`` (raw [0, 1] input); default: expect normalised input.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        input_shape: list[int] | tuple[int, ...],
        mean: list[float] | None = None,
        std: list[float] | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ArchitectureError(f"input_shape must be [C, H, W], but got {input_shape!r}")
        channels = int(input_shape[0])
        mean_t = torch.tensor(mean if mean is not None else [0.0] * channels)
        std_t = torch.tensor(std if std is not None else [1.0] * channels)
        if mean_t.numel() != channels or std_t.numel() != channels or bool((std_t <= 0).any()):
            raise ArchitectureError(
                f"metadata.data mean and std need {channels} entries and std > 0, "
                f"but got mean={mean}, std={std}"
            )
        self.network = network
        self.normalize = bool(normalize)
        self.register_buffer("input_shape", torch.tensor([int(s) for s in input_shape]))
        self.register_buffer("input_mean", mean_t.float())
        self.register_buffer("input_std", std_t.float())
        self.register_buffer("normalizes_input", torch.tensor(self.normalize))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            mean, std = torch.as_tensor(self.input_mean), torch.as_tensor(self.input_std)
            x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
        return self.network(x)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"


def exported_model(deploy: nn.Module, arch: Architecture, normalize: bool) -> ExportedModel:
    shape, mean, std = input_normalisation(arch)
    return ExportedModel(deploy, input_shape=shape, mean=mean, std=std, normalize=normalize).eval()


def deploy_model(model: nn.Module) -> nn.Module:
    """The folded, eval-mode copy of ``model`` (``model`` itself is left unchanged)."""
    was_training = model.training
    model.eval()
    try:
        return fold(model).eval()
    finally:
        model.train(was_training)
