"""Reading VideoCrafter checkpoints: file loading, key splitting, config inference, validation.

No ComfyUI import: everything here works on plain state dicts (name -> tensor).

Checkpoint layout (VideoCrafter2 `model.ckpt`; docs/videocrafter2.md, "Checkpoint layout and conversion"):
`model.diffusion_model.*` (3D UNet), `first_stage_model.*` (KL-f8 VAE), `cond_stage_model.model.*` (OpenCLIP
text tower), schedule buffers (`betas`, `alphas_cumprod`, ..., `scale_arr`); VideoCrafter1 image-to-video adds
`embedder.model.*` (OpenCLIP visual tower) and `image_proj_model.*` (Resampler).
"""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.model."
IMAGE_EMBEDDER_PREFIX = "embedder.model."
IMAGE_PROJECTION_PREFIX = "image_proj_model."
DEEPSPEED_PREFIX = "_forward_module."


ZIP_MAGIC = b"PK\x03\x04"   # torch.save's default format since PyTorch 1.6
PICKLE_PROTOCOL = b"\x80"    # the first byte of a protocol 2+ pickle (the legacy torch.save format)


class CheckpointError(ValueError):
    """A file that is not a usable VideoCrafter checkpoint; the message says why."""


def _reason(error: BaseException) -> str:
    """The error's text, or its type when the text is empty (EOFError() from a cut pickle has none)."""
    return str(error).strip() or type(error).__name__


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Load a checkpoint file into a flat state dict, never executing code from it.

    `.safetensors` files are read with safetensors; anything else with `torch.load(weights_only=True)`,
    accepting `{"state_dict": sd}` (Lightning), `{"module": sd}` (DeepSpeed, `_forward_module.` prefix
    stripped, as the official `load_model_checkpoint`) or a flat dict.

    Raises CheckpointError saying what the file is: missing, empty (0 bytes), neither a zip archive nor a
    pickle, a truncated zip archive, a truncated or corrupt file, or a pickle that needs code execution.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    name = os.path.basename(path)
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{name} is empty (0 bytes): the download or copy did not finish; fetch the file again")
    if path.endswith(".safetensors"):
        import safetensors.torch
        try:
            return safetensors.torch.load_file(path, device="cpu")
        except Exception as error:  # safetensors raises its own SafetensorError for bad headers
            raise CheckpointError(f"{name} is not a readable safetensors file (truncated or corrupt?): "
                                  f"{_reason(error)}") from error
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(ZIP_MAGIC):
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{name} is a truncated zip archive ({size} bytes, its end is missing): the "
                                  f"download or copy did not finish; fetch the file again")
    elif head[:1] != PICKLE_PROTOCOL:
        raise CheckpointError(f"{name} is neither a PyTorch checkpoint (a zip archive) nor a pickle (it starts with "
                              f"bytes {head.hex(' ')}): not a model file; a .ckpt must be the release's model.ckpt")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{name} was refused: it holds Python objects that loading would have to execute "
            f"(weights-only loading rejected it: {_reason(error).splitlines()[0]}). Convert it to .safetensors "
            f"in an environment you trust.") from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{name} could not be read (truncated or corrupt?): {_reason(error)}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{name} holds a {type(data).__name__}, not a state dict")
    if isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    elif isinstance(data.get("module"), dict):
        data = {k[len(DEEPSPEED_PREFIX):] if k.startswith(DEEPSPEED_PREFIX) else k: v for k, v in data["module"].items()}
    return {k: v for k, v in data.items() if torch.is_tensor(v)}


def split_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Split a full checkpoint by component, prefixes removed.

    Returns {"unet", "vae", "text", "image_embedder", "image_projection", "other"}; each a state dict.
    """
    parts = {"unet": {}, "vae": {}, "text": {}, "image_embedder": {}, "image_projection": {}, "other": {}}
    prefixes = [("unet", UNET_PREFIX), ("vae", VAE_PREFIX), ("text", TEXT_PREFIX),
                ("image_embedder", IMAGE_EMBEDDER_PREFIX), ("image_projection", IMAGE_PROJECTION_PREFIX)]
    for key, value in sd.items():
        for part, prefix in prefixes:
            if key.startswith(prefix):
                parts[part][key[len(prefix):]] = value
                break
        else:
            parts["other"][key] = value
    return parts


def validate(parts: dict[str, dict[str, torch.Tensor]], name: str = "checkpoint") -> None:
    """Refuse anything that is not a VideoCrafter text-to-video / image-to-video checkpoint.

    Raises CheckpointError naming what is missing (an SD1.5/SD2 image checkpoint has a UNet but no
    temporal layers; a bare VAE or text encoder has no UNet at all).
    """
    unet = parts["unet"]
    if not unet:
        found = sorted({k.split(".")[0] for k in parts["other"]})[:6]
        raise CheckpointError(
            f"{name} is not a VideoCrafter checkpoint: it has no '{UNET_PREFIX}*' keys (top-level keys "
            f"start with {found}). Expected the full VideoCrafter2 model.ckpt.")
    temporal = any(".temopral_conv." in k or k.startswith("init_attn.") for k in unet)
    if not temporal:
        raise CheckpointError(
            f"{name} is an image diffusion checkpoint, not VideoCrafter: its UNet has no temporal layers "
            f"('temopral_conv', 'init_attn', temporal transformers). Load it with ComfyUI's Load Checkpoint.")
    for needed, prefix in (("vae", VAE_PREFIX), ("text", TEXT_PREFIX)):
        if not parts[needed]:
            raise CheckpointError(f"{name} has a VideoCrafter UNet but no '{prefix}*' keys; the loader needs the "
                                  f"full checkpoint (UNet, VAE and text encoder in one file)")
    if "input_blocks.0.0.weight" not in unet or "out.2.weight" not in unet:
        raise CheckpointError(f"{name}: the UNet lacks 'input_blocks.0.0.weight' or 'out.2.weight' (incomplete file?)")


def infer_unet_config(unet: dict[str, torch.Tensor]) -> dict:
    """The `UNet3D` constructor arguments, read from the UNet state dict's keys and shapes.

    Heads are not stored in the weights: the head width comes from `init_attn` (8 heads, official
    `n_heads=8, d_head=num_head_channels`), or 64 (VideoCrafter's value) without it.
    """
    model_channels, in_channels = unet["input_blocks.0.0.weight"].shape[:2]
    config = {
        "in_channels": int(in_channels),
        "model_channels": int(model_channels),
        "out_channels": int(unet["out.2.weight"].shape[0]),
        "temporal_conv": any(".temopral_conv." in k for k in unet),
        "addition_attention": "init_attn.0.norm.weight" in unet,
        "fps_cond": "fps_embedding.0.weight" in unet,
        "image_cross_attention": any(".attn2.to_k_ip." in k for k in unet),
    }
    if any("relative_position" in k for k in unet):
        raise CheckpointError("UNet uses relative position embeddings in temporal attention, which VideoCrafter2 does not; unsupported")
    config["num_head_channels"] = int(unet["init_attn.0.proj_in.weight"].shape[0] // 8) if config["addition_attention"] else 64

    # walk the encoder: ResBlocks until a Downsample (`.op.`) closes a level
    channel_mult, attention_resolutions, level_blocks = [], [], []
    count, ds, index = 0, 1, 1
    spatial_keys = []
    while f"input_blocks.{index}.0.op.weight" in unet or f"input_blocks.{index}.0.in_layers.2.weight" in unet:
        if f"input_blocks.{index}.0.op.weight" in unet:
            level_blocks.append(count)
            count, ds = 0, ds * 2
        else:
            count += 1
            out_ch = unet[f"input_blocks.{index}.0.in_layers.2.weight"].shape[0]
            if count == 1:
                channel_mult.append(int(out_ch // model_channels))
            if f"input_blocks.{index}.1.norm.weight" in unet:
                spatial_keys.append(f"input_blocks.{index}.1")
                if ds not in attention_resolutions:
                    attention_resolutions.append(ds)
        index += 1
    level_blocks.append(count)
    if len(set(level_blocks)) != 1 or not channel_mult:
        raise CheckpointError(f"UNet encoder levels have {level_blocks} ResBlocks; expected the same number per level")
    config.update(channel_mult=channel_mult, num_res_blocks=level_blocks[0], attention_resolutions=attention_resolutions)

    first = spatial_keys[0] if spatial_keys else "middle_block.1"
    config["context_dim"] = int(unet[f"{first}.transformer_blocks.0.attn2.to_k.weight"].shape[1])
    config["use_linear"] = unet[f"{first}.proj_in.weight"].ndim == 2
    config["transformer_depth"] = len({k.split(".")[3] for k in unet if k.startswith(f"{first}.transformer_blocks.")})
    config["temporal_attention"] = f"{spatial_keys[0][:-2]}.2.norm.weight" in unet if spatial_keys else "middle_block.2.norm.weight" in unet
    return config


def infer_vae_config(vae: dict[str, torch.Tensor]) -> dict:
    """The KL autoencoder's `ddconfig` (official `AutoencoderKL` / ComfyUI's) and `embed_dim`, from shapes."""
    ch = int(vae["encoder.conv_in.weight"].shape[0])
    levels = sorted({int(k.split(".")[2]) for k in vae if k.startswith("encoder.down.")})
    ch_mult = [int(vae[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch) for i in levels]
    num_res_blocks = len({k.split(".")[4] for k in vae if k.startswith("encoder.down.0.block.")})
    z_channels = int(vae["decoder.conv_in.weight"].shape[1])
    ddconfig = {"double_z": True, "z_channels": z_channels, "resolution": 256, "in_channels": int(vae["encoder.conv_in.weight"].shape[1]),
                "out_ch": int(vae["decoder.conv_out.weight"].shape[0]), "ch": ch, "ch_mult": ch_mult,
                "num_res_blocks": num_res_blocks, "attn_resolutions": [], "dropout": 0.0}
    return {"ddconfig": ddconfig, "embed_dim": int(vae["post_quant_conv.weight"].shape[0])}


def infer_text_config(text: dict[str, torch.Tensor], heads: int | None = None) -> dict:
    """OpenCLIP text tower size: width, layers, heads (width // 64 unless given: not stored in weights)."""
    width = int(text["token_embedding.weight"].shape[1])
    layers = len({k.split(".")[2] for k in text if k.startswith("transformer.resblocks.")})
    return {"width": width, "layers": layers, "heads": heads or max(1, width // 64),
            "vocab_size": int(text["token_embedding.weight"].shape[0]),
            "context_length": int(text["positional_embedding"].shape[0]),
            "mlp_width": int(text["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
            "projection_dim": int(text["text_projection"].shape[1]) if "text_projection" in text else width}
