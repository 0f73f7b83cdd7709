"""Hostile mesh files through the folder, Toys4K and ABC readers: each bad file is skipped with its reason in
report.json, the good ones still make scenes, and a file that takes too long cannot stall the run."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

from generation.config import load_config
from generation.runner import run_scenes
from generation.shapes.folder import load_mesh_file
from generation.shapes.sources import make_source
from generation.shapes.types import ShapeError
from tests.test_shapes import _torus_grid

REPO = Path(__file__).resolve().parents[1]
ICOSPHERE_OBJ = trimesh.exchange.obj.export_obj(trimesh.creation.icosphere())
TETRA = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"

# file name -> (contents, the reason the loader must give); contents are bytes or text
BAD_FILES = {
    "empty.obj": (b"", "empty file"),
    "random_bytes.obj": (np.random.default_rng(1).bytes(4000), "no faces"),
    "random_bytes.stl": (np.random.default_rng(2).bytes(4000), "no faces"),
    "random_bytes.off": (np.random.default_rng(3).bytes(4000), "could not be parsed as OFF"),
    "nan_vertex.obj": ("v 0 0 0\nv 1 0 0\nv nan 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n",
                       "non-finite vertex coordinates"),
    "inf_vertex.obj": ("v 0 0 0\nv 1 0 0\nv inf 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n",
                       "non-finite vertex coordinates"),
    "all_degenerate.obj": ("v 0 0 0\nv 1 0 0\nv 2 0 0\nv 0 1 0\nf 1 2 3\nf 1 1 4\nf 4 4 4\n",
                           "every face has zero area"),
    "index_out_of_range.obj": (TETRA + "f 1 2 3\nf 1 2 99\n", "could not be parsed as OBJ: IndexError"),
    "truncated_vertices.obj": (ICOSPHERE_OBJ[:1000] + "\nf 1 2 3\nf 40 41 42\n",
                               "could not be parsed as OBJ: IndexError"),
    "not_a.glb": (b"glTF" + np.random.default_rng(4).bytes(500), "could not be parsed as GLB"),
    "text.glb": ("hello, I am not binary glTF", "could not be parsed as GLB"),
    "junk_ascii.stl": ("solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex zz 1 0\n"
                       "endloop\nendfacet\njunk junk\nendsolid\n", "could not be parsed as STL"),
    "one_point.obj": ("v 1 2 3\nv 1 2 3\nv 1 2 3\nf 1 2 3\n", "zero extent"),
}


def _write(path: Path, contents) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(contents, bytes):
        path.write_bytes(contents)
    else:
        path.write_text(contents, encoding="utf-8")


def _good_files(folder: Path) -> dict[str, str]:
    """Usable meshes that a user could well have: file name -> what is odd about them."""
    cases = {}
    for k, scale in enumerate((1e-9, 1e9)):  # binary PLY keeps full precision at any scale
        mesh = trimesh.util.concatenate([trimesh.creation.box(extents=[0.6 + 0.1 * k, 0.4, 0.3]),
                                         trimesh.creation.cylinder(radius=0.12, height=0.4)])
        mesh.apply_scale(scale)
        name = f"scale_{scale:g}.ply"
        mesh.export(folder / name)
        cases[name] = f"scale {scale:g}"
    _write(folder / "missing_mtl.obj", "mtllib nowhere.mtl\nusemtl red\n" + ICOSPHERE_OBJ)
    cases["missing_mtl.obj"] = ".mtl file missing"
    trimesh.creation.capsule().export(folder / "Spielzeug_Äpfel_玩具.obj")
    cases["Spielzeug_Äpfel_玩具.obj"] = "non-ASCII name"
    _write(folder / "trailing_junk.stl",
           trimesh.exchange.stl.export_stl_ascii(trimesh.creation.box()) + "\ntrailing garbage\n\x00\x01")
    cases["trailing_junk.stl"] = "ASCII STL with junk after its end"
    return cases


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_each_hostile_file_is_refused_naming_the_file_and_the_reason(tmp_path, name):
    contents, reason = BAD_FILES[name]
    path = tmp_path / "things" / name
    _write(path, contents)
    start = time.perf_counter()
    with pytest.raises(ShapeError) as err:
        load_mesh_file(path)
    assert time.perf_counter() - start < 5
    assert str(err.value).startswith(f"{path}: ") and reason in err.value.reason


def test_tiny_and_vast_scales_load_as_the_same_normalized_shape(tmp_path):
    """trimesh's merge tolerance is absolute: without rescaling, a 1e-9 m mesh merged into one point."""
    extents = []
    for scale in (1e-9, 1.0, 1e9, 1e15):
        mesh = trimesh.creation.icosphere()
        mesh.apply_scale(scale)
        mesh.export(tmp_path / "ball.ply")
        shape, notes = load_mesh_file(tmp_path / "ball.ply")
        assert len(shape.merged()[0].faces) == 1280 and notes == [], scale
        extents.append(shape.merged()[0].extents)
    np.testing.assert_allclose(extents, [[1.0, 1.0, 1.0]] * 4, atol=1e-6)


def test_a_hostile_folder_is_reported_file_by_file_and_the_good_files_make_scenes(tmp_path):
    folder = tmp_path / "meshes" / "widget"
    folder.mkdir(parents=True)
    for name, (contents, _) in BAD_FILES.items():
        _write(folder / name, contents)
    good = _good_files(folder)
    _torus_grid(1600, 1024).export(folder / "huge_scan.ply")  # 3,276,800 faces: takes seconds, not 1.5 s
    tiny = ["n_scenes=2", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=2",
            "render.preset='draft'", "scene.objects=[3,4]", "shapes.kind='folder'",
            f"shapes.root='{tmp_path / 'meshes'}'", "split.test_fraction=0.0", "anomalies.weights={material=1.0}"]
    config = load_config(REPO / "assets/configs/demo.toml", tiny)
    start = time.perf_counter()
    run_scenes(config, tmp_path / "out", workers=1, progress=False, shape_timeout=1.5)
    seconds = time.perf_counter() - start
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    skipped = report["skipped_shapes"]
    by_file = {Path(reason.split(": ", 1)[0]).name: reason for reason in skipped.values()}
    assert set(by_file) == {*BAD_FILES, "huge_scan.ply"}, sorted(by_file)
    for name, (_, reason) in BAD_FILES.items():
        assert reason in by_file[name]
    assert "time limit of 1.5 s per file" in by_file["huge_scan.ply"]
    catalogue = json.loads((tmp_path / "out" / "shapes.json").read_text())
    assert len(catalogue["usable"]) == len(good), (sorted(catalogue["usable"]), good)
    assert report["done_this_run"] + len(report["rejected_this_run"]) == 2 and report["done_this_run"] >= 1
    print(f"\nhostile folder: {len(BAD_FILES) + len(good) + 1} files, 2 scenes in {seconds:.1f} s")


def test_toys4k_and_abc_readers_skip_hostile_files_with_their_reasons(tmp_path):
    """A `.blend` that is not one, and ABC chunks that are random bytes or index past their vertices."""
    from generation.runner import _check_shape, _worker

    blend = tmp_path / "toys" / "cup" / "cup_000" / "cup_000.blend"
    _write(blend, np.random.default_rng(5).bytes(3000))
    abc = tmp_path / "abc"
    _write(abc / f"00000000_{'a' * 32}_trimesh_000.obj", np.random.default_rng(6).bytes(3000))
    _write(abc / f"00000001_{'b' * 32}_trimesh_000.obj", TETRA + "f 1 2 3\nf 1 2 7\n")
    for spec, shape_id, reason in (
        ({"kind": "toys4k", "root": str(tmp_path / "toys")}, "cup_000", "could not be read as a .blend file"),
        ({"kind": "abc", "root": str(abc)}, "00000000_000", "no faces"),
        ({"kind": "abc", "root": str(abc)}, "00000001_000", "IndexError"),
    ):
        _worker["source"] = make_source(spec)
        outcome = _check_shape(shape_id)
        assert not outcome["ok"] and reason in outcome["reason"], outcome
        assert str(_worker["source"].path(shape_id)) in outcome["reason"]
    _worker.clear()
