"""Example convnas plugin: registers ``example_dwsep_3x3`` through an entry point."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
