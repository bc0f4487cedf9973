"""The state file of `jobpoll wait --state FILE`: the wait's checkpoint (`JobsWait.checkpoint()`),
which run wrote it, and which ids the wait was started with. It is written atomically when a
run starts, now and then while it reports, and when it stops (at its end, Ctrl-C, SIGTERM,
--timeout); it is read back strictly (a file this command did not write is one line naming
it, status 2, never a restart), and removed once every job has been reported."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import cattrs

from jobpoll._board import OUTCOMES, Board
from jobpoll._checkpoint import describe_problem, load_fanout
from jobpoll._client import JobsClient
from jobpoll._errors import CheckpointError
from jobpoll._exits import EXIT_FAILED, EXIT_USAGE, Failure
from jobpoll._fanout import JobsWait, wait_for_jobs
from jobpoll._models import Job
from jobpoll._output import Output
from jobpoll._policy import PollPolicy
from jobpoll._saved import converter

#: What the file's `format` says: a JSON file of anything else is refused, not misread.
FORMAT = "jobpoll wait --state"
VERSION = 1
#: How often a run saves while it reports (seconds). Ctrl-C, SIGTERM and --timeout save at
#: once, so this bounds only what a crash (kill -9, a power cut) makes the next run report
#: again: the outcomes of the last 10 s. A save costs 50 to 85 µs per pending job (up to 1.7 s
#: with 20,000: bench_state_file.py), which holds the event loop, so at least `SAVE_SHARE` times
#: its cost passes between two saves: saving takes at most 5% of a run.
SAVE_EVERY = 10.0
SAVE_SHARE = 20


def _sha256(_instance: object, _attribute: object, value: str) -> None:
    if len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError(f"expected a SHA-256 in hex, got {value!r:.80}")


def _counts(_instance: object, _attribute: object, value: dict[str, int]) -> None:
    if set(value) != set(OUTCOMES) or min(value.values()) < 0:
        raise ValueError(f"expected a count of 0 or more for each of {', '.join(OUTCOMES)}")


@attrs.frozen(kw_only=True)
class SavedWait:
    """The state file's content: `run`, the number of the run that wrote it (the next is one
    more); `total`, the distinct ids the wait was started with, and `ids`, the SHA-256 of them
    sorted, one a line; `outcomes`, how many of them the runs reported, by outcome;
    `checkpoint`, the wait's jobs not reported yet."""

    format: str
    version: int
    run: int = attrs.field(validator=attrs.validators.ge(1))
    total: int = attrs.field(validator=attrs.validators.ge(0))
    ids: str = attrs.field(validator=_sha256)
    outcomes: dict[str, int] = attrs.field(validator=_counts)
    checkpoint: dict[str, Any]


def ids_digest(job_ids: list[str]) -> str:
    """The SHA-256 of the distinct ids sorted, one a line (an id holds no line feed): the same
    ids in any order, repeated or not, have the same digest."""
    return hashlib.sha256("\n".join(sorted(set(job_ids))).encode()).hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader, or a crash at any moment, finds the old file
    or the new one whole: a temporary file in the same directory, flushed to the disk, then
    renamed over it (`os.replace`), and the directory flushed so the rename lasts too."""
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # not every file system can flush a directory
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_state(path: Path) -> SavedWait | None:
    """The state in `path`, or None when there is no such file; a `Failure` (status 2)
    naming the file when it cannot be read or is not a state file this jobpoll wrote."""
    name = f"--state {path}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Failure(f"{name}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past all reason
        raise Failure(f"{name}: not a state file of jobpoll wait (not JSON)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise Failure(f"{name}: not a state file of jobpoll wait (no format {FORMAT!r})")
    version = data.get("version")
    if type(version) is not int or version != VERSION:
        raise Failure(
            f"{name}: state file version {version!r:.40} is not one this jobpoll reads ({VERSION})"
        )
    try:
        saved = converter.structure(data, SavedWait)
        load_fanout(saved.checkpoint)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path="state", format_exception=describe_problem)
        raise Failure(f"{name}: not a valid state file: {'; '.join(problems[:3])}") from None
    except CheckpointError as exc:
        raise Failure(f"{name}: {exc}") from None
    pending, reported = len(pending_ids(saved.checkpoint)), sum(saved.outcomes.values())
    if pending + reported != saved.total:
        raise Failure(
            f"{name}: {pending} jobs pending and {reported} reported, but {saved.total} in all"
        )
    return saved


def pending_ids(checkpoint: dict[str, Any]) -> list[str]:
    """The ids a valid fan-out checkpoint holds, in its order: its jobs', then those not set
    up yet."""
    return [job["job_id"] for job in checkpoint["jobs"]] + list(checkpoint["unstarted"])


class StateKeeper:
    """Keeps a `jobpoll wait` in its state file: starts the fan-out anew or from the file,
    saves it while it reports and when it stops, and removes the file once all have ended.

    With a file, ids given must be those the wait was started with (in any order), or none;
    other ids are a `Failure` (status 2): the file holds no record of which ids were
    reported, so new ones could be told from old ones only by polling them all again."""

    def __init__(
        self, path: Path, saved: SavedWait | None, job_ids: list[str], *, out: Output
    ) -> None:
        self.path = path
        self._saved = saved
        #: Where the outcomes are written: once a write to it has failed, the lines since the
        #: last save may be lost, so the file keeps that save and the next run reports them.
        self._out = out
        #: The outcomes of the runs before, by outcome.
        self.earlier = dict.fromkeys(OUTCOMES, 0) if saved is None else saved.outcomes
        self._board: Board | None = None
        if saved is None:
            self.run, self.total, self._ids = 1, len(job_ids), ids_digest(job_ids)
            self.pending = job_ids
        else:
            if job_ids and ids_digest(job_ids) != saved.ids:
                raise Failure(
                    f"--state {path}: it holds a wait on {saved.total:,} other ids: give the"
                    " same ids, or none, to go on with it (or remove it to start anew)"
                )
            self.run, self.total, self._ids = saved.run + 1, saved.total, saved.ids
            self.pending = pending_ids(saved.checkpoint)
        self._clock: Callable[[], float] = time.monotonic
        self._next_save = 0.0

    @property
    def reported_before(self) -> int:
        """How many jobs the runs before this one reported."""
        return self.total - len(self.pending)

    def start(
        self,
        client: JobsClient,
        policy: PollPolicy,
        board: Board,
        on_update: Callable[[Job], None],
    ) -> JobsWait:
        """The run's fan-out, its state saved at once (nothing is sent yet: a file that
        cannot be written is status 2, and the run's number is taken). `board` counts the
        run's outcomes."""
        self._board = board
        if self._saved is None:
            fanout = wait_for_jobs(client, self.pending, policy=policy, on_update=on_update)
        else:
            try:
                fanout = wait_for_jobs(
                    client, [], policy=policy, on_update=on_update, resume=self._saved.checkpoint
                )
            except CheckpointError as exc:
                raise Failure(f"--state {self.path}: {exc}", EXIT_USAGE) from None
        self.save(fanout, EXIT_USAGE)
        return fanout

    def reported(self, fanout: JobsWait) -> None:
        """A result was reported: save if it is time to."""
        if self._clock() >= self._next_save:
            self.save(fanout)

    def save(self, fanout: JobsWait, exit_code: int = EXIT_FAILED) -> None:
        """Write the fan-out's state to the file; a `Failure` with `exit_code` if it cannot."""
        if self._out.failure is not None:
            return
        started = self._clock()
        self._write(fanout.checkpoint(), exit_code)
        now = self._clock()
        self._next_save = now + max(SAVE_EVERY, SAVE_SHARE * (now - started))

    def stop(self, fanout: JobsWait) -> None:
        """The run is over: remove the file if every job has been reported, else save."""
        if self._out.failure is not None:
            return
        checkpoint = fanout.checkpoint()
        if checkpoint["jobs"] or checkpoint["unstarted"]:
            self._write(checkpoint, EXIT_FAILED)
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise Failure(
                f"--state {self.path}: cannot remove it ({exc.strerror or exc})"
            ) from None

    def _write(self, checkpoint: dict[str, Any], exit_code: int) -> None:
        now = dict.fromkeys(OUTCOMES, 0) if self._board is None else self._board.outcomes
        state = SavedWait(
            format=FORMAT,
            version=VERSION,
            run=self.run,
            total=self.total,
            ids=self._ids,
            outcomes={outcome: self.earlier[outcome] + now[outcome] for outcome in OUTCOMES},
            checkpoint=checkpoint,
        )
        # Its fields are plain data already: the converter would walk the whole checkpoint
        # again (2/3 of a save's time with 2,000 jobs pending).
        data = json.dumps(attrs.asdict(state, recurse=False), separators=(",", ":")).encode()
        try:
            write_atomically(self.path, data)
        except OSError as exc:
            reason = exc.strerror or exc
            raise Failure(f"--state {self.path}: cannot write it ({reason})", exit_code) from None
