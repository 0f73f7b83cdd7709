"""Reading side of the feature cache: find the shards of a feature folder and check they are the right ones.

Training calls `load_manifest(folder, expect={...})` and gets WebDataset shard paths per split; features made
with another encoder, input size, grid or channel count are refused with a message that says what differs.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

from generation.safefiles import inside

FORMAT_NAME = "oddbench-features"
FORMAT_VERSION = 1
TOKEN_LAYOUT = "views,h,w,C"
MANIFEST_FILE = "manifest.json"


class ManifestMismatch(ValueError):
    """The feature folder is not what the caller expects (other encoder, layout, size...) or is incomplete."""


def comparable_fields(manifest: dict) -> dict:
    """The values `expect` may constrain, flattened from the manifest."""
    encoder, tokens = manifest["encoder"], manifest["tokens"]
    return {
        "format_version": manifest["format_version"],
        "encoder": encoder["id"],
        "encoder_revision": encoder["revision"],
        "model_type": encoder["model_type"],
        "hidden_size": encoder["hidden_size"],
        "patch_size": encoder["patch_size"],
        "num_register_tokens": encoder["num_register_tokens"],
        "image_size": manifest["input"]["image_size"],
        "layout": tokens["layout"],
        "grid": tokens["grid"],
        "token_dim": tokens["dim"],
        "cls_dim": tokens["cls_dim"],
        "storage_dtype": tokens["dtype"],
        "pca_dim": manifest["pca"]["dim"] if manifest["pca"] else None,
        "variant_id": manifest["source"]["variant_id"],
    }


def _normalise(key: str, value):
    if key == "image_size" and isinstance(value, int):
        return [value, value]
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class FeatureManifest:
    root: Path
    data: dict  # manifest.json as written
    shard_urls: dict[str, list[str]]  # split -> absolute shard paths, in order
    samples: dict[str, int]  # split -> number of scenes

    @property
    def token_dim(self) -> int:
        return self.data["tokens"]["dim"]

    @property
    def cls_dim(self) -> int:
        return self.data["tokens"]["cls_dim"]

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.data["tokens"]["grid"]
        return h, w


SAMPLE_MEMBERS = frozenset(
    ("tokens.npy", "cls.npy", "k.npy", "kfeat.npy", "w2c.npy", "boxmin.npy", "boxmax.npy", "labels.npy",
     "instance.npy", "meta.json")
)


def load_manifest(
    root: str | Path, expect: dict | None = None, allow_incomplete: bool = False, check_files: bool = True
) -> FeatureManifest:
    """Read `<root>/manifest.json`, check it against `expect` and return the shard paths per split.

    `expect` maps any of the keys of `comparable_fields` (e.g. `encoder`, `layout`, `grid`, `token_dim`,
    `image_size`) to the value the caller was built for. Incomplete feature folders (a `--shard i/N` job still
    running, a killed run) are refused unless `allow_incomplete`. With `check_files`, a listed shard that is
    missing or not the size the manifest records (truncated, replaced) is refused: a stat per shard, where
    `verify_shards` reads every byte.
    """
    root = Path(root)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `python -m preprocessing features --out {root} ...` first"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ManifestMismatch(f"{path}: not valid JSON ({err})") from err
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") != FORMAT_VERSION:
        raise ManifestMismatch(
            f"{path}: format {manifest.get('format')!r} version {manifest.get('format_version')!r}; "
            f"this code reads {FORMAT_NAME!r} version {FORMAT_VERSION}. Recompute the features."
        )
    actual = comparable_fields(manifest)
    if expect:
        unknown = sorted(set(expect) - set(actual))
        if unknown:
            raise ValueError(f"load_manifest: unknown expect keys {unknown}; known: {sorted(actual)}")
        differences = [
            f"{key} is {actual[key]!r}, expected {_normalise(key, value)!r}"
            for key, value in expect.items()
            if _normalise(key, actual[key]) != _normalise(key, value)
        ]
        if differences:
            raise ManifestMismatch(
                f"the features in {root} were made differently from what this code expects: "
                + "; ".join(differences)
                + ". Recompute them with `python -m preprocessing features` and matching --model /"
                " --image-size / --pca-dim, or point at a matching feature folder."
            )
    if not manifest["complete"] and not allow_incomplete:
        missing = manifest["missing_shards"]
        raise ManifestMismatch(
            f"the features in {root} are incomplete: {len(missing)} shard(s) not written yet "
            f"(first: {missing[0]}). Finish the run (rerun the same command) before training on it."
        )
    urls, samples = {}, {}
    for split, info in manifest["splits"].items():
        urls[split] = [str(inside(root, shard["path"], path)) for shard in info["shards"]]
        samples[split] = info["samples"]
        if sum(shard["samples"] for shard in info["shards"]) != info["samples"]:
            raise ManifestMismatch(f"{path}: split {split!r} counts {info['samples']} samples, its shards "
                                   f"{sum(shard['samples'] for shard in info['shards'])}")
        if check_files:
            _check_sizes(path, urls[split], info["shards"])
    return FeatureManifest(root, manifest, urls, samples)


def _check_sizes(manifest_path: Path, urls: list[str], shards: list[dict]) -> None:
    for url, shard in zip(urls, shards, strict=True):
        size = Path(url).stat().st_size if Path(url).is_file() else None
        if size != shard["bytes"]:
            found = "missing" if size is None else f"{size} bytes"
            raise ManifestMismatch(f"{url}: {found}, {manifest_path} records {shard['bytes']} bytes (truncated or "
                                   f"replaced); check with `python -m preprocessing verify {manifest_path.parent}`")


def verify_shards(root: str | Path) -> list[str]:
    """Problems found when checking every listed shard against the manifest and its record: size and sha256
    (recorded when the shard was written), then the samples inside (count, keys, the members each must have),
    and the PCA files. An empty list means all good; each problem is one line naming the file."""
    features = load_manifest(root, allow_incomplete=True, check_files=False)
    manifest_path = features.root / MANIFEST_FILE
    problems = []
    for info in features.data["splits"].values():
        for shard in info["shards"]:
            path = inside(features.root, shard["path"], manifest_path)
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            if path.stat().st_size != shard["bytes"] or _sha256(path) != shard["sha256"]:
                problems.append(f"{path}: size or sha256 differs from the manifest (corrupted or replaced)")
                continue
            record_path = path.with_suffix(".json")
            record = json.loads(record_path.read_text()) if record_path.is_file() else None
            if record is not None and record.get("sha256") != shard["sha256"]:
                problems.append(f"{record_path}: sha256 differs from {manifest_path}")
            problems += _sample_problems(path, shard["samples"], record["keys"] if record else None)
    pca = features.data.get("pca")
    for relative, digest in (pca or {}).get("sha256", {}).items():
        path = inside(features.root, relative, manifest_path)
        if not path.is_file() or _sha256(path) != digest:
            problems.append(f"{path}: missing, or sha256 differs from the manifest")
    return problems


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _sample_problems(path: Path, samples: int, keys: list[str] | None) -> list[str]:
    """What is wrong with the samples of one shard: its member names are read, nothing is unpacked."""
    members: dict[str, set[str]] = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                members.setdefault(key, set()).add(suffix)
    except tarfile.TarError as err:
        return [f"{path}: not a readable tar file ({err})"]
    problems = []
    if len(members) != samples:
        problems.append(f"{path}: {len(members)} samples, the manifest records {samples}")
    if keys is not None and list(members) != keys:
        problems.append(f"{path}: sample keys differ from its record {path.with_suffix('.json').name}")
    for key, found in members.items():
        if found != SAMPLE_MEMBERS:
            missing, extra = sorted(SAMPLE_MEMBERS - found), sorted(found - SAMPLE_MEMBERS)
            problems.append(f"{path}: sample {key!r} " + "; ".join(
                [f"lacks {', '.join(missing)}"] * bool(missing) + [f"has unexpected {', '.join(extra)}"] * bool(extra)))
    return problems
