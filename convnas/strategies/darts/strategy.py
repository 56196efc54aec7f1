"""The DARTS strategy: bilevel gradient search over supernet logits.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019. Weights train on
the training split with SGD (cosine schedule), architecture logits on the validation split with
Adam. First order uses the gradient at the current weights; second order differentiates through
one unrolled weight step, with the Hessian-vector product estimated by finite differences
(DARTS eq. 8). An optional penalty adds ``lambda * E_softmax(alpha)[cost] / reference`` for one
of the cost-model metrics. After every epoch everything is checkpointed atomically; ``resume``
continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import logging
import pathlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from convnas.costs import measure, objective_values
from convnas.errors import CheckpointError, ConfigError, TrainingDivergedError
from convnas.io import load_checkpoint, save_checkpoint, write_json
from convnas.registry import check_keywords
from convnas.search_space import SearchSpace, Supernet, build_model
from convnas.seeding import derive_seed, forked_rng, local_generator, stream_seed
from convnas.strategies.base import (
    ArchitectureResult,
    SearchResult,
    SearchStrategy,
    config_hash,
    register_strategy,
)
from convnas.strategies.darts.architect import unrolled_arch_gradient
from convnas.strategies.darts.checkpoint import (
    apply_optimiser_settings,
    check_state,
    rng_states,
    set_rng_states,
)
from convnas.strategies.darts.settings import CHECKPOINT, OPTIMISER_KEYS, DartsSettings
from convnas.strategies.distributed import setup_distributed
from convnas.strategies.training import check_finite, evaluate, progress

__all__ = ["DartsStrategy"]

logger = logging.getLogger(__name__)


@dataclass
class _Training:
    """What one DARTS epoch works on."""

    supernet: Supernet
    model: torch.nn.Module  # the supernet, or its DistributedDataParallel wrapper
    w_opt: torch.optim.Optimizer
    a_opt: torch.optim.Optimizer
    penalty: Any
    weight_names: dict[int, str]
    ctx: Any
    device: torch.device


@register_strategy
class DartsStrategy(SearchStrategy):
    """DARTS (bilevel, first or second order) over any registered search space."""

    name = "darts"
    settings_class = DartsSettings

    def __init__(self, **settings: Any) -> None:
        check_keywords(DartsSettings, settings, "strategy 'darts'")
        self.settings = DartsSettings(**settings)

    def search(
        self, space: SearchSpace, data: Any, run_dir: str | pathlib.Path, *, resume: bool = False
    ) -> SearchResult:

        s = self.settings
        run_dir = pathlib.Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        ctx, device = setup_distributed(s.device)
        try:
            # Weight init, Gumbel noise and any dropout draw from a stream of this run's own;
            # the caller's global RNG state is restored afterwards.
            with forked_rng(stream_seed(s.seed, s.seeds, "init"), device):
                return self._search(space, data, run_dir, resume, ctx, device)
        finally:
            ctx.close()

    def _search(self, space, data, run_dir, resume, ctx, device) -> SearchResult:
        s = self.settings
        init_seed = stream_seed(s.seed, s.seeds, "init")
        alphas_rng = local_generator(derive_seed(init_seed, "darts", "alphas"))
        supernet = space.build_supernet("weighted", generator=alphas_rng).to(device)
        supernet.set_mode(s.mode, tau=s.tau)
        w_opt = torch.optim.SGD(
            supernet.weight_parameters(),
            lr=s.w_lr,
            momentum=s.w_momentum,
            weight_decay=s.w_weight_decay,
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, s.epochs, eta_min=s.w_lr_min)
        a_opt = torch.optim.Adam(
            supernet.arch_parameters(),
            lr=s.a_lr,
            betas=(s.a_beta1, s.a_beta2),
            weight_decay=s.a_weight_decay,
        )
        penalty = self._penalty(space, supernet, device)
        ckpt_path = run_dir / CHECKPOINT
        start_epoch, history = 0, []
        changed: dict[str, Any] = {}
        if ckpt_path.exists():
            # RNG states are CPU tensors whatever the device: load everything on the CPU;
            # load_state_dict copies weights and optimizer state onto the parameters' device.
            state = self._resume_state(space, run_dir, resume)
            try:
                supernet.load_state_dict(state["supernet"])
                w_opt.load_state_dict(state["w_opt"])
                a_opt.load_state_dict(state["a_opt"])
                sched.load_state_dict(state["sched"])
            except (KeyError, ValueError, RuntimeError, TypeError) as exc:
                raise CheckpointError(
                    f"{ckpt_path} does not fit this search's networks or optimisers "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); start a new "
                    f"run directory"
                ) from None
            set_rng_states(state, device)
            start_epoch, history = int(state["epoch"]), list(state["history"])
            saved = state.get("optimiser") or s.optimiser_settings()
            changed = {k: [saved.get(k), v] for k, v in s.optimiser_settings().items()}
            changed = {k: pair for k, pair in changed.items() if pair[0] != pair[1]}
            if changed:
                apply_optimiser_settings(w_opt, a_opt, sched, s)
                logger.warning("resumed with changed optimiser settings (old, new): %s", changed)
            logger.info("resumed DARTS from epoch %d of %d", start_epoch, s.epochs)
        fingerprint = self.fingerprints(space)[0]
        weight_names = {id(p): n for n, p in supernet.named_parameters()}
        model = supernet
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            if device.type == "cuda":  # one set of BN statistics over the global batch
                supernet = torch.nn.SyncBatchNorm.convert_sync_batchnorm(supernet)
                weight_names = {id(p): n for n, p in supernet.named_parameters()}
            model = DistributedDataParallel(supernet, find_unused_parameters=s.mode == "gumbel")
        run = _Training(supernet, model, w_opt, a_opt, penalty, weight_names, ctx, device)
        for epoch in range(start_epoch, s.epochs):
            try:
                record = self._epoch(epoch, data, run)
                sched.step()
            except TrainingDivergedError as exc:
                last = (
                    f"after epoch {history[-1]['epoch']}"
                    if history
                    else "none: no epoch had finished"
                )
                where = f"is intact at {ckpt_path}" if history else "does not exist"
                raise TrainingDivergedError(
                    f"DARTS training diverged: {exc}. Search stopped; the last good checkpoint "
                    f"({last}) {where}. Lower "
                    f"the learning rates (e.g. --set strategy.w_lr={s.w_lr / 10:g} --set "
                    f"strategy.w_lr_min={s.w_lr_min / 10:g}), then run the same command with "
                    f"--resume: a resume may change {', '.join(OPTIMISER_KEYS)}"
                ) from None
            if changed:  # the run's history says from which epoch on the new settings hold
                record["optimiser_changed"], changed = changed, {}
            history.append(record)
            logger.info(
                "darts epoch %d/%d: train loss %.4f acc %.3f, val acc %.3f",
                epoch + 1,
                s.epochs,
                record["train_loss"],
                record["train_accuracy"],
                record["val_accuracy"],
            )
            if not ctx.is_main:
                continue
            save_checkpoint(
                ckpt_path,
                {
                    "supernet": supernet.state_dict(),
                    "w_opt": w_opt.state_dict(),
                    "a_opt": a_opt.state_dict(),
                    "sched": sched.state_dict(),
                    **rng_states(device),
                    "epoch": epoch + 1,
                    "epochs": s.epochs,
                    "history": history,
                    "config_hash": fingerprint,
                    "optimiser": s.optimiser_settings(),
                },
            )
            write_json(run_dir / "alphas.json", history)
        return self._finish(space, supernet, history, run_dir, data, write=ctx.is_main)

    def fingerprints(self, space: SearchSpace) -> tuple[str, str]:
        """The hash a checkpoint of this search carries, and the one of convnas versions whose
        hash also covered the optimiser settings (accepted on resume)."""
        s = self.settings
        parts = (
            space.name,
            space.settings(),
            [d.candidates and [c.to_dict() for c in d.candidates] for d in space.decisions()],
        )
        return config_hash(*parts, s.resume_fingerprint()), config_hash(*parts, s.fingerprint())

    def check_resume(self, space: SearchSpace, run_dir: pathlib.Path, *, resume: bool) -> None:
        """Refuse, before anything is written, a search the run's checkpoint cannot take."""
        ckpt_path = pathlib.Path(run_dir) / CHECKPOINT
        if not ckpt_path.exists():
            return
        state = self._resume_state(space, pathlib.Path(run_dir), resume)
        s = self.settings
        try:  # the same loads as the search, into a supernet on the meta device (no memory)
            with torch.device("meta"):
                supernet = space.build_supernet("weighted")
                w_opt = torch.optim.SGD(supernet.weight_parameters(), lr=s.w_lr, momentum=0.9)
                a_opt = torch.optim.Adam(supernet.arch_parameters(), lr=s.a_lr)
            supernet.load_state_dict(state["supernet"])
            w_opt.load_state_dict(state["w_opt"])
            a_opt.load_state_dict(state["a_opt"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(
                f"{ckpt_path} does not fit this search's networks or optimisers "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); start a new "
                f"run directory"
            ) from None

    def _resume_state(self, space: SearchSpace, run_dir: pathlib.Path, resume: bool) -> dict:
        ckpt_path = run_dir / CHECKPOINT
        if not resume:
            raise ConfigError(
                f"{run_dir} already holds a DARTS checkpoint; pass resume=True (--resume) "
                f"to continue it or choose another run directory",
                key="output.run_dir",
            )
        state = load_checkpoint(ckpt_path, map_location="cpu")
        current, legacy = self.fingerprints(space)
        if state.get("config_hash") not in (current, legacy):
            raise CheckpointError(
                f"{ckpt_path} was written by another configuration (hash "
                f"{state.get('config_hash')!r}, this run {current!r}); only "
                f"{', '.join(OPTIMISER_KEYS)} may change on resume; restore the run's "
                f"config.yaml or start a new run directory"
            )
        check_state(state, self.settings.epochs, ckpt_path)
        return state

    def _epoch(self, epoch: int, data: Any, run: _Training) -> dict[str, Any]:
        """One epoch of alternating architecture and weight steps; returns its record."""
        from convnas.data import make_loader

        s = self.settings
        supernet, model, ctx, device = run.supernet, run.model, run.ctx, run.device
        a_opt, w_opt, penalty, weight_names = run.a_opt, run.w_opt, run.penalty, run.weight_names
        train_loader = make_loader(
            data.train,
            s.batch_size,
            shuffle=True,
            seed=stream_seed(s.seed, s.seeds, "batches") * 100_003 + 2 * epoch,
            drop_last=True,
        )
        val_loader = make_loader(
            data.val,
            s.batch_size,
            shuffle=True,
            seed=stream_seed(s.seed, s.seeds, "batches") * 100_003 + 2 * epoch + 1,
            drop_last=True,
        )
        if len(train_loader) == 0 or len(val_loader) == 0:
            raise ConfigError(
                f"batch_size {s.batch_size} exceeds the training or validation split "
                f"({len(data.train)} / {len(data.val)} samples)",
                key="strategy.batch_size",
            )
        steps = (
            len(train_loader)
            if s.steps_per_epoch is None
            else min(len(train_loader), s.steps_per_epoch)
        )
        val_iter = _cycle(val_loader)
        supernet.train()
        seen, correct, loss_sum = 0, 0, 0.0
        first_loss: float | None = None
        bar = progress(
            train_loader,
            enabled=s.progress,
            total=steps,
            desc=f"darts epoch {epoch + 1}/{s.epochs}",
        )
        for step, (x, y) in enumerate(bar):
            if step >= steps:
                break
            x, y = ctx.shard(x).to(device), ctx.shard(y).to(device)
            xv, yv = (ctx.shard(t).to(device) for t in next(val_iter))
            if epoch >= s.warmup_epochs:
                self._arch_step(
                    supernet, a_opt, w_opt, (x, y), (xv, yv), penalty, weight_names, ctx
                )
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            where = f"DARTS weight step (epoch {epoch + 1}, step {step + 1})"
            check_finite(loss, where)
            first_loss = _check_growth(float(loss.detach()), first_loss, where)
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(supernet.weight_parameters(), s.grad_clip)
            w_opt.step()
            seen += int(y.numel())
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * int(y.numel())
            if s.progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        val_loss, val_acc = evaluate(supernet, val_loader, device, max_batches=steps)
        return {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "probabilities": supernet.probabilities(),
        }

    def _penalty(self, space: SearchSpace, supernet: Supernet, device: torch.device):
        s = self.settings
        if s.penalty_metric is None or s.penalty_lambda == 0:
            return None
        from convnas.strategies.penalty import ExpectedCostPenalty

        return ExpectedCostPenalty(
            space,
            supernet,
            s.penalty_metric,
            s.penalty_lambda,
            device=device,
            batch_size=s.batch_size,
            optimizer="sgd_momentum" if s.w_momentum else "sgd",
        )

    def _arch_step(
        self, supernet, a_opt, w_opt, train_batch, val_batch, penalty, names, ctx=None
    ) -> None:
        s = self.settings
        a_opt.zero_grad(set_to_none=True)
        alphas = supernet.arch_parameters()
        if s.order == 1:
            xv, yv = val_batch
            loss = F.cross_entropy(supernet(xv), yv)
            if penalty is not None:
                loss = loss + penalty()
            check_finite(loss, "DARTS architecture step")
            grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        else:
            buffers = {
                names[id(p)]: st["momentum_buffer"]
                for p, st in w_opt.state.items()
                if "momentum_buffer" in st and st["momentum_buffer"] is not None
            }
            grads = unrolled_arch_gradient(
                supernet,
                train_batch,
                val_batch,
                lr=w_opt.param_groups[0]["lr"],
                momentum=s.w_momentum,
                weight_decay=s.w_weight_decay,
                momentum_buffers=buffers,
                extra_loss=penalty,
            )
        grads = [
            torch.zeros_like(a) if g is None else g.detach().clone()
            for a, g in zip(alphas, grads, strict=True)
        ]
        if ctx is not None:
            ctx.average_(grads)
        for a, g in zip(alphas, grads, strict=True):
            a.grad = g
        a_opt.step()

    def _finish(self, space, supernet, history, run_dir, data, write=True) -> SearchResult:
        arch = supernet.derive()
        metrics: dict[str, float] = {}
        if history:
            metrics["supernet_val_accuracy"] = float(history[-1]["val_accuracy"])
        metrics.update(_measure_costs(arch, space, self.settings.batch_size))
        arch = arch.with_metadata(
            strategy=self.name,
            metrics=metrics,
            dataset=getattr(data, "name", None),
            data=dict(getattr(data, "settings", None) or {}),
            settings=self.settings.fingerprint(),
        )
        if write:
            arch.save(run_dir / "architectures" / "darts_final.yaml")
        result = ArchitectureResult(arch, metrics)
        return SearchResult(
            self.name,
            [result],
            [result],
            run_dir,
            {"epochs": len(history), "history_file": "alphas.json"},
        )


def _measure_costs(arch, space, batch_size: int) -> dict[str, float]:
    costs = measure(build_model(arch), space.input_shape, batch_size=batch_size)
    return objective_values(costs)


# A loss this many times its value at the epoch's first step has diverged, finite or not
# (w_lr: 1e6 gives losses of 1e20 that never become NaN).
GROWTH_LIMIT = 1e3


def _check_growth(loss: float, first: float | None, where: str) -> float:
    if first is None:
        return loss
    if loss > GROWTH_LIMIT * max(first, 1.0):
        raise TrainingDivergedError(
            f"{where}: the loss grew from {first:.4g} to {loss:.4g} (more than "
            f"{GROWTH_LIMIT:g} times)"
        )
    return first


def _cycle(loader):
    while True:
        yield from loader
