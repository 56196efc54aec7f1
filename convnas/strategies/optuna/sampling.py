"""Turn a search space into Optuna distributions and a trial into an Architecture.

Every decision becomes a categorical parameter ``"<decision>"`` over its candidates' labels.
When ``sample_hparams`` is on, each hyper-parameter that a candidate leaves free is a
conditional categorical ``"<decision>.<op>.<name>"`` over the operator's registered search space.
Choices that are not plain scalars (tuples such as CSG slice shapes) are offered by their text
form and mapped back.
"""

from __future__ import annotations

from typing import Any

from convnas.operators import operator_info
from convnas.search_space.architecture import Architecture, Choice
from convnas.search_space.space import Decision, SearchSpace

__all__ = ["sample_architecture"]

_SCALARS = (type(None), bool, int, float, str)


def _encode(value: Any) -> Any:
    return value if isinstance(value, _SCALARS) else repr(value)


def sample_architecture(trial: Any, space: SearchSpace, *, sample_hparams: bool) -> Architecture:
    """Ask ``trial`` for one candidate per decision (and its free hyper-parameters).

    For the ``darts`` cell space each intermediate node samples a pair of distinct inputs
    (``"<cell>/<node>.inputs"``) and an operation other than ``none`` for each kept edge.
    """
    if space.name == "darts":
        return _sample_darts(trial, space, sample_hparams=sample_hparams)
    choices = [
        _sample_choice(trial, decision, decision.candidates, sample_hparams)
        for decision in space.decisions()
        if decision.sites
    ]
    return Architecture(space.name, space.settings(), tuple(choices))


def _sample_choice(trial: Any, decision: Decision, candidates: Any, sample_hparams: bool) -> Choice:
    labels = [c.label for c in candidates]
    index = labels.index(trial.suggest_categorical(decision.name, labels))
    cand = candidates[index]
    hparams = dict(cand.hparams)
    if sample_hparams:
        space = operator_info(cand.op).search_space
        for name, options in space.items():
            if name in cand.hparams or len(options) < 2:
                continue
            encoded = [_encode(v) for v in options]
            picked = trial.suggest_categorical(f"{decision.name}.{cand.op}.{name}", encoded)
            hparams[name] = options[encoded.index(picked)]
    return Choice(decision.name, cand.op, hparams)


def _sample_darts(trial: Any, space: Any, *, sample_hparams: bool) -> Architecture:
    by_name = {d.name: d for d in space.decisions() if d.sites}
    kinds = sorted({name.split("/")[0] for name in by_name}, key=["normal", "reduce"].index)
    choices = []
    for kind in kinds:
        for node in range(2, space.steps + 2):
            pairs = [f"{a},{b}" for a in range(node) for b in range(a + 1, node)]
            picked = trial.suggest_categorical(f"{kind}/{node}.inputs", pairs)
            for src in (int(v) for v in picked.split(",")):
                decision = by_name[f"{kind}/{node}<-{src}"]
                offered = tuple(c for c in decision.candidates if c.op != "none")
                choices.append(_sample_choice(trial, decision, offered, sample_hparams))
    return Architecture(space.name, space.settings(), tuple(choices))
