"""Back-projection and cropping against analytic scenes: the camera conventions of docs/scene-format.md."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from fixtures_shards import make_scene, onehot_tokens

from generation.cameras import project
from training.data import DataConfig, prepare_scene, rotate_scene
from training.model import ModelConfig, backproject, crop_objects, grid_origin

torch.set_num_threads(1)


def pooled_onehot(scene, w2c, boxmin, boxmax, cfg: ModelConfig) -> torch.Tensor:
    """(N, N) mean of each object's crop of the back-projected one-hot instance features, through the model's
    own path: bilinear upsampling to the map, kfeat scaled to it, grid placement, back-projection, crops."""
    n = len(boxmin)
    tokens = torch.from_numpy(onehot_tokens(scene["instance.npy"], n)).float().permute(0, 3, 1, 2)
    h, w = tokens.shape[2:]
    feats = F.interpolate(tokens, size=(cfg.map_size,) * 2, mode="bilinear", align_corners=False)[None]
    k = torch.from_numpy(scene["kfeat.npy"])[None] * torch.tensor([cfg.map_size / w, cfg.map_size / h, 1.0])[:, None]
    bmin, bmax = torch.from_numpy(boxmin)[None], torch.from_numpy(boxmax)[None]
    mask = torch.ones(1, n, dtype=torch.bool)
    origin = grid_origin(bmin, bmax, mask, cfg.grid, cfg.voxel_size)
    volume, count = backproject(feats, k, torch.from_numpy(w2c)[None], origin, cfg.grid, cfg.voxel_size)
    assert count.max() <= len(w2c) and count.float().mean() > 1
    crops = crop_objects(volume, origin, bmin, bmax, mask, cfg.voxel_size, cfg.crop_size, cfg.crop_pad)
    return crops.mean((3, 4, 5))[0]


@pytest.mark.parametrize("n_objects", [3, 7, 12])
@pytest.mark.parametrize("angle", [0.0, 2.2])
def test_onehot_features_land_in_their_own_crop(n_objects, angle):
    rng = np.random.default_rng(n_objects)
    scene = make_scene(rng, n_objects, n_views=8)
    w2c, boxmin, boxmax = rotate_scene(scene["w2c.npy"], scene["boxmin.npy"], scene["boxmax.npy"], angle)
    pooled = pooled_onehot(scene, w2c, boxmin, boxmax, ModelConfig())  # full-size grid: 96 x 96 x 16 of 4 cm
    own = pooled.diagonal()
    strongest_other = (pooled - torch.diag(own)).amax(1)
    assert (pooled.argmax(1) == torch.arange(n_objects)).all()
    assert (own > 2 * strongest_other).all(), (own, strongest_other)


def test_onehot_check_fails_with_a_wrong_convention():
    """The same check with camera-to-world instead of world-to-camera must fail: it does test the geometry."""
    scene = make_scene(np.random.default_rng(0), 5, n_views=8)
    c2w = np.linalg.inv(scene["w2c.npy"]).astype(np.float32)
    pooled = pooled_onehot(scene, c2w, scene["boxmin.npy"], scene["boxmax.npy"], ModelConfig())
    own = pooled.diagonal()
    assert not (own > 2 * (pooled - torch.diag(own)).amax(1)).all()


def test_backprojection_uses_pixel_corner_coordinates():
    """A camera below the grid looking up (+z): each voxel takes the feature of the pixel containing its
    projection, pixel (r, c) covering [c, c+1) x [r, r+1); voxels outside the image are unseen."""
    H = W = 4
    feats = torch.arange(H * W, dtype=torch.float32).view(1, 1, 1, H, W) + 1  # feature = 1 + pixel index
    k = torch.tensor([[[[3.0, 0, 2], [0, 3, 2], [0, 0, 1]]]])
    w2c = torch.eye(4).view(1, 1, 4, 4).clone()
    w2c[..., 2, 3] = 0.5  # camera 0.5 m below the floor
    grid, size = (10, 10, 4), 0.1
    origin = torch.tensor([[-0.5, -0.5, 0.0]])
    volume, count = backproject(feats, k, w2c, origin, grid, size)
    iz, iy, ix = np.meshgrid(*(np.arange(n) for n in grid[::-1]), indexing="ij")
    x, y, z = (ix + 0.5) * size - 0.5, (iy + 0.5) * size - 0.5, (iz + 0.5) * size + 0.5
    u, v = 3 * x / z + 2, 3 * y / z + 2
    inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
    expected = np.where(inside, np.floor(v) * W + np.floor(u) + 1, 0)
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(volume[0, 0].numpy(), expected)
    np.testing.assert_array_equal(count[0].numpy(), inside.astype(int))


def test_rotation_moves_cameras_with_the_world():
    scene = make_scene(np.random.default_rng(3), 4, n_views=3)
    angle = 1.1
    w2c, boxmin, boxmax = rotate_scene(scene["w2c.npy"], scene["boxmin.npy"], scene["boxmax.npy"], angle)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    centres = (scene["boxmin.npy"] + scene["boxmax.npy"]) / 2
    for v in range(3):
        before, _ = project(scene["kfeat.npy"][v], scene["w2c.npy"][v].astype(np.float64), centres)
        after, _ = project(scene["kfeat.npy"][v], w2c[v].astype(np.float64), centres @ rot.T)
        np.testing.assert_allclose(before, after, atol=1e-4)
    np.testing.assert_allclose((boxmin + boxmax) / 2, centres @ rot.T, atol=1e-5)
    assert (boxmax - boxmin >= scene["boxmax.npy"] - scene["boxmin.npy"] - 1e-6)[:, 2].all()
    assert (boxmin[:, 2] == 0).all()


def test_training_crops_have_the_scale_of_test_crops():
    """Training turns scenes by quarter turns: the rotated boxes are the objects' boxes with x and y swapped,
    not the wider axis-aligned bounds of an obliquely rotated box."""
    scene = make_scene(np.random.default_rng(5), 6, n_views=4)
    extents = scene["boxmax.npy"] - scene["boxmin.npy"]
    seen = set()
    for seed in range(12):
        prepared = prepare_scene(scene, np.random.default_rng(seed), DataConfig(), True, None, None)
        rotated = prepared["boxmax"] - prepared["boxmin"]
        swapped = bool(np.abs(rotated[:, 0] - extents[:, 0]).max() > 1e-4)
        np.testing.assert_allclose(rotated, extents[:, [1, 0, 2]] if swapped else extents, atol=1e-5)
        seen.add(swapped)
    assert seen == {True, False}  # both orientations occur


def test_lifting_before_upsampling_equals_lifting_after():
    """The model applies the 1x1 conv at token resolution; bilinear weights sum to one, so it commutes."""
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 1)
    x = torch.randn(3, 16, 18, 18)

    def up(t):
        return F.interpolate(t, size=(64, 64), mode="bilinear", align_corners=False)

    torch.testing.assert_close(up(conv(x)), conv(up(x)), atol=1e-5, rtol=1e-5)
