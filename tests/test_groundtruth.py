"""The ray-cast ground truth agrees with Cycles' own object-index and depth passes.

This ties the numpy camera conventions (intrinsics, OpenCV extrinsics, pixel centres) to what Blender renders.
"""

import bpy
import numpy as np

from generation import cameras
from generation.blender import objects, render
from generation.groundtruth import cast_ground_truth
from generation.shapes.builtin import builtin_shape

W, H = 64, 48


def _read_exr(path) -> np.ndarray:
    image = bpy.data.images.load(str(path))
    pixels = np.array(image.pixels[:], dtype=np.float32).reshape(H, W, image.channels)
    return pixels[::-1, :, 0]  # Blender stores rows bottom-up


def test_instance_mask_and_depth_match_cycles_passes(tmp_path):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    K = cameras.intrinsics(W, H)
    meshes = []
    for i, (category, xy) in enumerate([("mug", (-0.15, 0.0)), ("gear", (0.18, 0.05)), ("robot", (0.0, 0.25))]):
        shape = builtin_shape(category, 0)
        obj = objects.add_shape_object(f"object_{i}", shape, 0.3)
        pose = np.diag([0.3, 0.3, 0.3, 1.0])
        pose[:3, 3] = [xy[0], xy[1], 0.15]
        objects.set_pose(obj, pose)
        obj.pass_index = i + 1
        merged = shape.merged()[0]
        meshes.append((np.asarray(merged.vertices) @ pose[:3, :3].T + pose[:3, 3], np.asarray(merged.faces)))
    world_to_camera = cameras.look_at([0.55, -0.7, 0.45], [0.0, 0.05, 0.1])[None]

    scene = bpy.context.scene
    render.configure_cycles("draft", "CPU", 1, seed=0, threads=2, width=W, height=H)
    scene.cycles.filter_width = 0.01  # one ray per pixel centre, no anti-aliasing blend
    scene.cycles.use_denoising = False
    scene.view_layers[0].use_pass_object_index = True
    scene.view_layers[0].use_pass_z = True
    scene.use_nodes = True
    tree = scene.node_tree
    layers = tree.nodes.get("Render Layers") or tree.nodes.new("CompositorNodeRLayers")
    composite = tree.nodes.get("Composite") or tree.nodes.new("CompositorNodeComposite")
    tree.links.new(layers.outputs["Image"], composite.inputs["Image"])
    for name in ("IndexOB", "Depth"):
        output = tree.nodes.new("CompositorNodeOutputFile")
        output.base_path = str(tmp_path / name)
        output.format.file_format = "OPEN_EXR"
        output.format.color_depth = "32"
        tree.links.new(layers.outputs[name], output.inputs[0])
    camera = render.add_camera(K, W, H)
    render.render_views(camera, world_to_camera, tmp_path)

    index_pass = _read_exr(next((tmp_path / "IndexOB").glob("*.exr")))
    depth_pass = _read_exr(next((tmp_path / "Depth").glob("*.exr")))
    truth = cast_ground_truth(meshes, [None] * 3, K[None], world_to_camera, W, H)
    instance, depth = truth["instance"][0], truth["depth"][0]
    assert set(np.unique(instance)) == {0, 1, 2, 3}
    agreement = (np.round(index_pass).astype(int) == instance).mean()
    assert agreement >= 0.995, f"instance masks agree on only {agreement:.2%} of pixels"
    objects_both = (instance > 0) & (np.round(index_pass) == instance)
    np.testing.assert_allclose(depth_pass[objects_both], depth[objects_both], atol=2e-3)
