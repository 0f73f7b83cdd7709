"""Planning scenes into shards and writing shards atomically, so that killed runs resume cleanly.

The plan is a pure function of the variant's listing and the shard size: split by split, scenes in sorted
order, a fixed number per shard. A rerun (or another `--shard i/N` job) computes the same plan, so no scene
can land in two shards or in none.

A shard is written to `<name>.tar.tmp`; when it is complete its record `<name>.json` (sample count, skipped
scenes, size, sha256, the settings it was made with) is written, and only then is the tar renamed into place.
A `.tar` that exists is therefore finished and described by its record; anything else is redone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from preprocessing.variant import SceneEntry, Variant

TAR_MEMBER_OVERHEAD = 10 * 1024  # ten members, each a 512-byte header plus padding to 512 bytes
FIXED_MTIME = 0.0  # reproducible tar headers: the same samples give the same bytes


@dataclass(frozen=True)
class ShardPlan:
    split: str
    index: int
    entries: tuple[SceneEntry, ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}"

    @property
    def tar(self) -> str:
        """Path relative to the output folder."""
        return f"{self.split}/{self.name}.tar"

    @property
    def record(self) -> str:
        return f"{self.split}/{self.name}.json"


class SettingsMismatch(RuntimeError):
    """The output folder holds shards made with other settings; mixing them would corrupt the feature set."""


def estimated_scene_bytes(n_views: int, grid: tuple[int, int], token_dim: int, cls_dim: int) -> int:
    tokens = n_views * grid[0] * grid[1] * token_dim * 2
    per_view = cls_dim * 2 + grid[0] * grid[1] + (9 + 9 + 16) * 4  # cls, instance, k, kfeat, w2c
    return tokens + n_views * per_view + TAR_MEMBER_OVERHEAD


def plan_shards(variant: Variant, scenes_per_shard: int) -> list[ShardPlan]:
    plans = []
    for split, entries in variant.splits.items():
        for index, start in enumerate(range(0, len(entries), scenes_per_shard)):
            plans.append(ShardPlan(split, index, tuple(entries[start : start + scenes_per_shard])))
    return plans


def select_part(plans: list[ShardPlan], part: int, parts: int) -> list[ShardPlan]:
    """The shards job `part` of `parts` writes: every `parts`-th shard of the whole plan."""
    return plans[part::parts]


def read_record(out: Path, plan: ShardPlan) -> dict | None:
    """The record of a finished shard, or None if the shard still has to be written."""
    if not (out / plan.tar).is_file() or not (out / plan.record).is_file():
        return None
    return json.loads((out / plan.record).read_text())


def check_finished(out: Path, plan: ShardPlan, settings: dict) -> bool:
    """Whether `plan` is already written with these settings; refuses a shard written with other settings."""
    record = read_record(out, plan)
    if record is None:
        return False
    planned = [entry.scene_id for entry in plan.entries]
    if record["settings"] != settings or record["planned"] != planned:
        changed = sorted(k for k in settings if record["settings"].get(k) != settings[k])
        what = f"settings {changed}" if changed else "the list of scenes in the variant"
        raise SettingsMismatch(
            f"{out / plan.tar} was made with different {what} than this run. "
            f"Write to a new --out folder (or delete {out} to recompute everything)."
        )
    return True


class _HashingFile:
    """A binary file that hashes what is written to it, so a shard is not read twice for its checksum."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")  # noqa: SIM115 (closed in close())
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self._file.write(data)

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class ShardBuilder:
    """Writes one planned shard: `add` samples, `skip` unreadable scenes, then `finish`."""

    def __init__(self, out: Path, plan: ShardPlan, settings: dict):
        self.out, self.plan, self.settings = out, plan, settings
        (out / plan.split).mkdir(parents=True, exist_ok=True)
        self._tmp = out / f"{plan.tar}.tmp"
        self._file = _HashingFile(self._tmp)
        self._tar = wds.TarWriter(self._file, mtime=FIXED_MTIME)
        self.keys: list[str] = []
        self.skipped: list[dict] = []

    def add(self, sample: dict) -> None:
        self._tar.write(sample)
        self.keys.append(sample["__key__"])

    def skip(self, entry: SceneEntry, reason: str) -> None:
        self.skipped.append(
            {"scene_id": entry.scene_id, "split": entry.split, "file": str(entry.path), "reason": reason}
        )

    def abandon(self) -> None:
        """Remove the partial shard after a failed write; finished shards and records are untouched."""
        for close in (self._tar.close, self._file.close):
            with contextlib.suppress(OSError):  # the write failed already; closing may fail the same way
                close()
        self._tmp.unlink(missing_ok=True)
        (self.out / f"{self.plan.record}.tmp").unlink(missing_ok=True)

    def finish(self) -> None:
        self._tar.close()
        self._file.close()
        record = {
            "path": self.plan.tar,
            "split": self.plan.split,
            "samples": len(self.keys),
            "bytes": self._file.bytes,
            "sha256": self._file.sha256.hexdigest(),
            "keys": self.keys,
            "skipped": self.skipped,
            "planned": [entry.scene_id for entry in self.plan.entries],
            "settings": self.settings,
        }
        record_tmp = self.out / f"{self.plan.record}.tmp"
        record_tmp.write_text(json.dumps(record, indent=1))
        os.replace(record_tmp, self.out / self.plan.record)
        os.replace(self._tmp, self.out / self.plan.tar)
