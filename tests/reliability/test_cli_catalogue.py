"""Issue 18's catalogue of user mistakes, driven through the CLI: each ends in exit code 2, one
``convnas COMMAND: error: ...`` line naming the problem, no traceback, nothing written outside
the run directory, and (for a search refused before it starts) no run directory at all.

The cases that need processes, signals or a finished run are in ``test_run_dir_safety.py``.
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from convnas.errors import ConvNASError
from tests.reliability.catalogue_setup import DARTS, assert_clean_error, cli, config, snapshot
from tests.reliability.catalogue_setup import write as write_file
from tests.reliability.test_config_fuzz import mutated

_COUNTER = itertools.count()


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[pathlib.Path], list[str]]
    needles: tuple[str, ...]
    command: str = "search"


def _base(tmp: pathlib.Path, **sections) -> pathlib.Path:
    return write_file(tmp / "a.yaml", config(tmp, **sections))


def _set(*items: str) -> Callable[[pathlib.Path], list[str]]:
    def argv(tmp: pathlib.Path) -> list[str]:
        out = ["search", str(_base(tmp))]
        for item in items:
            out += ["--set", item]
        return out

    return argv


def _file(text: str) -> Callable[[pathlib.Path], list[str]]:
    return lambda tmp: ["search", str(write_file(tmp / "a.yaml", text))]


def _darts(**strategy) -> Callable[[pathlib.Path], list[str]]:
    return lambda tmp: ["search", str(_base(tmp, strategy={**DARTS, **strategy}))]


_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
    for p, c in zip("abcdefghi", "bcdefghij", strict=True)
)


def _output_root_is_a_file(tmp: pathlib.Path) -> list[str]:
    write_file(tmp / "afile", "not a directory")
    return _set(f"output.root={tmp / 'afile'}")(tmp)


def _nsep(tmp: pathlib.Path) -> list[str]:
    space = {"kind": "resnet", "depth": 8, "widths": [4, 8, 8]}
    space["candidates"] = ["conv_3x3", {"op": "osep_3x3", "hparams": {"n_sep": -4}}]
    return ["search", str(_base(tmp, space=space))]


def _victim(tmp: pathlib.Path) -> pathlib.Path:
    victim = tmp / "notes"
    victim.mkdir()
    (victim / "trials.csv").write_text("number,state\n")
    return victim


CASES = [
    Case("seed-negative", _set("seed=-1"), ("seed", "-1")),
    Case("seed-too-large", _set(f"seed={2**63}"), ("seed",)),
    Case("population-size-1", _set("strategy.population_size=1"), ("population_size",)),
    Case("val-fraction-0", _set("data.val_fraction=0.0"), ("data.val_fraction",)),
    Case("max-params-nan", _set("strategy.max_params=.nan"), ("max_params", "nan")),
    Case("evaluator-lr-negative", _set("strategy.evaluator.lr=-1"), ("evaluator.lr",)),
    Case(
        "evaluator-weight-decay-negative",
        _set("strategy.evaluator.weight_decay=-1"),
        ("weight_decay",),
    ),
    Case("darts-a-beta1-2", _darts(a_beta1=2), ("a_beta1",)),
    Case("darts-w-lr-negative", _darts(w_lr=-1), ("w_lr",)),
    Case("device-xla", _set("device=xla"), ("device", "xla")),
    Case("device-meta", _set("device=meta"), ("device", "meta")),
    Case("storage-bad-scheme", _set("strategy.storage=bogus://x"), ("strategy.storage",)),
    Case(
        "storage-no-such-directory",
        _set("strategy.storage=sqlite:////nonexistent/dir/x.db"),
        ("strategy.storage", "/nonexistent/dir"),
    ),
    Case("storage-not-a-url", _set("strategy.storage=study.db"), ("strategy.storage",)),
    Case("name-300-characters", _set("name=" + "a" * 300), ("name", "100 characters")),
    Case("name-with-slash", _set("name=../escape"), ("name",)),
    Case("config-is-a-directory", lambda tmp: ["search", str(tmp)], ("is a directory",)),
    Case("config-missing", lambda tmp: ["search", str(tmp / "nope.yaml")], ("not found",)),
    Case("config-empty", _file(""), ("is empty",)),
    Case("config-a-list", _file("- 1\n- 2\n"), ("mapping",)),
    Case("config-not-yaml", _file("a: [1, 2\n"), ("not valid YAML", "line")),
    Case("recursive-alias", _file("a: &a [*a]\n"), ("recursive alias",)),
    Case("alias-bomb", _file(_BOMB), ("alias",)),
    Case(
        "duplicate-key",
        _file("seed: 1\ndevice: cpu\nseed: 2\n"),
        ("duplicate key 'seed'", "line 1", "line 3"),
    ),
    Case(
        "python-tag-never-executed",
        _file("seed: !!python/object/apply:os.system [touch pwned]\n"),
        ("not valid YAML",),
    ),
    Case("unknown-key", _set("strategy.n_trails=3"), ("strategy.n_trails", "unknown key")),
    Case("unknown-operator", _set("space.candidates=[conv_3x3, nope]"), ("nope",)),
    Case("candidate-hparam-caught-before-trial-0", _nsep, ("space.candidates", "n_sep", "-4")),
    Case(
        "space-would-allocate-tens-of-GB",
        _set("space.widths=[100000, 100000, 100000]"),
        ("space", "GB", "CONVNAS_MAX_MODEL_GB"),
    ),
    Case(
        "evaluator-batch-larger-than-split",
        _set("strategy.evaluator.batch_size=1000"),
        ("strategy.evaluator.batch_size", "48 samples"),
    ),
    Case(
        "train-evaluator-batch-larger-than-split",
        _set("strategy.evaluator={kind: train, epochs: 1, batch_size: 1000}"),
        ("batch_size",),
    ),
    Case("darts-batch-larger-than-split", _darts(batch_size=1000), ("strategy.batch_size",)),
    Case("output-root-is-a-file", _output_root_is_a_file, ("output.root", "is a file")),
    Case("workers-0", lambda tmp: [*_set()(tmp), "--workers", "0"], ("workers",)),
    Case("darts-with-workers", lambda tmp: [*_darts()(tmp), "--workers", "2"], ("torchrun",)),
    Case("bad-set-syntax", lambda tmp: [*_set()(tmp), "--set", "nokey"], ("--set",)),
    Case(
        "report-of-a-non-run-directory",
        lambda tmp: ["report", str(_victim(tmp))],
        ("not a convnas run directory",),
        command="report",
    ),
    Case(
        "report-of-nothing",
        lambda tmp: ["report", str(tmp / "nope")],
        ("does not exist",),
        command="report",
    ),
    Case(
        "export-of-nothing",
        lambda tmp: ["export", str(tmp / "nope"), "--trial", "0"],
        ("does not exist",),
        command="export",
    ),
    Case(
        "export-weights-not-a-checkpoint",
        lambda tmp: ["export", "--weights", str(write_file(tmp / "m.pt", "junk"))],
        ("cannot load checkpoint",),
        command="export",
    ),
    Case(
        "osep-plan-bad-kernel",
        lambda tmp: ["osep-plan", "--in", "8", "--out", "8", "--kernel", "0"],
        ("kernel",),
        command="osep-plan",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_config_is_one_clean_error_before_anything_is_created(case, tmp_path, capfd):
    argv = case.argv(tmp_path)
    before = snapshot(tmp_path)
    rc, out, err = cli(argv, capfd)
    assert_clean_error(rc, out, err, case.command, *case.needles)
    assert snapshot(tmp_path) == before, "a refused command changed files"
    assert not (tmp_path / "runs").exists(), "a refused search created its run directory"
    assert not pathlib.Path("pwned").exists()


def _arch(tmp: pathlib.Path) -> pathlib.Path:
    """An architecture file of the tiny space (the first candidate everywhere)."""
    from convnas.search_space import get_space

    space = get_space("resnet", input_shape=[3, 8, 8], num_classes=4, **SPACE_SETTINGS)
    path = tmp / "arch.yaml"
    space.architecture([0] * len(space.decisions()), {"dataset": "synthetic"}).save(path)
    return path


SPACE_SETTINGS = {"depth": 8, "widths": [4, 8, 8], "candidates": ["conv_3x3", "c2sp"]}
DATA_ARGS = [
    "--data",
    "synthetic",
    "--data-option",
    "num_classes=4",
    "--data-option",
    "input_shape=[3,8,8]",
    "--data-option",
    "size=64",
    "--no-progress",
    "--epochs",
    "1",
    "--batch-size",
    "16",
]
TRAIN_CASES = [
    ("lr-negative", ["--lr", "-1"], ("lr",)),
    ("weight-decay-negative", ["--weight-decay", "-1"], ("weight_decay",)),
    ("val-fraction-0", ["--val-fraction", "0"], ("--val-fraction",)),
    ("device-meta", ["--device", "meta"], ("device", "meta")),
    ("device-xla", ["--device", "xla"], ("device",)),
    ("batch-larger-than-split", ["--batch-size", "100000"], ("batch_size",)),
    ("epochs-0", ["--epochs", "0"], ("epochs",)),
    ("seed-negative", ["--seed", "-1"], ("--seed",)),
    ("out-is-a-file", ["--out", "{tmp}/afile"], ("--out", "existing file")),
    ("drop-path-1", ["--drop-path", "1"], ("--drop-path", "[0, 1)")),
    ("cutout-negative", ["--cutout", "-1"], ("--cutout",)),
    ("drop-path-on-a-resnet", ["--drop-path", "0.2"], ("DARTS cell networks",)),
    ("auxiliary-on-a-resnet", ["--recipe", "darts"], ("DARTS cell networks",)),
]


@pytest.mark.parametrize(
    "args,needles", [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES]
)
def test_train_mistakes_are_one_clean_error(args, needles, tmp_path, capfd):
    arch = _arch(tmp_path)
    write_file(tmp_path / "afile", "keep me")
    argv = ["train", str(arch), *DATA_ARGS, "--out", str(tmp_path / "out")]
    argv += [a.format(tmp=tmp_path) for a in args]
    before = snapshot(tmp_path)
    rc, out, err = cli(argv, capfd)
    assert_clean_error(rc, out, err, "train", *needles)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out" / "model.pt").exists(), "an untrained model was saved"


def test_an_architecture_that_would_allocate_tens_of_gb_is_refused(tmp_path, capfd):
    from convnas.search_space import get_space

    settings = {**SPACE_SETTINGS, "widths": [100000, 100000, 100000]}
    space = get_space("resnet", input_shape=[3, 8, 8], num_classes=4, **settings)
    arch = tmp_path / "huge.yaml"
    space.architecture([0] * len(space.decisions()), {"dataset": "synthetic"}).save(arch)
    before = snapshot(tmp_path)
    for argv in (
        ["train", arch, *DATA_ARGS, "--out", tmp_path / "out"],
        ["export", "--weights", arch],
    ):
        rc, out, err = cli(argv, capfd)
        if argv[0] == "train":
            assert_clean_error(rc, out, err, "train", "GB", "CONVNAS_MAX_MODEL_GB")
        else:
            assert_clean_error(rc, out, err, "export")
    assert snapshot(tmp_path) == before


class _DryRun(ConvNASError):
    """Raised where a valid search would start training (the fuzz below stops there)."""


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=mutated())
def test_fuzzed_configs_through_the_cli_end_in_one_clean_line(data, tmp_path, capfd, monkeypatch):
    """The existing config fuzz (``test_config_fuzz.mutated``), driven through ``convnas
    search``: every config either reaches the start of the search or is one clean error."""
    from convnas.run import runner

    def dry_run(*args, **kwargs):
        raise _DryRun("dry run: the search would start here")

    monkeypatch.setattr(runner, "_run_locked", dry_run)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"fuzz{next(_COUNTER)}.yaml"
    write_file(path, yaml.safe_dump(data))
    outside = snapshot(tmp_path, exclude=(tmp_path / "runs",))
    rc, out, err = cli(["search", path], capfd)
    assert_clean_error(rc, out, err, "search")
    assert snapshot(tmp_path, exclude=(tmp_path / "runs",)) == outside
