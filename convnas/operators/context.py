"""The build context: modules that the layers of one network share.

The associative convolution (CSG) generates every layer's kernel from one slice generator per
network. Who owns that generator depends on the context's ``owner``:

- ``"network"`` (the default): the network registers :attr:`BuildContext.modules` as one of its
  submodules; layers keep unregistered references.
- ``"layer"``: the first layer built with a key registers the module as its own submodule, later
  layers keep unregistered references. The module is then in the network's module tree as soon
  as that layer is, with no step asked of the network: ``parameters()``, ``state_dict()``,
  ``load_state_dict``, ``copy.deepcopy`` and name-based parameter filters see it once, under the
  first layer's name. This is what host code bases that know nothing of convnas need (DARTS).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from convnas.errors import OperatorArgumentError

__all__ = ["OWNERS", "BuildContext", "SharedModules", "attach_shared"]

OWNERS = ("network", "layer")


class SharedModules(nn.ModuleDict):
    """The container a network registers to own the modules of its :class:`BuildContext`.

    :func:`convnas.fold` empties it once every layer has been folded, since folded layers no
    longer read the shared modules.
    """


class BuildContext:
    """Holds the modules shared by the layers of one network.

    Args:
        owner: ``"network"``: the network that creates the context must register
            :attr:`modules` as one of its submodules (``self.shared = context.modules``) so that
            it owns them. ``"layer"``: the first layer that asks for a module registers it (see
            :meth:`acquire`); :attr:`modules` then stays empty, so registering it too is harmless.

    Use one context per network: a context handed to a second network would share its modules
    with the first.
    """

    def __init__(self, owner: str = "network") -> None:
        if owner not in OWNERS:
            raise OperatorArgumentError(f"owner must be one of {OWNERS}, but got {owner!r}")
        self.owner = owner
        self.modules = SharedModules()
        self._by_layers: dict[str, nn.Module] = {}  # owner="layer": held by their first layer

    @staticmethod
    def _safe(key: str) -> str:
        return re.sub(r"[^0-9A-Za-z_]", "_", key)

    def acquire(self, key: str, factory: Callable[[], nn.Module]) -> tuple[nn.Module, bool]:
        """The module stored under ``key`` (made with ``factory`` the first time), and whether
        the calling layer must register it as its own submodule (``owner="layer"``, first call).
        """
        safe = self._safe(key)
        if self.owner == "network":
            if safe not in self.modules:
                self.modules[safe] = factory()
            return self.modules[safe], False
        if safe in self._by_layers:
            return self._by_layers[safe], False
        module = self._by_layers[safe] = factory()
        return module, True

    def shared(self, key: str, factory: Callable[[], nn.Module]) -> nn.Module:
        """Return the module stored under ``key``, creating it with ``factory`` the first time."""
        return self.acquire(key, factory)[0]

    def keys(self) -> list[str]:
        """The keys of the shared modules."""
        return [*self.modules.keys(), *self._by_layers]

    def __len__(self) -> int:
        return len(self.modules) + len(self._by_layers)

    def __repr__(self) -> str:
        extra = "" if self.owner == "network" else f", owner={self.owner!r}"
        return f"BuildContext(shared={self.keys()}{extra})"


def attach_shared(owner: nn.Module, name: str, module: nn.Module) -> None:
    """Give ``owner`` a reference to ``module`` without making it a submodule of ``owner``."""
    object.__setattr__(owner, name, module)
