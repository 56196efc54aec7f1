"""A drop-in ``OPS`` / ``PRIMITIVES`` for DARTS-family code bases.

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019; the same table
drives PC-DARTS, Fair-DARTS and DARTS-. Their ``operations.py`` maps a primitive name to
``factory(C, stride, affine)`` returning a module from ``C`` to ``C`` channels, called with
stride 2 on the edges of reduction cells that leave the cell inputs. :func:`ops` returns that
table for the DARTS primitives and every registered operator; :func:`primitives` the names.

Usage in a DARTS code base (``operations.py`` / ``genotypes.py``)::

    from convnas.integrations.darts import ops, primitives

    OPS = ops()
    PRIMITIVES = primitives(exclude=["sw*"])

CSG operators share one slice generator per network. By default (``context="per_network"``)
each factory call finds the network being built, the outermost ``nn.Module`` whose ``__init__``
is running (DARTS's ``Network``), and builds on that network's own ``BuildContext(owner="layer")``:
the network's first CSG layer owns the generator as a submodule, so ``model.new()`` makes a new
generator and ``parameters()`` / ``state_dict()`` / ``get_weights()`` include it, with nothing
asked of the host code. An explicit :class:`~convnas.operators.BuildContext` is refused when a
second network is built on it (it would share the first one's generator).

Semantics: ``kind="conv"`` operators become ReLU-op-BN (as DARTS's ``ReLUConvBN``), blocks
(pools, skip, zero, sep/dil convs) are used as they are. The BatchNorm that DARTS's search
``MixedOp`` appends to pooling stays the host code's business, as in DARTS. An operator that only
supports stride 1 (``sw``) gets a 2x2 average pool in front on reduction edges (OPERATORS.md §4).
"""

from __future__ import annotations

import fnmatch
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any

from torch import nn

from convnas.errors import OperatorArgumentError
from convnas.operators import BuildContext, list_operators, operator_info
from convnas.operators.darts_edge import DARTS_PRIMITIVES, darts_edge_op

__all__ = [
    "DARTS_PRIMITIVES",
    "PER_NETWORK",
    "DartsOpFactory",
    "as_patterns",
    "darts_op",
    "network_context",
    "network_under_construction",
    "ops",
    "primitives",
    "select_names",
    "with_stride",
]

Patterns = str | Iterable[str] | None

PER_NETWORK = "per_network"
"""``context=`` value of :func:`ops`: one build context per network being built (the default)."""

# network being built -> its context; explicit context -> the network it was first used in.
_NETWORK_CONTEXTS: weakref.WeakKeyDictionary[nn.Module, BuildContext] = weakref.WeakKeyDictionary()
_CONTEXT_NETWORKS: weakref.WeakKeyDictionary[BuildContext, weakref.ref[nn.Module]] = (
    weakref.WeakKeyDictionary()
)


def network_under_construction() -> nn.Module | None:
    """The outermost ``nn.Module`` whose ``__init__`` is running in this thread, or None.

    In DARTS-family code the ``OPS`` factories are called from ``MixedOp.__init__`` inside
    ``Cell.__init__`` inside ``Network.__init__``: this returns that network.
    """
    found: nn.Module | None = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "__init__":
            owner = frame.f_locals.get("self")
            if isinstance(owner, nn.Module):
                found = owner
        frame = frame.f_back
    del frame
    return found


def network_context(network: nn.Module) -> BuildContext | None:
    """The build context that ``ops(context="per_network")`` factories used for ``network``."""
    return _NETWORK_CONTEXTS.get(network)


def _context_for_call(context: BuildContext | str | None, name: str) -> BuildContext | None:
    """The context one factory call builds on (see :func:`ops`)."""
    if context is None:
        return None
    network = network_under_construction()
    if isinstance(context, str):  # PER_NETWORK; validated by ops()
        if network is None:
            return None  # no network being built: the layer owns its generator
        if network not in _NETWORK_CONTEXTS:
            _NETWORK_CONTEXTS[network] = BuildContext(owner="layer")
        return _NETWORK_CONTEXTS[network]
    if network is not None:
        first = _CONTEXT_NETWORKS.get(context)
        first_network = first() if first is not None else None
        if first_network is None:
            _CONTEXT_NETWORKS[context] = weakref.ref(network)
        elif first_network is not network:
            raise OperatorArgumentError(
                f"operator {name!r}: this BuildContext was used to build another "
                f"{type(first_network).__name__}, and a second network "
                f"({type(network).__name__}) would share its modules (the CSG generator), as "
                "DARTS's model.new() would. Use ops(context='per_network') (the default), or "
                "a fresh BuildContext per network."
            )
    return context


def as_patterns(value: Patterns, arg: str) -> tuple[str, ...] | None:
    """``value`` (None, one pattern or several) as a tuple of patterns, or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    out = tuple(value)
    if not all(isinstance(p, str) for p in out):
        raise OperatorArgumentError(f"{arg} must be a pattern or a list of patterns, got {value!r}")
    return out


def select_names(names: Iterable[str], include: Patterns = None, exclude: Patterns = None) -> list:
    """The names matching any ``include`` pattern (all when None) and no ``exclude`` pattern.

    Patterns are shell-style (``fnmatch``: ``*``, ``?``, ``[ab]``); the order of ``names`` is kept.
    """
    inc, exc = as_patterns(include, "include"), as_patterns(exclude, "exclude")
    return [
        n
        for n in names
        if (inc is None or any(fnmatch.fnmatchcase(n, p) for p in inc))
        and not (exc and any(fnmatch.fnmatchcase(n, p) for p in exc))
    ]


def primitives(include: Patterns = None, exclude: Patterns = None) -> list[str]:
    """Primitive names: the 8 DARTS primitives in DARTS order, then every other registered
    operator (conv operators and plugin blocks) sorted, filtered by ``include``/``exclude``.

    Example:
        >>> primitives(include=["none", "*pool*", "skip_connect", "c2sp", "osep_3x3"])
        ['none', 'max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'c2sp', 'osep_3x3']
    """
    registered = list_operators()
    base = [p for p in DARTS_PRIMITIVES if p in registered]
    names = base + [n for n in registered if n not in base]
    return select_names(names, include, exclude)


def with_stride(name: str, stride: int, build: Callable[[int], nn.Module]) -> nn.Module:
    """``build(stride)``, or a 2x2 average pool then ``build(1)`` for a stride-1-only operator.

    Raises:
        OperatorArgumentError: the operator supports neither ``stride`` nor stride 1.
    """
    strides = operator_info(name).strides
    if stride in strides:
        return build(stride)
    if 1 in strides and stride > 1:
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True)
        return nn.Sequential(pool, build(1))
    raise OperatorArgumentError(
        f"operator {name!r} supports stride in {strides}, but got stride={stride!r}"
    )


def darts_op(
    name: str,
    channels: int,
    stride: int,
    *,
    affine: bool = True,
    hparams: Mapping[str, Any] | None = None,
    context: BuildContext | None = None,
) -> nn.Module:
    """One DARTS edge operation from ``channels`` to ``channels`` (see the module docstring).

    Args:
        name: a registered operator.
        channels: C, the input and output channels.
        stride: 1, or 2 on reduction edges.
        affine: affine BatchNorm (DARTS: False in the search network, True in the final one).
        hparams: hyper-parameters of the operator.
        context: a build context whose ``modules`` the host network owns (CSG generator);
            without one each CSG layer owns its own generator.
    """
    kwargs = dict(hparams or {})
    if context is not None:
        kwargs["context"] = context
    return with_stride(
        name,
        stride,
        lambda s: darts_edge_op(name, kwargs, channels, s, affine=affine, search=False),
    )


def _check_context(context: Any) -> BuildContext | str | None:
    if context is None or context == PER_NETWORK or isinstance(context, BuildContext):
        return context
    raise OperatorArgumentError(
        f"context must be {PER_NETWORK!r}, a BuildContext or None, but got {context!r}"
    )


class DartsOpFactory:
    """``factory(C, stride, affine)`` for one operator, as the values of DARTS's ``OPS``.

    ``affine`` may be omitted; it then defaults to the ``affine`` given to :func:`ops`.
    ``context`` is as in :func:`ops`.
    """

    def __init__(
        self,
        name: str,
        *,
        affine: bool = True,
        hparams: Mapping[str, Any] | None = None,
        context: BuildContext | str | None = PER_NETWORK,
    ) -> None:
        operator_info(name)  # unknown names fail here, with close matches
        self.name, self.affine = name, affine
        self.hparams = dict(hparams or {})
        self.context = _check_context(context)

    def __call__(self, C: int, stride: int, affine: bool | None = None) -> nn.Module:  # noqa: N803
        return darts_op(
            self.name,
            C,
            stride,
            affine=self.affine if affine is None else affine,
            hparams=self.hparams,
            context=_context_for_call(self.context, self.name),
        )

    def __repr__(self) -> str:
        extra = f", hparams={self.hparams}" if self.hparams else ""
        return f"DartsOpFactory({self.name!r}, affine={self.affine}{extra})"


def ops(
    affine: bool = True,
    *,
    include: Patterns = None,
    exclude: Patterns = None,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    context: BuildContext | str | None = PER_NETWORK,
) -> dict[str, DartsOpFactory]:
    """The DARTS ``OPS`` table: name -> ``factory(C, stride, affine)``.

    Args:
        affine: the default of each factory's ``affine`` argument.
        include, exclude: shell patterns selecting names (see :func:`primitives`).
        hparams: operator name -> its hyper-parameters, e.g. ``{"osep_3x3": {"n_sep": 3}}``.
        context: ``"per_network"`` (default): the operators built while a network's
            ``__init__`` runs share one ``BuildContext(owner="layer")`` of that network (its
            first CSG layer owns the generator; see :func:`network_under_construction`);
            operators built outside any network own their modules. A ``BuildContext``: shared
            by every operator built, for one network only (a second network built on it is an
            error). None: each CSG layer owns its own generator.
    """
    context = _check_context(context)
    hparams = dict(hparams or {})
    names = primitives(include, exclude)
    unknown = sorted(set(hparams) - set(list_operators()))
    if unknown:
        raise OperatorArgumentError(f"hparams names unregistered operators {unknown}")
    return {
        n: DartsOpFactory(n, affine=affine, hparams=hparams.get(n), context=context) for n in names
    }


def __getattr__(name: str) -> Any:
    # Module-level OPS / PRIMITIVES, read from the registry when accessed (plugins included).
    if name == "OPS":
        return ops()
    if name == "PRIMITIVES":
        return primitives()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
