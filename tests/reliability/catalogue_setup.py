"""Tiny configs, a CLI runner and the assertions shared by the catalogue tests (issue 18)."""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import pathlib
import subprocess
import sys
from typing import Any

import yaml

from convnas.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]

DATA = {
    "dataset": "synthetic",
    "val_fraction": 0.25,
    "augment": False,
    "options": {"num_classes": 4, "input_shape": [3, 8, 8], "size": 64, "test_size": 16},
}
SPACE = {"kind": "resnet", "depth": 8, "widths": [4, 8, 8], "candidates": ["conv_3x3", "c2sp"]}
OPTUNA = {
    "kind": "optuna",
    "n_trials": 2,
    "population_size": 2,
    "objectives": ["accuracy", "params"],
    "evaluator": {"kind": "supernet", "epochs": 1, "batch_size": 16},
}
DARTS = {"kind": "darts", "epochs": 2, "batch_size": 16, "steps_per_epoch": 2}


def config(root: pathlib.Path, name: str = "run", **sections: Any) -> dict[str, Any]:
    """A search of a few seconds on 64 synthetic 8x8 images; run dir ``root/runs/NAME``."""
    data = {
        "name": name,
        "seed": 0,
        "device": "cpu",
        "data": copy.deepcopy(DATA),
        "space": copy.deepcopy(SPACE),
        "strategy": copy.deepcopy(OPTUNA),
        "output": {"root": str(root / "runs"), "progress": False, "report": False},
    }
    data.update(copy.deepcopy(sections))
    return data


def write(path: pathlib.Path, data: Any) -> pathlib.Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def snapshot(root: pathlib.Path, *, exclude: tuple[pathlib.Path, ...] = ()) -> dict[str, str]:
    """Every path under ``root`` (links not followed) with a hash of its contents."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = pathlib.Path(dirpath)
        if any(here == e or e in here.parents for e in exclude):
            dirnames[:] = []
            continue
        for name in [*dirnames, *filenames]:
            path = here / name
            if any(path == e for e in exclude):
                continue
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def cli(argv: list[str], capfd: Any) -> tuple[int, str, str]:
    """``convnas ARGV`` in this process; returns (exit code, stdout, stderr)."""
    capfd.readouterr()
    # Handlers made by an earlier in-process command hold that test's (closed) stream.
    for name in ("", "optuna"):
        for handler in logging.getLogger(name).handlers:
            ours = not type(handler).__module__.startswith("_pytest")
            if ours and isinstance(handler, logging.StreamHandler):
                handler.stream = sys.stderr
                if hasattr(handler.formatter, "stream"):  # colorlog, as Optuna uses it
                    handler.formatter.stream = sys.stderr
    rc = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return rc, out, err


def assert_clean_error(
    rc: int, out: str, err: str, command: str, *needles: str, code: int = 2
) -> str:
    """Exit ``code``, exactly one ``convnas COMMAND: error:`` line holding every needle, and no
    traceback anywhere; returns the line."""
    prefix = f"convnas {command}: error:"
    lines = [line for line in err.splitlines() if line.startswith(prefix)]
    assert rc == code, (rc, out[-2000:], err[-2000:])
    assert len(lines) == 1, err
    assert "Traceback" not in out + err, err
    assert "weights_only=False" not in out + err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def env() -> dict[str, str]:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )


def popen(args: list[str], cwd: pathlib.Path, log: pathlib.Path) -> subprocess.Popen:
    """``python -m convnas ARGS`` in its own session, output to ``log``."""
    with open(log, "ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "convnas", *map(str, args)],
            cwd=cwd,
            env=env(),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
