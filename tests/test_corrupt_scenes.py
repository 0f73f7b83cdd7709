"""Damaged scene files and variant listings are detected, named and never silently used: checksums recorded at
write time (schema version 2) catch bit flips, `validate` reports each problem on one line naming the file,
and a listing that points outside the variant folder is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
from click.testing import CliRunner
from fixtures_scenes import write_variant

from generation.cli import main as generation_cli
from generation.scenefile import CHECKSUM_ATTR, read_scene
from preprocessing.variant import SceneEntry, open_variant, read_entry


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> Path:
    return write_variant(tmp_path_factory.mktemp("variant"), {"train": 2, "test": 1}, n_views=2, image_size=32)


@pytest.fixture
def copy(variant, tmp_path) -> Path:
    return Path(shutil.copytree(variant, tmp_path / "variant"))


def flip_byte(path: Path, dataset: str, chunk: bool = False) -> None:
    """Invert one stored byte of `dataset` (its first chunk when chunked), as a failing disk or copy would."""
    with h5py.File(path, "r") as f:
        dsid = f[dataset].id
        offset = dsid.get_chunk_info(0).byte_offset + 20 if chunk else dsid.get_offset() + 3
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def validate(folder: Path):
    return CliRunner().invoke(generation_cli, ["validate", str(folder)])


def scene_problems(result) -> list[str]:
    """Problem lines about scene files (the synthetic fixture's rectangles also fail the pooled box statistic)."""
    return [line for line in result.output.splitlines() if "/scenes/" in line or "index.json" in line]


def test_an_intact_variant_has_no_problem_with_any_scene_file(variant):
    result = validate(variant)
    assert result.output.startswith("only") or "3 scenes" in result.output
    assert scene_problems(result) == [] and "Traceback" not in result.output


@pytest.mark.parametrize(("dataset", "chunk"), [("cameras/K", False), ("objects/box_max", False),
                                                 ("views/instance", True)])
def test_a_flipped_byte_is_caught_by_its_checksum_or_the_decoder(copy, dataset, chunk):
    path = copy / "scenes" / "scene_000001.h5"
    flip_byte(path, dataset, chunk)
    with pytest.raises(ValueError) as err:
        read_scene(path)
    assert str(err.value).startswith(f"{path}: ")
    if not chunk:  # a flip in compressed data may fail in the decoder before the checksum is compared
        assert f"{dataset} does not match the checksum recorded when it was written" in str(err.value)
    result = validate(copy)
    assert result.exit_code == 1
    assert len(scene_problems(result)) == 1 and scene_problems(result)[0].startswith(str(path)), result.output
    assert "Traceback" not in result.output
    # the feature stage skips it with the same reason instead of encoding wrong pixels or boxes
    outcome = read_entry(SceneEntry("scene_000001", "train", path))
    assert outcome.scene is None and outcome.error.startswith("unreadable")


def test_edited_attributes_are_caught(copy):
    path = copy / "scenes" / "scene_000000.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["split"] = "test"  # a scene moved between splits by hand
    with pytest.raises(ValueError, match="attributes do not match the checksum"):
        read_scene(path, views=False)


def test_a_truncated_scene_file_is_one_problem_naming_it(copy):
    path = copy / "scenes" / "scene_000002.h5"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = validate(copy)
    assert result.exit_code == 1
    assert len(scene_problems(result)) == 1 and scene_problems(result)[0].startswith(f"{path}: cannot open as HDF5")
    assert "Traceback" not in result.output


def test_version_1_files_without_checksums_still_read_and_are_reported(copy):
    path = copy / "scenes" / "scene_000000.h5"
    with h5py.File(path, "r+") as f:
        f.attrs["schema_version"] = 1
        del f.attrs["attrs_sha256"]
        f.visititems(lambda name, obj: obj.attrs.__delitem__(CHECKSUM_ATTR) if isinstance(obj, h5py.Dataset)
                     else None)
    assert read_scene(path).schema_version == 1
    result = validate(copy)
    assert scene_problems(result) == [], result.output
    assert "1 scene(s) of schema version 1 carry no checksums" in result.output


def test_a_version_2_file_stripped_of_its_checksums_is_refused(copy):
    path = copy / "scenes" / "scene_000000.h5"
    with h5py.File(path, "r+") as f:
        del f["cameras/K"].attrs[CHECKSUM_ATTR]
    with pytest.raises(ValueError, match="cameras/K has no checksum"):
        read_scene(path)


@pytest.mark.parametrize("bad_path", ["../../outside.h5", "/etc/passwd", "scenes/../../../x.h5"])
def test_a_listing_that_points_outside_the_variant_is_refused(copy, bad_path):
    index = json.loads((copy / "index.json").read_text())
    index["scenes"][0]["file"] = bad_path
    (copy / "index.json").write_text(json.dumps(index))
    result = validate(copy)
    assert result.exit_code == 1
    assert f"{copy / 'index.json'}: refuses path {bad_path!r}" in result.output
    with pytest.raises(ValueError, match="refuses path"):
        open_variant(copy)


def test_a_scene_id_that_is_a_path_is_refused(copy):
    (copy / "index.json").unlink()
    (copy / "splits.json").write_text(json.dumps({"train": ["../../../etc/shadow"]}))
    with pytest.raises(ValueError, match=r"splits\.json: refuses path"):
        open_variant(copy)
