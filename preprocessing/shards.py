"""Reading side of the feature cache: find the shards of a feature folder and check they are the right ones.

Training calls `load_manifest(folder, expect={...})` and gets WebDataset shard paths per split; features made
with another encoder, input size, grid or channel count are refused with a message that says what differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

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


def load_manifest(
    root: str | Path, expect: dict | None = None, allow_incomplete: bool = False
) -> FeatureManifest:
    """Read `<root>/manifest.json`, check it against `expect` and return the shard paths per split.

    `expect` maps any of the keys of `comparable_fields` (e.g. `encoder`, `layout`, `grid`, `token_dim`,
    `image_size`) to the value the caller was built for. Incomplete feature folders (a `--shard i/N` job still
    running, a killed run) are refused unless `allow_incomplete`.
    """
    root = Path(root)
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run `python -m preprocessing features --out {root} ...` first"
        )
    manifest = json.loads(path.read_text())
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
        urls[split] = [str(root / shard["path"]) for shard in info["shards"]]
        samples[split] = info["samples"]
    return FeatureManifest(root, manifest, urls, samples)


def verify_shards(root: str | Path) -> list[str]:
    """Problems found when checking every listed shard's size and sha256 (an empty list means all good)."""
    features = load_manifest(root, allow_incomplete=True)
    problems = []
    for info in features.data["splits"].values():
        for shard in info["shards"]:
            path = features.root / shard["path"]
            if not path.is_file():
                problems.append(f"{path}: missing")
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 24), b""):
                    digest.update(block)
            if path.stat().st_size != shard["bytes"] or digest.hexdigest() != shard["sha256"]:
                problems.append(f"{path}: size or sha256 differs from the manifest")
    return problems
