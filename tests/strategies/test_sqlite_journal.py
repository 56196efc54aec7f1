"""A leftover rollback journal whose header SQLite zeroed (a committed transaction of a killed
writer) is not hot: reading the study must not refuse it (a SIGKILL resume test failed so)."""

from __future__ import annotations

import pytest

from convnas.strategies.optuna.resume import hot_journal, open_study_readonly


def test_only_a_journal_with_the_magic_header_is_hot(tmp_path):
    optuna = pytest.importorskip("optuna")
    db = tmp_path / "study.db"
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="run")
    study.enqueue_trial({})
    journal = tmp_path / "study.db-journal"
    journal.write_bytes(bytes(8) + b"x" * 504)  # zeroed header: committed, not hot
    assert not hot_journal(db)
    assert open_study_readonly(f"sqlite:///{db}", "run").study_name == "run"
    journal.write_bytes(bytes.fromhex("d9d505f920a163d7") + bytes(504))
    assert hot_journal(db)
