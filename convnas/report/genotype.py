"""A DARTS architecture in the notation of the DARTS code base, and its cells as graph data.

DARTS (Liu et al., ICLR 2019, ``cnn/genotypes.py``) writes a cell as a ``Genotype`` namedtuple:
for every intermediate node, in node order, two ``(operation, input)`` pairs, where input 0 is
``c_{k-2}``, 1 is ``c_{k-1}`` and ``j >= 2`` is intermediate node ``j - 2``; ``*_concat`` names
the nodes whose outputs are concatenated into ``c_{k}``. convnas names the same edge
``normal/NODE<-INPUT`` with the same numbering (:func:`convnas.models.darts_network.edge_name`),
so the translation is direct. Operator hyper-parameters have no place in that notation and are
dropped; the architecture file keeps them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from convnas.errors import ConfigError

__all__ = ["CellGraph", "cell_graphs", "darts_genotype"]

_EDGE = re.compile(r"^(normal|reduce)/(\d+)<-(\d+)$")
KINDS = ("normal", "reduce")


@dataclass(frozen=True)
class CellGraph:
    """One cell: ``edges`` are ``(input, node, op)`` with the DARTS numbering above."""

    kind: str
    steps: int
    edges: tuple[tuple[int, int, str], ...]
    concat: tuple[int, ...]


def _settings(arch: Any) -> tuple[int, int]:
    settings = dict(arch.settings)
    steps = int(settings.get("steps", 4))
    multiplier = int(settings.get("multiplier", steps))
    return steps, multiplier


def cell_graphs(arch: Any) -> tuple[CellGraph, ...]:
    """The normal and the reduction cell of a ``darts`` architecture.

    Raises:
        ConfigError: the architecture is not of the ``darts`` space or names an edge that is
            not ``normal|reduce/NODE<-INPUT``.
    """
    if arch.space != "darts":
        raise ConfigError(
            f"a genotype needs an architecture of the 'darts' space, but got {arch.space!r}"
        )
    steps, multiplier = _settings(arch)
    edges: dict[str, list[tuple[int, int, str]]] = {k: [] for k in KINDS}
    for choice in arch.choices:
        match = _EDGE.match(choice.decision)
        if match is None:
            raise ConfigError(
                f"a DARTS decision must look like 'normal/3<-1', but got {choice.decision!r}; "
                f"is this a darts_final.yaml?"
            )
        kind, node, src = match.group(1), int(match.group(2)), int(match.group(3))
        edges[kind].append((src, node, choice.op))
    concat = tuple(range(2 + steps - multiplier, 2 + steps))
    return tuple(
        CellGraph(k, steps, tuple(sorted(edges[k], key=lambda e: (e[1], e[0]))), concat)
        for k in KINDS
    )


def _concat_text(concat: tuple[int, ...]) -> str:
    if concat and list(concat) == list(range(concat[0], concat[-1] + 1)):
        return f"range({concat[0]}, {concat[-1] + 1})"
    return repr(list(concat))


def darts_genotype(arch: Any) -> str:
    """``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6), reduce=[...],
    reduce_concat=range(2, 6))`` for a ``darts`` architecture (see the module docstring)."""
    parts = []
    for cell in cell_graphs(arch):
        pairs = ", ".join(f"({op!r}, {src})" for src, _, op in cell.edges)
        parts.append(f"{cell.kind}=[{pairs}], {cell.kind}_concat={_concat_text(cell.concat)}")
    return f"Genotype({', '.join(parts)})"
