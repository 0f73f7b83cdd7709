"""The Residual Anomaly model (Chito, Efficient Odd-One-Out, ICIAP 2025) and its comparison heads.

Pipeline for a batch of B scenes, V views, N (padded) objects:

    cached DINOv2 patch tokens (B, V, h, w, 384)
      -> 1x1 conv to 32 channels, bilinear upsampling to a 64 x 64 map per view
      -> back-projection: every voxel centre of a 96 x 96 x 16 grid of 4 cm takes the feature of the pixel it
         falls in (nearest pixel, OpenCV world_to_camera, pixel-corner image coordinates), averaged over the
         views that see it
      -> 3D CNN encoder-decoder (32/64/128/256 channels, skip connections)
      -> one crop per object from its ground-truth box (all crops of a scene as large as its largest box plus
         one voxel per side), trilinearly resampled to 8 x 8 x 8
      -> head -> one logit per object (1 = anomalous)

Heads (`ModelConfig.head`):
    residual      spatial mean -> Linear 32->256 -> Context Match Head (3 Transformer layers) -> Residual
                  Anomaly Module (learnable normality token t0 through one more layer; residual
                  z0 - f(context_i); loss BCE + MSE(mean normal-object output, z0)). The thesis's best model.
    context       Context Match Head alone, a linear classifier on its outputs.
    cls           as context, with the views' mean DINOv2 CLS token (384->256) prepended as a conditioning
                  token that is dropped after the head.
    sparse-voxel  the OOO paper's matching head on the 8^3 crops themselves: every voxel attends to its top-k
                  most similar voxels in each *other* object of the scene (OOO Eq. 7; 3 blocks, 8 heads), then
                  mean and an MLP.

Logits always come out of a float32 final layer, also under bf16 autocast: bf16 scores tie in AUROC and differ
between GPU and CPU.

The grid's x, y are centred on the mean box centre of the scene's objects (cameras look at it; random scene
rotations about the world z axis then never push objects out of the grid); z runs from the floor (z = 0) up.
Everything is batched over scenes and views; padding objects are masked everywhere, so a scene's predictions
do not depend on what else is in the batch or on the order of its objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

HEADS = ("residual", "context", "cls", "sparse-voxel")


@dataclass
class ModelConfig:
    head: str = "residual"
    token_dim: int = 384  # DINOv2 ViT-S/14 patch tokens (fewer after a PCA); set from the feature manifest
    cls_dim: int = 384
    feat_channels: int = 32
    map_size: int = 64  # per-view feature map the tokens are upsampled to
    grid: tuple[int, int, int] = (96, 96, 16)  # voxels along x, y, z
    voxel_size: float = 0.04  # metres
    cnn_channels: tuple[int, ...] = (32, 64, 128, 256)
    cnn_layers_down: tuple[int, ...] = (1, 2, 3, 4)
    cnn_layers_up: tuple[int, ...] = (3, 2, 1)
    crop_size: int = 8
    crop_pad: int = 1  # voxels added on every side of the scene's largest box
    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 3
    d_ff: int = 512
    dropout: float = 0.1
    sparse_topk: int = 20
    sparse_blocks: int = 3
    sparse_heads: int = 8
    sparse_dim_head: int = 32
    sparse_exclude_self: bool = True  # OOO Eq. 7 sums over the other objects only
    bce_weights: tuple[float, float] = (1.0, 1.0)  # (normal, anomalous) weights of the BCE terms; OOO code: 0.3, 0.7

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {self.head!r}")
        if self.cnn_channels[0] != self.feat_channels:
            raise ValueError("model.cnn_channels[0] must equal model.feat_channels")
        if len(self.cnn_layers_down) != len(self.cnn_channels) or len(self.cnn_layers_up) != len(self.cnn_channels) - 1:
            raise ValueError("model.cnn_layers_down needs one entry per level, cnn_layers_up one fewer")


# ----------------------------------------------------------------------------------------------------
# geometry: grid placement, back-projection, object crops


def grid_origin(boxmin: torch.Tensor, boxmax: torch.Tensor, mask: torch.Tensor, grid, voxel_size: float):
    """World position (B, 3) of the grid's lower corner: x, y centred on the mean box centre, z = 0."""
    centre = ((boxmin + boxmax) / 2 * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    half = torch.tensor(grid, dtype=centre.dtype, device=centre.device) * voxel_size / 2
    origin = centre - half
    origin[:, 2] = 0.0
    return origin


def backproject(feats: torch.Tensor, k: torch.Tensor, w2c: torch.Tensor, origin: torch.Tensor, grid, voxel_size):
    """Mean over views of the feature of the pixel each voxel centre falls in.

    feats (B, V, C, H, W); k (B, V, 3, 3) intrinsics of that H x W map, pixel (r, c) covering
    [c, c+1) x [r, r+1); w2c (B, V, 4, 4) OpenCV world-to-camera; origin (B, 3). Returns the volume
    (B, C, Z, Y, X) and the number of views that see each voxel (B, Z, Y, X); unseen voxels are 0.
    """
    B, V, C, H, W = feats.shape
    X, Y, Z = grid
    device = feats.device
    with torch.autocast(device.type, enabled=False):  # pixel coordinates need float32, never bf16
        iz, iy, ix = torch.meshgrid(
            *(torch.arange(n, device=device) for n in (Z, Y, X)), indexing="ij"
        )  # flat voxel index = (iz * Y + iy) * X + ix, the memory order of a (Z, Y, X) volume
        centres = (torch.stack([ix, iy, iz], -1).reshape(-1, 3).float() + 0.5) * voxel_size
        world = origin.float()[:, None] + centres  # (B, P, 3)
        cam = torch.einsum("bvij,bpj->bvpi", w2c[..., :3, :3].float(), world) + w2c[:, :, None, :3, 3].float()
        pix = torch.einsum("bvij,bvpj->bvpi", k.float(), cam)
        depth = pix[..., 2]
        col = torch.floor(pix[..., 0] / depth.clamp(min=1e-6))
        row = torch.floor(pix[..., 1] / depth.clamp(min=1e-6))
        seen = (depth > 1e-6) & (col >= 0) & (col < W) & (row >= 0) & (row < H)  # (B, V, P)
        # one table row per (scene, view, pixel), plus an all-zero row that unseen voxels point at
        view_base = torch.arange(B * V, device=device).view(B, V, 1) * (H * W)
        empty = B * V * H * W
        index = torch.where(seen, view_base + (row * W + col).long(), empty)
    table = torch.cat([feats.permute(0, 1, 3, 4, 2).reshape(-1, C), feats.new_zeros(1, C)])
    # sum over the views of each voxel without materialising a (B, V, P, C) tensor
    summed = F.embedding_bag(index.permute(0, 2, 1).reshape(-1, V), table, mode="sum", padding_idx=empty)
    count = seen.sum(1)  # (B, P)
    volume = summed.view(B, -1, C) / count.clamp(min=1)[..., None].to(summed.dtype)
    return volume.view(B, Z, Y, X, C).permute(0, 4, 1, 2, 3), count.view(B, Z, Y, X)


def crop_objects(volume, origin, boxmin, boxmax, mask, voxel_size: float, size: int, pad: int):
    """Each object's box, grown to the scene's largest box plus `pad` voxels per side, resampled to size^3.

    One trilinear grid_sample call for all objects of the batch, through per-object affine grids.
    volume (B, C, Z, Y, X) -> crops (B, N, C, size, size, size) with axes (z, y, x).
    """
    B, C, Z, Y, X = volume.shape
    N = boxmin.shape[1]
    with torch.autocast(volume.device.type, enabled=False):
        extent = torch.where(mask[..., None], boxmax - boxmin, 0.0).amax(1) + 2 * pad * voxel_size  # (B, 3)
        span = torch.tensor([X, Y, Z], dtype=extent.dtype, device=extent.device) * voxel_size
        centre = ((boxmin + boxmax) / 2 - origin[:, None]) / span * 2 - 1  # normalised, (B, N, 3) as x, y, z
        theta = torch.zeros(B, N, 3, 4, dtype=extent.dtype, device=extent.device)
        theta[..., :3, :3] = torch.diag_embed(extent / span)[:, None]
        theta[..., :3, 3] = centre
        coords = F.affine_grid(theta.view(B * N, 3, 4).float(), [B * N, 1, size, size, size], align_corners=False)
    coords = coords.view(B, N * size, size, size, 3)  # float32; autocast promotes grid_sample to it
    crops = F.grid_sample(volume, coords, mode="bilinear", padding_mode="zeros", align_corners=False)
    return crops.view(B, C, N, size, size, size).transpose(1, 2)


# ----------------------------------------------------------------------------------------------------
# 3D CNN encoder-decoder (Atlas / OOO style)


class ResBlock3d(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv3d(c, c, 3, padding=1, bias=False), nn.BatchNorm3d(c)
        self.conv2, self.bn2 = nn.Conv3d(c, c, 3, padding=1, bias=False), nn.BatchNorm3d(c)
        nn.init.zeros_(self.bn2.weight)  # every block starts as the identity

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class UNet3d(nn.Module):
    """Strided convolutions down, trilinear upsampling back up, projected encoder features as skips."""

    def __init__(self, channels, layers_down, layers_up):
        super().__init__()
        self.down = nn.ModuleList()
        for i, (c, n) in enumerate(zip(channels, layers_down, strict=True)):
            stem = [] if i == 0 else [nn.Conv3d(channels[i - 1], c, 3, 2, 1, bias=False), nn.BatchNorm3d(c), nn.ReLU()]
            self.down.append(nn.Sequential(*stem, *(ResBlock3d(c) for _ in range(n))))
        up_channels = channels[::-1]
        self.reduce = nn.ModuleList(
            nn.Conv3d(a, b, 1, bias=False) for a, b in zip(up_channels, up_channels[1:], strict=False)
        )
        self.skip = nn.ModuleList(
            nn.Sequential(nn.Conv3d(c, c, 1, bias=False), nn.BatchNorm3d(c), nn.ReLU()) for c in up_channels[1:]
        )
        self.up = nn.ModuleList(
            nn.Sequential(*(ResBlock3d(c) for _ in range(n))) for c, n in zip(up_channels[1:], layers_up, strict=True)
        )

    def forward(self, x):
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        for reduce, skip, up, s in zip(self.reduce, self.skip, self.up, skips[-2::-1], strict=True):
            x = reduce(F.interpolate(x, size=s.shape[2:], mode="trilinear", align_corners=False))
            x = up((x + skip(s)) / 2)
        return x


# ----------------------------------------------------------------------------------------------------
# heads


def fp32_logits(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One logit per object from `layer` run in float32 whatever the autocast state."""
    with torch.autocast(x.device.type, enabled=False):
        return layer(x.float()).squeeze(-1)


def encoder_layer(cfg: ModelConfig) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, batch_first=True)


def prepend_unmasked(pad: torch.Tensor) -> torch.Tensor:
    """Key padding mask for a sequence with one extra (never masked) token in front."""
    return torch.cat([torch.zeros_like(pad[:, :1]), pad], 1)


class ContextMatchHead(nn.Module):
    """Context Match Head over pooled object tokens; `residual` adds the Residual Anomaly Module and `cls`
    prepends the mean DINOv2 CLS token as a conditioning token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed = nn.Linear(cfg.feat_channels, cfg.d_model)
        self.context = nn.ModuleList(encoder_layer(cfg) for _ in range(cfg.n_layers))
        self.cls_proj = nn.Linear(cfg.cls_dim, cfg.d_model) if cfg.head == "cls" else None
        self.residual = cfg.head == "residual"
        if self.residual:
            self.t0 = nn.Parameter(torch.randn(cfg.d_model))
            self.normality = encoder_layer(cfg)
            self.f = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_model), nn.LayerNorm(cfg.d_model), nn.ReLU())
        self.classify = nn.Linear(cfg.d_model, 1)

    def forward(self, crops, mask, cls_tokens, labels=None):
        B, N = mask.shape
        x = self.embed(crops.mean((3, 4, 5)))  # (B, N, d)
        pad = ~mask
        h, h_pad = x, pad
        if self.cls_proj is not None:
            h = torch.cat([self.cls_proj(cls_tokens.float().mean(1))[:, None].to(x.dtype), x], 1)
            h_pad = prepend_unmasked(pad)
        for layer in self.context:
            h = layer(h, src_key_padding_mask=h_pad)
        h = h[:, -N:]  # drop the conditioning token
        if not self.residual:
            return fp32_logits(self.classify, h), None
        # the normality layer reads the object tokens, in parallel to the context layers (as the public code)
        t0 = self.t0.expand(B, 1, -1).to(x.dtype)
        z = self.normality(torch.cat([t0, x], 1), src_key_padding_mask=prepend_unmasked(pad))
        z0, zi = z[:, 0].float(), z[:, 1:].float()
        logits = fp32_logits(self.classify, z0[:, None].to(h.dtype) - self.f(h))
        if labels is None:
            return logits, None
        normal = (mask & (labels == 0)).float()
        n_normal = normal.sum(1)
        z_bar = (zi * normal[..., None]).sum(1) / n_normal.clamp(min=1)[:, None]
        per_scene = ((z_bar - z0) ** 2).mean(-1)  # MSE against the mean of the scene's normal objects
        return logits, (per_scene * (n_normal > 0)).sum() / (n_normal > 0).sum().clamp(min=1)


def correspondences(x: torch.Tensor, mask: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    """Attention mask (B, 1, N*S, N*S): each voxel may attend to its k most similar voxels (cosine) in every
    real object of its scene, its own object excluded when `exclude_self` (OOO Eq. 7) unless it is the scene's
    only object. x (B, N, S, C) voxel features, mask (B, N)."""
    B, N, S, _ = x.shape
    f = F.normalize(x.flatten(1, 2).float(), dim=-1)
    similarity = (f @ f.transpose(1, 2)).view(B, N * S, N, S)
    index = similarity.topk(min(k, S), dim=-1).indices + torch.arange(N, device=x.device).view(1, 1, N, 1) * S
    allowed = torch.zeros(B, N * S, N * S, dtype=torch.bool, device=x.device)
    allowed.scatter_(-1, index.flatten(2), True)
    allowed &= mask.repeat_interleave(S, 1)[:, None, :]
    if exclude_self:
        owner = torch.arange(N, device=x.device).repeat_interleave(S)
        own = owner[:, None] == owner[None]
        allowed &= ~own | (mask.sum(1) <= 1).view(B, 1, 1)
    return allowed[:, None]


class SparseVoxelBlock(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, allowed):
        B, T, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        x = x + self.out(a.transpose(1, 2).reshape(B, T, d))
        return x + self.ff(self.norm2(x))


class SparseVoxelHead(nn.Module):
    """OOO's cross-instance sparse voxel attention on the crops; correspondences come from the input crops."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c, inner = cfg.feat_channels, cfg.sparse_heads * cfg.sparse_dim_head
        self.topk, self.exclude_self = cfg.sparse_topk, cfg.sparse_exclude_self
        self.proj_in = nn.Linear(c, inner)
        self.blocks = nn.ModuleList(SparseVoxelBlock(inner, cfg.sparse_heads) for _ in range(cfg.sparse_blocks))
        self.proj_out = nn.Linear(inner, c)
        self.classify = nn.Sequential(nn.Linear(c, 8 * c), nn.ReLU(), nn.Linear(8 * c, 1))

    def forward(self, crops, mask, cls_tokens=None, labels=None):
        B, N, C = crops.shape[:3]
        x = crops.flatten(3).transpose(2, 3)  # (B, N, S, C)
        with torch.no_grad():
            allowed = correspondences(x, mask, self.topk, self.exclude_self)
        h = self.proj_in(x.flatten(1, 2))
        for block in self.blocks:
            h = block(h, allowed)
        h = self.proj_out(h).view(B, N, -1, C).mean(2)
        return fp32_logits(self.classify, h), None


# ----------------------------------------------------------------------------------------------------
def volume_crops(feats: torch.Tensor, batch: dict, cfg: ModelConfig, refine: nn.Module | None = None) -> torch.Tensor:
    """Back-project per-view maps (B, V, C, m, m) of the token grid into the scene volume, optionally refine the
    volume, and crop every object: (B, N, C, s, s, s). Shared by the model and the training-free baselines."""
    h, w = batch["tokens"].shape[2:4]
    scale = torch.tensor([cfg.map_size / w, cfg.map_size / h, 1.0], device=feats.device)
    k = batch["kfeat"] * scale[:, None]  # rows 0 and 1 scaled: intrinsics of the upsampled map
    origin = grid_origin(batch["boxmin"], batch["boxmax"], batch["mask"], cfg.grid, cfg.voxel_size)
    volume, _ = backproject(feats, k, batch["w2c"], origin, cfg.grid, cfg.voxel_size)
    if refine is not None:
        volume = refine(volume)
    return crop_objects(volume, origin, batch["boxmin"], batch["boxmax"], batch["mask"], cfg.voxel_size,
                        cfg.crop_size, cfg.crop_pad)


# the model


class OddOneOutModel(nn.Module):
    """Batch dict (see training/data.py): tokens (B, V, h, w, Ct), cls (B, V, Ct), kfeat (B, V, 3, 3)
    intrinsics of the h x w token grid, w2c (B, V, 4, 4), boxmin / boxmax (B, N, 3), mask (B, N) true for
    real objects."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.lift = nn.Conv2d(cfg.token_dim, cfg.feat_channels, 1)
        self.cnn = UNet3d(cfg.cnn_channels, cfg.cnn_layers_down, cfg.cnn_layers_up)
        self.head = SparseVoxelHead(cfg) if cfg.head == "sparse-voxel" else ContextMatchHead(cfg)

    def crops(self, batch) -> torch.Tensor:
        """Object crops (B, N, C, s, s, s) of the refined feature volume."""
        cfg = self.cfg
        tokens = batch["tokens"]
        B, V = tokens.shape[:2]
        # the 1x1 conv commutes with bilinear upsampling (whose weights sum to one): applying it first gives
        # the same map with (64 / 18)^2 fewer pixels to convolve
        feats = self.lift(tokens.flatten(0, 1).permute(0, 3, 1, 2).float().contiguous())
        feats = F.interpolate(feats, size=(cfg.map_size, cfg.map_size), mode="bilinear", align_corners=False)
        feats = feats.view(B, V, cfg.feat_channels, cfg.map_size, cfg.map_size)
        return volume_crops(feats, batch, cfg, refine=self.cnn)

    def forward(self, batch, labels=None):
        """Logits (B, N), meaningless at padding, and given labels (B, N; -1 = padding) the losses."""
        mask = batch["mask"]
        logits, normality = self.head(self.crops(batch), mask, batch.get("cls"), labels)
        if labels is None:
            return logits, None
        target = labels[mask].float()
        weight = torch.tensor(self.cfg.bce_weights, device=target.device)[labels[mask]]
        bce = F.binary_cross_entropy_with_logits(logits[mask].float(), target, weight=weight)
        losses = {"bce": bce}
        if normality is not None:
            losses["normality"] = normality
        losses["loss"] = sum(losses.values())
        return logits, losses
