"""facebook/dinov2-small's architecture (ViT-S/14: 384 wide, 12 layers, 6 heads, patch 14, 37x37 position grid)
with random weights: the right cost for timing, and no download. Shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import Dinov2Config, Dinov2Model


def vit_s14() -> Dinov2Model:
    torch.manual_seed(0)  # the same weights every run, so runs that depend on them (neighbour ranks) repeat
    config = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                          patch_size=14, image_size=518)
    return Dinov2Model(config).eval().requires_grad_(False)


def save_vit_s14(folder: Path) -> Path:
    """The model saved as a local folder, for code that loads an encoder by path."""
    vit_s14().save_pretrained(folder)
    return folder
