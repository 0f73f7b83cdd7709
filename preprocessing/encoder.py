"""The frozen DINOv2 encoder: loading it (hub id or local folder) and turning views into stored tokens."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from preprocessing.images import to_model_input
from preprocessing.pca import Pca

SUPPORTED_MODEL_TYPES = ("dinov2", "dinov2_with_registers")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class EncoderLoadError(RuntimeError):
    """The model could not be loaded; the message says what to do about it."""


@dataclass(frozen=True)
class EncoderInfo:
    """What identifies the encoder in the manifest: where it came from and the shape of its tokens."""

    id: str  # hub id, or the absolute path of a local folder
    revision: str | None  # the hub commit, when loaded from the hub
    weights_sha256: str | None  # of a local folder's weights file, when loaded from a folder
    model_type: str
    hidden_size: int
    patch_size: int
    num_register_tokens: int
    num_hidden_layers: int
    num_attention_heads: int

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EncoderLoadError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 (else float16) on a GPU; float32 on a CPU, where the stored float16 tokens then differ
    from the exact model output by rounding alone."""
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _offline_message(model_id: str, err: Exception) -> str:
    name = model_id.rstrip("/").split("/")[-1]
    return (
        f"could not load the model {model_id!r}: it is not a local folder, it is not in the Hugging Face "
        f"cache, and it could not be downloaded (no network?).\n"
        f"On a machine with network access, save a copy:\n"
        f'    python -c "from transformers import AutoModel; '
        f"AutoModel.from_pretrained('{model_id}').save_pretrained('{name}')\"\n"
        f"copy the folder here and pass it: --model /path/to/{name}\n"
        f"(set HF_HUB_OFFLINE=1 to skip the download retries.) Loader said: {err}"
    )


def _weights_sha256(folder: Path) -> str | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            digest = hashlib.sha256()
            with open(folder / name, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    digest.update(block)
            return digest.hexdigest()
    return None


def _hub_commit(model_id: str) -> str | None:
    """The commit of the cached snapshot the model was loaded from (`.../snapshots/<commit>/config.json`)."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model_id, "config.json")
    return Path(cached).parent.name if isinstance(cached, str) else None


def load_model(model_id: str) -> tuple[torch.nn.Module, EncoderInfo]:
    """Load a DINOv2 (with or without registers) from a local folder or the hub, cache first."""
    from transformers import AutoModel

    folder = Path(model_id).expanduser()
    if folder.is_dir():
        try:
            model = AutoModel.from_pretrained(folder)
        except (OSError, ValueError) as err:
            raise EncoderLoadError(f"could not load a model from the folder {folder}: {err}") from err
        # an absolute path, so reruns from another working directory recognise the same encoder
        model_id, revision, weights = str(folder.resolve()), None, _weights_sha256(folder)
    elif model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1:
        raise EncoderLoadError(f"model folder {model_id} does not exist")
    else:
        try:  # the Hugging Face cache first: no network round trip, works on offline compute nodes
            model = AutoModel.from_pretrained(model_id, local_files_only=True)
        except (OSError, ValueError):
            try:
                model = AutoModel.from_pretrained(model_id)
            except (OSError, ValueError) as err:
                raise EncoderLoadError(_offline_message(model_id, err)) from err
        revision, weights = _hub_commit(model_id), None

    config = model.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise EncoderLoadError(
            f"{model_id} is a {config.model_type!r} model; expected one of {SUPPORTED_MODEL_TYPES}"
        )
    info = EncoderInfo(
        id=model_id,
        revision=revision,
        weights_sha256=weights,
        model_type=config.model_type,
        hidden_size=config.hidden_size,
        patch_size=config.patch_size,
        num_register_tokens=getattr(config, "num_register_tokens", 0),
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
    )
    return model.eval().requires_grad_(False), info


class EncodedBatch:
    """Tokens of one batch on their way to the host; on a GPU the copy overlaps the next batch's forward."""

    def __init__(self, tokens: torch.Tensor, cls: torch.Tensor):
        on_gpu = tokens.device.type == "cuda"
        self._tokens = tokens.to("cpu", non_blocking=on_gpu)
        self._cls = cls.to("cpu", non_blocking=on_gpu)
        self._done = None
        if on_gpu:
            self._done = torch.cuda.Event()
            self._done.record()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._done is not None:
            self._done.synchronize()
        return self._tokens.numpy(), self._cls.numpy()


class ViewEncoder:
    """Views (uint8) in, float16 token maps (B, h, w, C) and CLS tokens (B, C) out, optionally PCA-reduced."""

    def __init__(
        self,
        model: torch.nn.Module,
        info: EncoderInfo,
        device: torch.device,
        dtype: torch.dtype,
        image_size: tuple[int, int],
    ):
        patch = info.patch_size
        if image_size[0] % patch or image_size[1] % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        self.model = model.to(device)
        self.info = info
        self.device = device
        self.dtype = dtype
        self.image_size = image_size
        self.grid = (image_size[0] // patch, image_size[1] // patch)
        self.pca: Pca | None = None
        self._pca_mean = self._pca_components = None

    def set_pca(self, pca: Pca) -> None:
        self.pca = pca
        self._pca_mean = torch.from_numpy(pca.mean).float().to(self.device)
        self._pca_components = torch.from_numpy(pca.components).float().to(self.device)

    @property
    def token_dim(self) -> int:
        return self.pca.dim if self.pca else self.info.hidden_size

    @torch.inference_mode()
    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model alone: float32 patch tokens (B, h, w, C) and CLS (B, C), registers dropped."""
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            hidden = self.model(pixel_values=pixel_values).last_hidden_state
        first_patch = 1 + self.info.num_register_tokens
        tokens = hidden[:, first_patch:].float().unflatten(1, self.grid)
        return tokens, hidden[:, 0].float()

    @torch.inference_mode()
    def submit(self, views: list[np.ndarray]) -> EncodedBatch:
        tokens, cls = self.forward(to_model_input(views, self.image_size, self.device))
        if self.pca is not None:
            tokens = (tokens - self._pca_mean) @ self._pca_components.T
        return EncodedBatch(tokens.half(), cls.half())
