"""The bilevel architecture step of DARTS (the role of ``architect.py`` in the DARTS code).

First order: the gradient of the validation loss at the current weights. Second order:
differentiate through one unrolled weight step, with the Hessian-vector product estimated by
finite differences (DARTS eq. 8).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from convnas.search_space import Supernet

__all__ = ["unrolled_arch_gradient"]


def _cross_entropy(model: Any, params: dict[str, torch.Tensor], x, y) -> torch.Tensor:
    return F.cross_entropy(functional_call(model, params, (x,)), y)


def unrolled_arch_gradient(
    supernet: Supernet,
    train_batch: tuple[torch.Tensor, torch.Tensor],
    val_batch: tuple[torch.Tensor, torch.Tensor],
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    momentum_buffers: dict[str, torch.Tensor] | None = None,
    extra_loss: Any = None,
    fd_scale: float = 0.01,
) -> list[torch.Tensor]:
    """Second-order DARTS gradient of the validation loss w.r.t. the logits.

    ``grad = dL_val(w', a)/da - lr * [dL_train(w+, a)/da - dL_train(w-, a)/da] / (2 eps)``
    with ``w' = w - lr * (momentum * buf + dL_train/dw + wd * w)``,
    ``w+- = w +- eps * dL_val(w', a)/dw'`` and ``eps = fd_scale / ||dL_val/dw'||`` (DARTS uses
    ``fd_scale = 0.01``; tiny networks with small batches can need less for an accurate
    difference).
    """
    alphas = {n: p for n, p in supernet.named_arch_parameters()}
    weights = {n: p for n, p in supernet.named_parameters() if n not in alphas and p.requires_grad}
    xt, yt = train_batch
    xv, yv = val_batch
    loss_t = _cross_entropy(supernet, {**weights, **alphas}, xt, yt)
    grads = torch.autograd.grad(loss_t, list(weights.values()), allow_unused=True)
    unrolled = {}
    for (n, w), g in zip(weights.items(), grads, strict=True):
        step = (g if g is not None else torch.zeros_like(w)) + weight_decay * w
        if momentum_buffers and n in momentum_buffers:
            step = step + momentum * momentum_buffers[n]
        unrolled[n] = (w - lr * step).detach().requires_grad_(True)
    loss_v = _cross_entropy(supernet, {**unrolled, **alphas}, xv, yv)
    if extra_loss is not None:
        loss_v = loss_v + extra_loss()
    got = torch.autograd.grad(loss_v, [*alphas.values(), *unrolled.values()], allow_unused=True)
    d_alpha = [
        g if g is not None else torch.zeros_like(a)
        for g, a in zip(got[: len(alphas)], alphas.values(), strict=True)
    ]
    d_w = [
        g if g is not None else torch.zeros_like(w)
        for g, w in zip(got[len(alphas) :], unrolled.values(), strict=True)
    ]
    norm = torch.cat([g.reshape(-1) for g in d_w]).norm()
    eps = fd_scale / float(norm) if float(norm) > 0 else 0.0
    if eps == 0.0:
        return d_alpha

    def grad_at(sign: float) -> list[torch.Tensor]:
        shifted = {
            n: (w + sign * eps * g).detach() for (n, w), g in zip(weights.items(), d_w, strict=True)
        }
        loss = _cross_entropy(supernet, {**shifted, **alphas}, xt, yt)
        out = torch.autograd.grad(loss, list(alphas.values()), allow_unused=True)
        return [
            g if g is not None else torch.zeros_like(a)
            for g, a in zip(out, alphas.values(), strict=True)
        ]

    g_plus, g_minus = grad_at(+1.0), grad_at(-1.0)
    return [
        da - lr * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, g_plus, g_minus, strict=True)
    ]
