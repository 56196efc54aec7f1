#!/usr/bin/env python3
"""Launch a search from a YAML file: ``python run_search.py configs/quickstart.yaml``."""

import sys

from convnas.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["search", *sys.argv[1:]]))
