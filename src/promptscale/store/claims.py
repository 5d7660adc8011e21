"""One trainer per config across launches: a claim file per config hash, kept alive by a heartbeat.

Launching the same sweep twice on one outputs folder (a common slip on a cluster) must not train
every config twice. Before training, a job claims its config hash; another launch that finds a
live claim skips that config, naming the holder. Claims need no lock either (``flock`` is off on
many cluster filesystems): a claim is a generation file published with an exclusive ``link``::

    <root>/<config_hash>.claim.000000    {"host", "pid", "job", "started", "heartbeat", ...}
    <root>/<config_hash>.claim.000001    a later holder, after the first went stale or released

The highest generation is the claim. Taking a config = publishing the next generation, which
exactly one of any number of racing launches manages (``link`` fails on an existing name, also
across NFS clients); the others re-read and find a live claim. Files are never renamed or
reused, so a racer acting on an old listing can only fail. The current claim is free when:

- it says it was released (its job ended: finished, failed, or preempted and exiting);
- its host is this host and its pid is gone (or is another process now): at once;
- it belongs to an earlier attempt of this very SLURM job (a requeue): at once;
- its file was not refreshed for ``stale_after_s`` (a node that died; clocks are assumed in
  sync to well within that, as NTP keeps them).

A holder refreshes its file every ``heartbeat_s`` from a daemon thread; if it ever finds a higher
generation (it was presumed dead, e.g. a long NFS outage), :attr:`ConfigClaim.lost` turns true
and a warning is logged. The ranks of one job share its claim: they have the same ``job``
(``SLURM_JOB_ID``, or for processes a holder starts, the holder's token in the environment).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from promptscale.store.atomic import publish, safe_name, write_temp

log = logging.getLogger(__name__)
JOB_ENV = "PROMPTSCALE_CLAIM_JOB"
"""Set while a claim is held, so the processes its job starts (DDP ranks) share the claim."""


def _proc_start(pid: int) -> str | None:
    """The start time of ``pid`` (clock ticks since boot) on Linux; ``None`` if unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[-1].split()  # after the command name, which may hold spaces
    return None if fields[0] == b"Z" else fields[19].decode()


def pid_alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` on this host still runs and is the one that started at ``start``."""
    if os.path.isdir("/proc/self"):
        now = _proc_start(pid)
        return now is not None and (start is None or now == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _job() -> tuple[str, int]:
    """This process's job identity and its attempt (a requeued SLURM job counts up)."""
    attempt = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if os.environ.get(JOB_ENV):
        return os.environ[JOB_ENV], attempt
    if os.environ.get("SLURM_JOB_ID"):  # the ranks of one srun step share it; two steps do not
        step = os.environ.get("SLURM_STEP_ID")
        return f"slurm-{os.environ['SLURM_JOB_ID']}" + (f".{step}" if step else ""), attempt
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}", attempt


class ConfigClaim:
    """The claim of one config hash by this job, as a context manager.

    Usage::

        with ConfigClaim(root / "claims", chash) as claim:
            if not claim.acquired:
                return None  # another launch trains it; a log line named the holder
            ...  # train, append rows

    Args:
        root: Folder of all claims (created if missing), shared by every launch of the sweep.
        config_hash: What is claimed.
        stale_after_s: A claim whose file was not refreshed for this long is taken over.
        heartbeat_s: Refresh interval of a held claim; default ``stale_after_s / 6``.
        job: This job's identity; default ``SLURM_JOB_ID`` (shared by its ranks), else unique.
        attempt: This job's attempt; default ``SLURM_RESTART_COUNT``.
    """

    def __init__(
        self,
        root: str | Path,
        config_hash: str,
        *,
        stale_after_s: float = 300.0,
        heartbeat_s: float | None = None,
        job: str | None = None,
        attempt: int | None = None,
    ) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self.root, self.config_hash, self.stale_after_s = Path(root), config_hash, stale_after_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else stale_after_s / 6
        default_job, default_attempt = _job()
        self.job, self.attempt = job or default_job, default_attempt if attempt is None else attempt
        self.acquired = self.shared = self.lost = False
        self.holder: dict | None = None  # the claim found (ours once acquired)
        self.path: Path | None = None  # our generation file, if we published one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._env_before: str | None = None
        self._started = time.time()

    def __enter__(self) -> ConfigClaim:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- files -------------------------------------------------------------------------------
    def _generations(self) -> list[Path]:
        prefix = f"{safe_name(self.config_hash)}.claim."
        try:
            return sorted(
                p for p in self.root.iterdir() if p.name.startswith(prefix) and p.name[len(prefix) :].isdigit()
            )
        except FileNotFoundError:
            return []

    def _content(self, **extra) -> bytes:
        now = time.time()
        info = {
            "config_hash": self.config_hash,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": _proc_start(os.getpid()),
            "job": self.job,
            "attempt": self.attempt,
            "started": self._started,
            "heartbeat": now,
            "released": False,
            **extra,
        }
        return json.dumps(info, sort_keys=True).encode()

    def _why_free(self, path: Path, info: dict | None) -> str | None:
        """Why the claim in ``path`` may be taken over, or ``None`` if it is live."""
        info = info or {}  # unreadable (being written where there are no hard links): only its age counts
        if info.get("released"):
            return "released"
        pid = info.get("pid")
        if (
            info.get("host") == socket.gethostname()
            and isinstance(pid, int)
            and not pid_alive(pid, info.get("pid_start"))
        ):
            return f"its process {pid} is gone"
        if info.get("job") == self.job and int(info.get("attempt") or 0) < self.attempt:
            return "an earlier attempt of this job"
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return "removed"
        return f"no heartbeat for {age:.0f} s" if age > self.stale_after_s else None

    # -- acquire / release -------------------------------------------------------------------
    def acquire(self) -> bool:
        """Claims the config unless a live claim of another job holds it; says who does.

        Returns:
            :attr:`acquired`: this job may train the config.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(8):  # each round ends in a claim, or in another racer's newer claim
            generations = self._generations()
            number = int(generations[-1].name.rsplit(".", 1)[1]) + 1 if generations else 0
            if generations:
                current, info = generations[-1], _read(generations[-1]) or {}
                why = self._why_free(current, info)
                if why is None:
                    self.holder = info
                    if info.get("job") == self.job:  # a rank of this job holds it for all of us
                        self.acquired = self.shared = True
                        return True
                    log.warning(
                        "config %s is claimed by %s: skipping it here", self.config_hash, describe(current, info)
                    )
                    return False
                log.info("config %s: taking over %s (%s)", self.config_hash, current, why)
            target = self.root / f"{safe_name(self.config_hash)}.claim.{number:06d}"
            self.path, self._started = target, time.time()
            if publish(write_temp(self.root, self._content()), target, exclusive=True, strict=True):
                self.holder, self.acquired = _read(target), True
                self._env_before = os.environ.get(JOB_ENV)
                os.environ[JOB_ENV] = self.job  # processes started while we hold it share it
                self._thread = threading.Thread(target=self._beat, name=f"claim-{self.config_hash}", daemon=True)
                self._thread.start()
                return True
            self.path = None  # another launch published this generation first: look again
        raise RuntimeError(f"config {self.config_hash}: claim in {self.root} changes hands too fast to take")

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self._generations()[-1] != self.path:
                    self.lost = True
                    log.warning("config %s: claim %s was taken over by another launch", self.config_hash, self.path)
                    return
                os.replace(write_temp(self.root, self._content()), self.path)
            except (OSError, IndexError) as e:  # a flaky mount: try again at the next beat
                log.warning("config %s: heartbeat of %s failed: %s", self.config_hash, self.path, e)

    def release(self) -> None:
        """Stops the heartbeat and marks the claim released, so the config is free at once.

        Safe to call twice; a shared or lost claim is left to its holder.
        """
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self._env_before is None:
                os.environ.pop(JOB_ENV, None)
            else:
                os.environ[JOB_ENV] = self._env_before
            if not self.lost and self.path is not None:
                try:
                    os.replace(write_temp(self.root, self._content(released=True)), self.path)
                except OSError as e:  # it goes stale instead
                    log.warning("config %s: could not release %s: %s", self.config_hash, self.path, e)
        self.acquired = False


def _read(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_bytes())
        return info if isinstance(info, dict) else None
    except (OSError, ValueError):
        return None


def describe(path: Path, info: dict) -> str:
    """``host node7 pid 1234 (job slurm-99), since <time>, heartbeat 12 s ago (<path>)``."""
    try:
        beat = f"{time.time() - path.stat().st_mtime:.0f} s ago"
    except OSError:
        beat = "unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("started", 0))))
    who = f"host {info.get('host')} pid {info.get('pid')} (job {info.get('job')})"
    return f"{who}, since {since}, heartbeat {beat} ({path})"


def remove_claims(root: str | Path, store, stale_after_s: float = 300.0) -> list[Path]:
    """Deletes the claim files of finished configs that nobody holds any more.

    Call once per launch, so claims do not pile up. A live claim (a twin still running) is left
    alone. A launch that claims a config after its files were removed must check the store again
    (the config may have finished meanwhile): :class:`ConfigClaim` alone does not know.

    Args:
        root: The folder of all claims.
        store: The results store (anything with ``has_config(hash)``).
        stale_after_s: As for :class:`ConfigClaim`.

    Returns:
        The files removed.
    """
    try:
        hashes = {p.name.split(".claim.")[0] for p in Path(root).iterdir() if ".claim." in p.name}
    except FileNotFoundError:
        return []
    removed = []
    for config_hash in sorted(hashes):
        probe = ConfigClaim(root, config_hash, stale_after_s=stale_after_s, job="remove_claims")
        generations = probe._generations()
        if not generations or probe._why_free(generations[-1], _read(generations[-1])) is None:
            continue
        if store.has_config(config_hash):
            for path in generations:
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
