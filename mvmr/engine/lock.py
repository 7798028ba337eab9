"""One run per folder: a lock held for the whole run, so two jobs pointed at one ``--out`` never interleave.

The lock is an OS file lock (``filelock``) on ``OUT/.mvmr-run.lock``: the kernel drops it when its process dies, so
a run killed with SIGKILL leaves no stale lock that blocks its ``--resume``. Who holds it (pid, host, command, start
time) is written beside it in ``.mvmr-run.owner``, to name the other process in the refusal.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError
from ..paths import check_writable_folder, missing_dirs

LOCK_NAME, OWNER_NAME = ".mvmr-run.lock", ".mvmr-run.owner"


def check_out_dir(out: Path) -> None:
    """Refuse, before anything is written, an ``--out`` that cannot be a run folder."""
    if str(out).strip() == "":
        raise ConfigError("--out is empty (an unset variable?); name the run folder, e.g. --out runs/my_run")
    check_writable_folder(out, "--out")


class RunLock:
    """Hold ``OUT/.mvmr-run.lock`` from ``acquire`` to ``release``; a second run into a held folder is refused."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.made = missing_dirs(self.out)
        self._lock = None

    def acquire(self) -> None:
        from filelock import FileLock, Timeout

        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--out '{self.out}' cannot be created ({exc.strerror or exc}); choose a writable "
                              f"folder") from None
        for name in (LOCK_NAME, OWNER_NAME):  # a link under mvmr's own names is never written through
            if (self.out / name).is_symlink():
                (self.out / name).unlink()
        lock = FileLock(str(self.out / LOCK_NAME), timeout=0, is_singleton=False, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise ConfigError(f"{self.out} is in use by another mvmr run ({self.holder()}); wait for it to end, "
                              f"or choose another --out") from None
        except OSError as exc:
            self._undo()
            raise ConfigError(f"--out '{self.out}' cannot be written ({exc.strerror or exc}); choose a writable "
                              f"folder") from None
        self._lock = lock
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "command": " ".join(sys.argv)[:300]}
        try:  # a new file renamed over the name: a link placed there is replaced, not followed
            fd, tmp = tempfile.mkstemp(dir=self.out, prefix=OWNER_NAME + ".")
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(owner))
            os.replace(tmp, self.out / OWNER_NAME)
        except OSError:
            pass  # the lock holds either way; only the name of the holder would be missing

    def holder(self) -> str:
        try:
            o = json.loads((self.out / OWNER_NAME).read_text())
            return f"pid {o['pid']} on {o['host']}, started {o['started']}: {o['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "its process is unknown"

    def release(self) -> None:
        """Drop the lock; a folder this run created and left holding nothing but the lock goes too."""
        if self._lock is None:
            return
        (self.out / OWNER_NAME).unlink(missing_ok=True)
        self._lock.release()
        self._lock = None
        self._undo()

    def _undo(self) -> None:
        if not self.made or not self.out.is_dir():
            return
        if {p.name for p in self.out.iterdir()} <= {LOCK_NAME, OWNER_NAME}:
            shutil.rmtree(self.made[0], ignore_errors=True)
