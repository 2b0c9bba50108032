"""Shards: one extraction split over N processes (torchrun ranks, SLURM array tasks, xargs -P).

Shard i of N takes a contiguous slice of the sorted inputs, writes its own part files
(`part-sIIIIIofNNNNN-KKKKK.parquet`) and error files into the shared output, and resumes on
its own. Nothing here needs torch.distributed: the dataset is complete when the committed
parts of all shards cover every input, which any process can see on disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.core.errors import ConfigError, InputError

LOCK_NAME = "_manifest.lock"  # "_" prefix: pyarrow's dataset reader skips it
WRITER_LOCK_NAME = "_extract.lock"  # who is writing the folder: {"pid", "host", "shards", "started"}


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int  # total shards; 1 = not sharded
    local_rank: int = 0  # this process's index on its machine (picks cuda:LOCAL_RANK)
    local_count: int = 1  # processes on this machine (they split its CPU cores)
    launcher: str = "none"  # none | options | torchrun

    @property
    def sharded(self) -> bool:
        return self.count > 1

    @property
    def part_prefix(self) -> str:
        """File-name prefix of this shard's parts; unsharded runs keep the plain `part-K` names."""
        return f"part-s{self.index:05d}of{self.count:05d}-" if self.sharded else "part-"

    def __str__(self) -> str:
        return f"shard {self.index + 1}/{self.count}"


def shard_bounds(total: int, count: int, index: int) -> tuple[int, int]:
    """[start, stop) of shard `index`: contiguous, sizes differ by at most one, cover 0..total once."""
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard index {index} is outside 0..{count - 1}; use --shard-index 0..{count - 1}")
    return total * index // count, total * (index + 1) // count


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def resolve_shard(num_shards: int | None, shard_index: int | None) -> Shard:
    """From --num-shards/--shard-index when given, else from torchrun's RANK/WORLD_SIZE, else one shard."""
    local_rank = _env_int("LOCAL_RANK") or 0
    local_count = _env_int("LOCAL_WORLD_SIZE") or 1
    if num_shards is not None or shard_index is not None:
        if num_shards is None or shard_index is None:
            raise ConfigError("--num-shards and --shard-index go together, e.g. --num-shards 4 --shard-index 0")
        shard_bounds(0, num_shards, shard_index)  # validates
        return Shard(shard_index, num_shards, launcher="options")
    world = _env_int("WORLD_SIZE")
    if world and world > 1:
        return Shard(_env_int("RANK") or 0, world, local_rank, local_count, launcher="torchrun")
    return Shard(0, 1)


@contextlib.contextmanager
def output_lock(output: Path):
    """Serialize manifest/summary updates of the shards writing into one output (flock; no-op without it)."""
    try:
        import fcntl
    except ImportError:  # Windows: shards there are launched one at a time anyway
        yield
        return
    output.mkdir(parents=True, exist_ok=True)
    with open(output / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class OutputBusy(InputError):
    """Another live extract holds the output folder."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _read_holder(handle) -> dict:
    handle.seek(0)
    try:
        holder = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    shards = holder.get("shards") or 1
    what = f"a {shards}-shard extract" if shards > 1 else "another extract"
    return f"{what} (pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')})"


def _busy(output: Path, holder: dict, why: str = "") -> OutputBusy:
    lock = output / WRITER_LOCK_NAME
    return OutputBusy(
        f"{output} is being written by {_describe(holder)}{why}; wait for it to finish or stop it, "
        f"or use another -o (if no such process runs any more, delete {lock})"
    )


@contextlib.contextmanager
def writer_lock(output: Path, shard: Shard):
    """One writer per output folder, held for the whole extract.

    `_extract.lock` holds the writer's pid, host and shard count. An unsharded extract takes it
    exclusively; the shards of one sharded run share it (and only a run with the same shard count
    may join). Liveness comes from flock (released by the kernel when a holder dies, kill -9
    included), checked against the recorded pid: a lock naming a live pid on this host that does
    not hold the flock is still honoured, one naming a dead pid on this host is stale and taken
    over, one from another host whose flock is free is refused with the file to delete. The file
    is never unlinked (a waiting process could lock the unlinked inode); the last holder empties it.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one writer is the user's job there
        yield
        return
    output.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "shards": shard.count,
          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    handle = open(output / WRITER_LOCK_NAME, "a+")
    try:
        _acquire(fcntl, handle, output, me, shard)
        try:
            yield
        finally:
            _release(fcntl, handle)
    finally:
        handle.close()


def _acquire(fcntl, handle, output: Path, me: dict, shard: Shard) -> None:
    for _ in range(100):  # a starting shard may hold the flock for a moment before writing its record
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            if not holder:
                time.sleep(0.02)
                continue
            if shard.sharded and holder.get("shards") == shard.count:
                try:  # a shard of the same run: share the lock
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    time.sleep(0.02)
                    continue
            raise _busy(output, holder) from None
        # The flock is ours: nobody holding it is alive. Is the recorded holder?
        holder = _read_holder(handle)
        pid, host = holder.get("pid"), holder.get("host")
        if isinstance(pid, int) and pid != os.getpid():
            if host == me["host"] and pid_alive(pid):
                fcntl.flock(handle, fcntl.LOCK_UN)
                raise _busy(output, holder)
            if host not in (None, me["host"]):
                fcntl.flock(handle, fcntl.LOCK_UN)
                raise _busy(output, holder, " (its host cannot be checked from here)")
        _write_holder(handle, me)  # stale (dead pid on this host) or empty: ours now
        if shard.sharded:
            fcntl.flock(handle, fcntl.LOCK_SH)  # let the other shards join
        return
    raise _busy(output, _read_holder(handle) or {"pid": "?", "host": "?", "started": "?"})


def _write_holder(handle, holder: dict) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(holder))
    handle.flush()
    os.fsync(handle.fileno())


def _release(fcntl, handle) -> None:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the last holder: empty the record
        handle.seek(0)
        handle.truncate()
        handle.flush()
    except BlockingIOError:  # other shards still run
        pass
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def distributed_barrier(shard: Shard) -> None:
    """Under torchrun, wait for every rank so rank 0 reports the finished dataset.

    A gloo group over torchrun's rendezvous (MASTER_ADDR/PORT); on any failure the launcher stops
    all ranks, so the barrier never outlives a crashed peer.
    """
    if shard.launcher != "torchrun" or "MASTER_ADDR" not in os.environ:
        return
    import datetime

    import torch.distributed as dist

    if not dist.is_available():
        return
    created = not dist.is_initialized()
    if created:
        # Shards are the same size, but one may hit slow files: allow long waits.
        dist.init_process_group("gloo", timeout=datetime.timedelta(hours=24))
    try:
        dist.barrier()
    finally:
        if created:
            dist.destroy_process_group()
