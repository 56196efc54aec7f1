"""Export searched architectures as deploy models: YAML, folded state_dict, TorchScript, ONNX.

A run directory holds architectures, not trained weights (Optuna trials are scored with a shared
supernet or a short training). :func:`save_trained` stores a network trained by
``convnas train`` (``model.pt``: the unfolded state_dict and the architecture); every export is
of the *folded* deploy model (:func:`convnas.fold`) in eval mode, built from an architecture and,
when given, trained weights. :func:`load_exported` reads any export back.

Formats:
    ``yaml``: the architecture file (no weights).
    ``state_dict``: ``NAME.pt``, a plain ``torch.save``'d state dict of the (unfolded) network
        ``build_model`` builds, plus ``NAME.yaml`` beside it; load it with
        ``model = build_model(load_architecture("NAME.yaml")); model.load_state_dict(
        torch.load("NAME.pt"))``.
    ``torchscript``: ``NAME.torchscript.pt``, the folded :class:`ExportedModel` traced at the
        space's input shape (``torch.jit.trace``, deprecated by PyTorch but still the format
        C++/mobile loaders take).
    ``onnx``: ``NAME.onnx`` (legacy exporter, dynamic batch axis) with the input normalisation
        in its ``metadata_props``; needs the ``onnx`` extra.

The ``model.pt`` of ``convnas train`` is a sealed checkpoint (:func:`convnas.io.save_checkpoint`:
SHA-256-checked, read with :func:`load_trained` or :func:`load_exported`), not a state dict.

Input normalisation: a network is trained on ``(pixels / pixel_max - mean) / std``, with the
``mean``, ``std`` and ``input_shape`` a search records in ``metadata.data``. The TorchScript
module and :func:`load_exported`'s module carry them as buffers ``input_mean``, ``input_std``
(``[C]``), ``input_shape`` (``[C, H, W]``) and ``normalizes_input``. By default they expect
normalised input, as in training; with ``normalize=True`` (``convnas export --normalize``)
they take raw pixels in [0, 1] and normalise them first.
"""

from __future__ import annotations

import io
import json
import logging
import pathlib
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from convnas.costs import COST_OBJECTIVES
from convnas.errors import (
    ArchitectureError,
    CheckpointError,
    ConfigError,
    ConvNASError,
    OptionalDependencyError,
)
from convnas.io import atomic_write_bytes, load_checkpoint, read_yaml, save_checkpoint
from convnas.run.exported_model import (
    ExportedModel,
    deploy_model,
    exported_model,
    input_normalisation,
)
from convnas.search_space import Architecture, build_model, load_architecture

__all__ = [
    "FORMATS",
    "ExportedModel",
    "build_seeded",
    "deploy_model",
    "example_input",
    "export_architecture",
    "input_normalisation",
    "load_exported",
    "load_trained",
    "load_weights",
    "run_architectures",
    "save_trained",
]

logger = logging.getLogger(__name__)

FORMATS = ("yaml", "state_dict", "torchscript", "onnx")
SUFFIXES = {"yaml": ".yaml", "state_dict": ".pt", "torchscript": ".torchscript.pt", "onnx": ".onnx"}
TRAINED_KIND = "convnas/trained/v1"
DEPLOY_KIND = "convnas/deploy_state_dict/v1"
# Traced and ONNX graphs must reproduce the eager folded model to this tolerance.
CHECK_ATOL, CHECK_RTOL = 1e-5, 1e-4


def example_input(arch: Architecture, batch_size: int = 1) -> torch.Tensor:
    """A random input of the architecture's ``settings.input_shape`` (seeded, no global RNG)."""
    shape = arch.settings.get("input_shape")
    if not shape or len(shape) != 3:
        raise ArchitectureError(
            "settings.input_shape must be [C, H, W] to trace or export the model, "
            f"but got {shape!r}"
        )
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, *(int(s) for s in shape), generator=generator)


def build_seeded(arch: Architecture, seed: int = 0) -> nn.Module:
    """``build_model(arch)`` with initial weights drawn from ``seed`` (global RNG untouched)."""
    from convnas.run.runner import check_model_bytes

    check_model_bytes(lambda: build_model(arch), "this architecture's network", key=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(arch)


def save_trained(
    path: str | pathlib.Path,
    model: nn.Module,
    arch: Architecture,
    *,
    metrics: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write ``model.pt`` (unfolded state_dict + architecture), ``architecture.yaml`` beside it."""
    path = pathlib.Path(path)
    arch = arch.with_metadata(trained_metrics=dict(metrics or {}))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(
        path, {"kind": TRAINED_KIND, "architecture": arch.to_dict(), "state_dict": state}
    )
    arch.save(path.with_name("architecture.yaml"))
    return path


def load_trained(path: str | pathlib.Path) -> tuple[nn.Module, Architecture]:
    """Rebuild a network saved by :func:`save_trained`; returns ``(model in eval mode, arch)``."""
    state = load_checkpoint(path)
    if state.get("kind") != TRAINED_KIND:
        raise CheckpointError(
            f"{path} is not a trained convnas model (kind {TRAINED_KIND!r}), but kind "
            f"{state.get('kind')!r}; pass the model.pt written by `convnas train`"
        )
    arch = Architecture.from_dict(state["architecture"])
    model = build_model(arch)
    _load_state(model, state["state_dict"], path)
    return model.eval(), arch


def _load_state(model: nn.Module, state_dict: Mapping[str, Any], path: Any) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the weights in {path} do not fit the network their architecture builds: {exc}"
        ) from None


def export_architecture(
    arch: Architecture,
    out_dir: str | pathlib.Path,
    fmt: str,
    *,
    state_dict: Mapping[str, Any] | None = None,
    name: str = "model",
    seed: int = 0,
    normalize: bool = False,
) -> pathlib.Path:
    """Export ``arch`` (with trained ``state_dict`` of the unfolded model, if given) as ``fmt``.

    Without ``state_dict`` the weights are freshly initialised from ``seed``, so the export
    equals ``deploy_model(build_seeded(arch, seed))``. ``normalize`` makes the TorchScript and
    ONNX graphs take raw pixels in [0, 1] (see :class:`ExportedModel`); a ``state_dict`` export
    is the bare network's and always expects normalised input.

    Returns:
        The path of the written file, ``out_dir/NAME<suffix>``.

    Raises:
        ConfigError: unknown format.
        OptionalDependencyError: ``onnx`` without the ``onnx`` package.
        ConvNASError: the traced/ONNX graph does not reproduce the folded model.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"export format must be one of {FORMATS}, but got {fmt!r}")
    if fmt == "onnx":
        _onnx()  # fail before building anything
    path = pathlib.Path(out_dir) / f"{name}{SUFFIXES[fmt]}"
    if fmt == "yaml":
        return arch.save(path)
    model = build_seeded(arch, seed)
    if state_dict is not None:
        _load_state(model, state_dict, "the given state_dict")
    if fmt == "state_dict":
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        arch.save(path.with_suffix(".yaml"))
        logger.info("exported %s as %s to %s", name, fmt, path)
        return path
    deploy = exported_model(deploy_model(model), arch, normalize)
    if fmt == "torchscript":
        atomic_write_bytes(path, _torchscript_bytes(deploy, arch))
    else:
        atomic_write_bytes(path, _onnx_bytes(deploy, arch))
    logger.info("exported %s as %s to %s", name, fmt, path)
    return path


def _check_close(expected: torch.Tensor, actual: Any, what: str) -> None:
    actual = torch.as_tensor(actual)
    if actual.shape != expected.shape or not torch.allclose(
        actual.to(expected.dtype), expected, atol=CHECK_ATOL, rtol=CHECK_RTOL
    ):
        raise ConvNASError(
            f"the {what} does not reproduce the folded model (|diff| <= {CHECK_ATOL} must hold); "
            "an operator probably branches on tensor values or shapes"
        )


def _trace(deploy: nn.Module, arch: Architecture) -> torch.jit.ScriptModule:
    x = example_input(arch)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return torch.jit.trace(deploy, x, check_trace=False)
    except Exception as exc:  # tracing failures come as many types from operator code
        raise ConvNASError(
            f"TorchScript tracing of the folded model failed ({type(exc).__name__}: {exc}); "
            f"operators used: {sorted(arch.ops_used())}"
        ) from exc


def _torchscript_bytes(deploy: nn.Module, arch: Architecture) -> bytes:
    traced = _trace(deploy, arch)
    x = example_input(arch, batch_size=2)
    with torch.no_grad():
        _check_close(deploy(x), traced(x), "traced TorchScript module")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(traced, buffer)
    return buffer.getvalue()


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise OptionalDependencyError("onnx", "ONNX export", extra="onnx") from None
    return onnx


def _onnx_bytes(deploy: nn.Module, arch: Architecture) -> bytes:
    onnx = _onnx()
    with tempfile.TemporaryDirectory() as tmp:
        target = pathlib.Path(tmp) / "model.onnx"
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    deploy,
                    (example_input(arch),),
                    str(target),
                    dynamo=False,  # the dynamo exporter needs onnxscript, not in the extra
                    input_names=["input"],
                    output_names=["logits"],
                    dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                )
        except Exception as exc:  # the exporter raises many types from operator code
            raise ConvNASError(
                f"ONNX export of the folded model failed ({type(exc).__name__}: {exc}); "
                f"operators used: {sorted(arch.ops_used())}"
            ) from exc
        proto = onnx.load(str(target))
    shape, mean, std = input_normalisation(arch)
    meta: dict[str, Any] = {"input_shape": shape, "input_mean": mean, "input_std": std}
    meta["normalizes_input"] = bool(getattr(deploy, "normalize", False))
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def _is_torchscript(path: pathlib.Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in n or n.endswith("constants.pkl") for n in archive.namelist())


def load_exported(path: str | pathlib.Path, *, normalize: bool = False) -> nn.Module:
    """Load an export (yaml, state_dict, TorchScript) or a ``model.pt`` of ``convnas train``.

    Returns an eval-mode :class:`ExportedModel` around the folded network (``normalize``: it
    takes raw pixels in [0, 1]), or the TorchScript module as it was exported. A YAML file gives
    fresh weights; a state-dict ``NAME.pt`` needs its ``NAME.yaml`` beside it. ONNX files are
    for ONNX runtimes.

    Raises:
        CheckpointError: the file is missing or not a convnas export.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"export not found: {path}")
    if path.suffix in (".yaml", ".yml", ".json"):
        arch = load_architecture(path)
        return exported_model(deploy_model(build_model(arch)), arch, normalize)
    if path.suffix == ".onnx":
        raise CheckpointError(f"{path} is an ONNX model: load it with an ONNX runtime")
    if _is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    plain = _plain_state_dict(path)
    if plain is not None:
        arch_file = path.with_suffix(".yaml")
        if not arch_file.is_file():
            raise CheckpointError(
                f"{path} is a plain state dict; its architecture {arch_file} must lie beside it"
            )
        arch = load_architecture(arch_file)
        model = build_model(arch)
        _load_state(model, plain, path)
        return exported_model(deploy_model(model), arch, normalize)
    state = load_checkpoint(path)
    if state.get("kind") == TRAINED_KIND:
        model, arch = load_trained(path)
        return exported_model(deploy_model(model), arch, normalize)
    if state.get("kind") != DEPLOY_KIND:  # DEPLOY_KIND: state_dict exports before plain ones
        raise CheckpointError(
            f"{path} is not a convnas export (kind {DEPLOY_KIND!r}), but kind {state.get('kind')!r}"
        )
    arch = Architecture.from_dict(state["architecture"])
    model = deploy_model(build_model(arch))
    _load_state(model, state["state_dict"], path)
    return exported_model(model, arch, normalize)


def _plain_state_dict(path: pathlib.Path) -> dict[str, torch.Tensor] | None:
    """The file's ``{name: tensor}`` when it is a plain state dict, else ``None``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types; load_checkpoint then names the problem
        return None
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    return None


def load_weights(path: str | pathlib.Path, arch: Architecture) -> dict[str, torch.Tensor]:
    """The unfolded state dict of ``arch`` in ``path``: a trained ``model.pt`` or a plain one.

    Raises:
        CheckpointError: unreadable, or a ``model.pt`` of another network.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights not found: {path}")
    plain = _plain_state_dict(path)
    if plain is not None:
        return plain
    model, trained = load_trained(path)
    if not trained.same_network(arch):
        raise CheckpointError(
            f"{path} holds weights of another network than the architecture given; pass the "
            "architecture.yaml beside it, or --weights alone"
        )
    return model.state_dict()


def run_architectures(
    run_dir: str | pathlib.Path, *, trial: int | None = None, pareto: bool = False
) -> list[tuple[str, Architecture]]:
    """``(name, architecture)`` pairs selected from a run directory.

    Args:
        trial: one Optuna trial; its Pareto file when there is one, else the architecture the
            study stored for it.
        pareto: every ``architectures/pareto_*.yaml`` and ``darts_final.yaml`` of the run.

    Raises:
        ConfigError: nothing or both selected, no such trial, or no result files.
    """
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    if (trial is None) == (not pareto):
        raise ConfigError("select exactly one of a trial number (--trial N) or --pareto")
    arch_dir = run_dir / "architectures"
    if pareto:
        files = sorted(arch_dir.glob("pareto_*.yaml")) + sorted(arch_dir.glob("darts_final.yaml"))
        if not files:
            raise ConfigError(f"{arch_dir} holds no pareto_*.yaml or darts_final.yaml")
        return [(f.stem, load_architecture(f)) for f in files]
    if trial is None:  # unreachable after the check above; it narrows the type
        raise ConfigError("select a trial number (--trial N) or --pareto")
    file = arch_dir / f"pareto_{trial:04d}.yaml"
    if file.is_file():
        return [(f"trial_{trial:04d}", load_architecture(file))]
    return [(f"trial_{trial:04d}", _study_architecture(run_dir, trial))]


def _study_architecture(run_dir: pathlib.Path, number: int) -> Architecture:
    from convnas.strategies.optuna.resume import open_study_readonly, run_study_name

    config = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
    strategy = (config or {}).get("strategy") or {}
    url = strategy.get("storage") or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    if url.startswith("sqlite:///") and not pathlib.Path(url[len("sqlite:///") :]).is_file():
        raise ConfigError(f"trial {number}: {run_dir} has neither its Pareto file nor a study.db")
    name = run_study_name(run_dir, strategy.get("storage"), strategy.get("study_name") or "convnas")
    # Read-only: nothing is created wherever the run's config points (a journal that is not
    # there is an error, a database's tables are not made).
    study = open_study_readonly(str(url), str(name))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise ConfigError(f"the study has trials 0..{len(trials) - 1}, but got trial {number}")
    t = trials[number]
    if "architecture" not in t.user_attrs:
        raise ConfigError(f"trial {number} ({t.state.name}) recorded no architecture")
    metrics = {
        k: v
        for k in ("accuracy", *COST_OBJECTIVES)
        if isinstance(v := t.user_attrs.get(k), (int, float))
    }
    return Architecture.from_dict(t.user_attrs["architecture"]).with_metadata(
        trial=number, state=t.state.name, metrics=metrics, strategy="optuna"
    )
