"""Reference networks built from registered operators.

- :mod:`convnas.models.cifar_resnet`: the CIFAR ResNets of He et al. (depth 6n+2), every 3x3
  conv position an operator;
- :mod:`convnas.models.imagenet_resnet`: the torchvision-layout bottleneck ResNets (cost tables);
- :mod:`convnas.models.darts_network`: the discrete DARTS cell network.
"""

from __future__ import annotations

from convnas.models.cifar_resnet import (
    BasicBlock,
    CifarResNet,
    ConvFactory,
    cifar_resnet,
    resnet_layout,
)
from convnas.models.darts_network import CellNetwork, EdgeFactory, edge_name, edges_of_cell
from convnas.models.imagenet_resnet import Bottleneck, ImageNetResNet, resnet50, resnet101

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CellNetwork",
    "CifarResNet",
    "ConvFactory",
    "EdgeFactory",
    "ImageNetResNet",
    "cifar_resnet",
    "edge_name",
    "edges_of_cell",
    "resnet50",
    "resnet101",
    "resnet_layout",
]
