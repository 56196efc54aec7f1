"""``convnas`` CLI that pauses once at a chosen moment, so a test can SIGKILL it right there.

Used as ``python pause_driver.py search CONFIG ...`` with ``CONVNAS_TEST_PAUSE`` naming the
moment, ``CONVNAS_TEST_PAUSE_AT`` which occurrence of it, and ``CONVNAS_TEST_MARKER`` a file to
create when it is reached (the test kills the process on seeing it):

- ``training``: inside a supernet training step (the AT-th call of the loss check);
- ``checkpoint``: inside the AT-th checkpoint write, after the temporary file is written and
  before it is fsynced and renamed;
- ``storage-sqlite``: inside the SQL transaction that marks a trial COMPLETE, after its
  statements ran and before the commit;
- ``storage-journal``: half-way through appending the journal line that marks a trial COMPLETE,
  holding the journal's lock.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import time

PAUSE = os.environ.get("CONVNAS_TEST_PAUSE", "")
MARKER = pathlib.Path(os.environ.get("CONVNAS_TEST_MARKER", "paused.marker"))
AT = int(os.environ.get("CONVNAS_TEST_PAUSE_AT", "2"))  # which occurrence of the moment
_done = False


def _pause(what: str) -> None:
    global _done
    if _done:
        return
    _done = True
    MARKER.write_text(what)
    time.sleep(120)  # the test kills the process now


def _pause_in_training() -> None:
    from convnas.strategies import evaluators

    original, calls = evaluators.check_finite, [0]

    def check_finite(loss, where):
        calls[0] += 1
        if calls[0] == AT:
            _pause(f"training: {where}")
        return original(loss, where)

    evaluators.check_finite = check_finite


def _pause_in_checkpoint_write() -> None:
    from convnas import io

    original, calls = io.atomic_open, [0]

    @contextlib.contextmanager
    def atomic_open(path, mode="w", encoding="utf-8"):
        with original(path, mode, encoding) as handle:
            yield handle
            if str(path).endswith(".pt"):
                calls[0] += 1
                if calls[0] == AT:
                    handle.flush()
                    _pause(f"checkpoint: {path}")

    io.atomic_open = atomic_open


def _pause_in_sqlite_commit() -> None:
    from optuna.trial import TrialState
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    def after_flush(session, context):
        for obj in session.dirty:  # Optuna's ORM row of a trial: the table "trials"
            is_trial = getattr(type(obj), "__tablename__", None) == "trials"
            if is_trial and obj.state == TrialState.COMPLETE:
                _pause("storage-sqlite: COMPLETE flushed, not committed")

    event.listen(Session, "after_flush", after_flush)


def _pause_in_journal_append() -> None:
    import json

    from optuna.trial import TrialState

    from convnas.strategies import heartbeat

    cls = heartbeat.TornTailSafeJournalFileBackend
    original = cls.append_logs

    def append_logs(self, logs):
        if not any(log.get("state") == TrialState.COMPLETE for log in logs):
            return original(self, logs)
        data = ("\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n").encode()
        self.convnas_lock.acquire()
        with open(self.convnas_path, "ab") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
        _pause("storage-journal: half a line written, lock held")

    cls.append_logs = append_logs


HOOKS = {
    "training": _pause_in_training,
    "checkpoint": _pause_in_checkpoint_write,
    "storage-sqlite": _pause_in_sqlite_commit,
    "storage-journal": _pause_in_journal_append,
}

if __name__ == "__main__":
    HOOKS[PAUSE]()
    from convnas.cli import main

    sys.exit(main(sys.argv[1:]))
