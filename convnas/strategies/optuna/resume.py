"""Reading a run's study without changing anything, and the resume check made before a search
writes a single file.

A run's own SQLite study is read through a read-only connection (into a temporary copy that
Optuna may stamp with its schema version); a Journal file is read only when it exists; an RDB
server is asked without creating tables. A study that is missing, empty or damaged stops a
resume with a message instead of starting a new study.
"""

from __future__ import annotations

import atexit
import pathlib
import shutil
import sqlite3
import tempfile
from typing import Any

from convnas.errors import ConfigError
from convnas.strategies.optuna.settings import import_optuna

__all__ = [
    "LEGACY_STUDY_NAME",
    "check_resume",
    "open_study_readonly",
    "run_study_name",
    "sqlite_problem",
]

# Every study was named this before studies took their run's name.
LEGACY_STUDY_NAME = "convnas"


_JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")  # a rollback journal's first 8 bytes


def hot_journal(path: pathlib.Path) -> bool:
    """Whether a writer killed mid-transaction left a journal that SQLite must roll back (a
    read-only connection cannot)."""
    journal, wal = path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")
    if wal.is_file():
        return True
    try:
        with open(journal, "rb") as f:
            header = f.read(8)
    except OSError:
        return False
    # A committed transaction leaves at most a journal whose header SQLite zeroed (or a
    # truncated one); only a journal that still begins with the magic must be rolled back.
    return header == _JOURNAL_MAGIC


def sqlite_problem(path: pathlib.Path, *, recover: bool = False) -> str | None:
    """Why the SQLite file ``path`` cannot hold a study (None when it looks sound).

    With ``recover``, a transaction a killed writer left unfinished is rolled back (SQLite's
    own recovery, which needs a writable connection); without, the file is only read.
    """
    if path.stat().st_size == 0:
        return "it is empty (0 bytes)"
    if hot_journal(path) and not recover:
        return (
            "a process was killed while writing it and SQLite must first roll back its "
            "unfinished transaction; continue the search with --resume (which does), then retry"
        )
    try:
        mode = "rw" if recover else "ro"
        con = sqlite3.connect(f"file:{path}?mode={mode}", uri=True, timeout=60)
        try:
            row = con.execute("PRAGMA quick_check").fetchone()
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"it is damaged or not an SQLite database ({exc})"
    if not row or row[0] != "ok":
        return f"it is damaged (SQLite quick_check: {row[0] if row else 'no answer'})"
    if "studies" not in tables:
        return "it holds no Optuna study tables"
    return None


def open_study_readonly(url: str, study_name: str) -> Any:
    """Load study ``study_name`` from ``url`` without creating or changing anything.

    Raises:
        ConfigError: the storage or the study does not exist, or is damaged.
    """
    optuna = import_optuna()
    if url.startswith("journal:"):
        path = pathlib.Path(url[len("journal:") :]).expanduser()
        if not path.is_file():
            raise ConfigError(f"the journal file {path} does not exist", key="strategy.storage")
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage: Any = JournalStorage(JournalFileBackend(str(path)))
    elif url.startswith("sqlite:///"):
        path = pathlib.Path(url[len("sqlite:///") :])
        if not path.is_file():
            raise ConfigError(f"the study file {path} does not exist", key="strategy.storage")
        problem = sqlite_problem(path)
        if problem:
            raise ConfigError(f"cannot read the study {path}: {problem}", key="strategy.storage")
        storage = _rdb(f"sqlite:///{_snapshot(path)}")
    elif "://" in url:
        storage = _rdb(url)
    else:
        raise ConfigError(f"not a storage URL: {url!r}", key="strategy.storage")
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise ConfigError(
            f"the storage {url} holds no study named {study_name!r}", key="strategy.study_name"
        ) from None


def sqlite_study_names(path: pathlib.Path) -> list[str]:
    """The study names in the SQLite study ``path`` (read-only; ``[]`` when unreadable)."""
    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=60)
        try:
            return [r[0] for r in con.execute("SELECT study_name FROM studies")]
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return []


def run_study_name(run_dir: pathlib.Path, storage: str | None, study_name: str) -> str:
    """The name of the study to continue in ``run_dir``'s own ``study.db``.

    A run made before studies were named after their run holds one study named ``"convnas"``
    and none named ``study_name``: that one is the run's study. Otherwise ``study_name``.
    """
    db = run_dir / "study.db"
    if storage is not None or study_name == LEGACY_STUDY_NAME or not db.is_file():
        return study_name
    names = sqlite_study_names(db)
    return LEGACY_STUDY_NAME if names == [LEGACY_STUDY_NAME] else study_name


def _snapshot(path: pathlib.Path) -> pathlib.Path:
    """A consistent copy of the SQLite study ``path`` in a temporary directory, made through a
    read-only connection (Optuna's storage writes its schema version into what it opens)."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="convnas-study-"))
    atexit.register(shutil.rmtree, tmp, True)
    source = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=60)
    target = sqlite3.connect(tmp / "study.db")
    try:
        source.backup(target)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"cannot read the study {path}: {exc}", key="strategy.storage") from None
    finally:
        source.close()
        target.close()
    return tmp / "study.db"


def _rdb(url: str) -> Any:
    from optuna.storages import RDBStorage

    try:
        return RDBStorage(url, skip_table_creation=True, skip_compatibility_check=True)
    except ImportError as exc:
        raise ConfigError(
            f"cannot open {url.split('://', 1)[0]}:// ({exc})", key="strategy.storage"
        ) from None


def check_resume(
    *,
    run_dir: pathlib.Path,
    storage: str | None,
    study_name: str,
    fingerprint: str,
    resume: bool,
) -> None:
    """Refuse, before anything is written, a search the study of ``run_dir`` could not take:
    a resume that finds no study (or an empty or damaged one) where the run has results, a
    study of another configuration, or completed trials without ``resume``.

    Raises:
        ConfigError: naming the file and what to do.
    """
    if storage is not None:
        if storage.startswith("journal:") and not pathlib.Path(storage[8:]).expanduser().exists():
            return
        if storage.startswith("journal:") or storage.startswith("sqlite:///"):
            try:
                study = open_study_readonly(storage, study_name)
            except ConfigError:
                return  # no study yet: the search creates it
            _check_fingerprint(study, storage, study_name, fingerprint)
        return
    db = run_dir / "study.db"
    has_results = (run_dir / "trials.csv").is_file()
    if not db.exists():
        if resume and has_results:
            raise ConfigError(
                f"--resume: {run_dir} has trials.csv but no study.db, so its trials cannot be "
                f"continued; restore study.db, or start a new run (another --name)",
                key="output.run_dir",
            )
        return
    url = f"sqlite:///{db.resolve()}"
    if not has_results:
        # Nothing of this run's was collected yet: the study may be being created by another
        # worker this moment; the search joins it (or reports a damaged file in one line).
        try:
            study = open_study_readonly(url, study_name)
        except ConfigError:
            return
        _check_study(study, run_dir, url, study_name, fingerprint, resume)
        return
    problem = sqlite_problem(db, recover=True)
    if problem:
        raise ConfigError(
            f"{db} cannot be resumed: {problem}. The previous trials are not in it; restore it "
            f"from a backup, or start a new run (another --name)",
            key="output.run_dir",
        )
    try:
        study = open_study_readonly(url, study_name)
    except ConfigError:
        if resume:
            raise ConfigError(
                f"--resume: {db} holds no study named {study_name!r}; set strategy.study_name "
                f"to the run's study, or start a new run (another --name)",
                key="strategy.study_name",
            ) from None
        return
    _check_study(study, run_dir, url, study_name, fingerprint, resume)


def _check_study(
    study: Any, run_dir: pathlib.Path, url: str, study_name: str, fingerprint: str, resume: bool
) -> None:
    optuna = import_optuna()
    _check_fingerprint(study, url, study_name, fingerprint)
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if done and not resume:
        raise ConfigError(
            f"{run_dir} already holds a study with {done} completed trial(s); pass --resume "
            f"(resume=True) to continue it, or choose another run name",
            key="output.run_dir",
        )


def _check_fingerprint(study: Any, url: str, study_name: str, fingerprint: str) -> None:
    existing = study.user_attrs.get("config_hash")
    if existing is not None and existing != fingerprint:
        raise ConfigError(
            f"study {study_name!r} in {url} was created by another configuration; use "
            f"another run directory (--name), study_name or storage",
            key="strategy.study_name",
        )
