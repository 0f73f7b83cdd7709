"""Image preprocessing in torch, on the encoder's device.

Done here rather than with a `transformers` image processor: those work image by image on the CPU through PIL,
and their resize-then-crop would cut off parts of the views the cameras describe. Every view is resized whole
to the input size, so the feature grid covers exactly the rendered image.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_input(views: list[np.ndarray], size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """uint8 views (arrays V_i x H_i x W_i x 3; sizes may differ) -> normalised float32 (sum V_i, 3, h, w).

    The uint8 pixels travel to the device (4x less than floats) and are made channels-first *before* the
    float conversion: antialiased resizing of a channels-last float tensor is several times slower on a CPU.
    """
    pinned = device.type == "cuda"
    batches = []
    for chunk in views:
        pixels = torch.from_numpy(np.ascontiguousarray(chunk))
        if pinned:
            pixels = pixels.pin_memory()
        pixels = pixels.to(device, non_blocking=pinned).permute(0, 3, 1, 2).contiguous().float()
        if tuple(pixels.shape[-2:]) != size:
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)
        batches.append(pixels)
    pixels = torch.cat(batches) if len(batches) > 1 else batches[0]
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return pixels.mul_(1.0 / (255.0 * std)).sub_(mean / std)
