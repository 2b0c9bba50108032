"""Shards: one extraction split over N processes (torchrun ranks, SLURM array tasks, xargs -P).

Shard i of N takes a contiguous slice of the sorted inputs, writes its own part files
(`part-sIIIIIofNNNNN-KKKKK.parquet`) and error files into the shared output, and resumes on
its own. Nothing here needs torch.distributed: the dataset is complete when the committed
parts of all shards cover every input, which any process can see on disk.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import ConfigError

LOCK_NAME = "_manifest.lock"  # "_" prefix: pyarrow's dataset reader skips it


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
