"""``convnas rank`` and ``convnas score`` through ``convnas.cli.main`` on a tiny digits run."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from convnas.cli import main
from tests.run.test_ranking import tiny_run

pytest.importorskip("optuna")

RANK = ["--epochs", "1", "--batch-size", "32", "--max-steps", "2", "--resamples", "50"]
RANK += ["--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tiny_run(tmp_path_factory)


@pytest.fixture
def run(built, tmp_path):
    return pathlib.Path(shutil.copytree(built, tmp_path / "tiny"))


def _one_error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"convnas {command}: error: ")
    return lines[0]


def test_score_prints_one_line_per_file_and_rank_prints_the_table(run, capsys):
    files = sorted((run / "architectures").glob("pareto_*.yaml"))
    assert main(["score", str(run), *map(str, files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(files)
    for line, file in zip(lines, files, strict=True):
        assert line.startswith(f"{file}: one-shot accuracy 0.") and "validation split" in line
    assert main(["rank", str(run), "--k", "3", *RANK]) == 0
    out = capsys.readouterr().out
    assert "ranked 3 architecture(s) (uniform, seed 0)" in out and "3 retrain(s) run" in out
    for label in ("one-shot (supernet) accuracy", "params (trainable)", "MACs / image"):
        assert label in out
    assert f"wrote {run / 'rank.json'}" in out and (run / "rank.csv").is_file()
    assert main(["rank", str(run), "--k", "3", *RANK]) == 0  # resumed: nothing retrained
    assert "0 retrain(s) run, 3 reused" in capsys.readouterr().out


def test_bad_input_gives_one_error_line_and_exit_2(run, tmp_path, capsys):
    assert main(["rank", str(run), "--k", "2", *RANK]) == 2
    assert "k: must be null or an integer >= 3, but got 2" in _one_error(
        capsys.readouterr().err, "rank"
    )
    assert main(["rank", str(tmp_path / "nowhere"), *RANK]) == 2
    assert "does not exist" in _one_error(capsys.readouterr().err, "rank")
    assert main(["rank", str(run), "--k", "3", "--data", "limit_train=-4", *RANK]) == 2
    assert "data.limit_train" in _one_error(capsys.readouterr().err, "rank")
    assert main(["rank", str(run), "--k", "3", "--noise-subset", "9", *RANK]) == 2
    assert "noise_subset" in _one_error(capsys.readouterr().err, "rank")
    not_arch = tmp_path / "not_arch.yaml"
    not_arch.write_text("just: text\n")
    assert main(["score", str(run), str(not_arch)]) == 2
    assert str(not_arch) in _one_error(capsys.readouterr().err, "score")
    (tmp_path / "empty").mkdir()
    assert main(["score", str(tmp_path / "empty"), str(not_arch)]) == 2
    assert "not a run directory" in _one_error(capsys.readouterr().err, "score")
