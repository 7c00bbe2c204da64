"""Build ComfyUI's MODEL, CLIP and VAE objects from a VideoCrafter checkpoint.

MODEL: our `VideoCrafterModel` (UNet3D on comfy.ops) in a ModelPatcher, with ComfyUI's dtype and device
choices. CLIP: ComfyUI's SD2 OpenCLIP-H text encoder (`SD2ClipModel`: penultimate layer, final layer norm,
no projection, pad 0), sized from the checkpoint. VAE: ComfyUI's KL VAE, sized from the checkpoint.
"""

from __future__ import annotations

import inspect
import logging

import torch

import comfy.model_management as mm
import comfy.model_patcher
import comfy.sd
import comfy.text_encoders.sd2_clip
import comfy.utils

from . import convert
from .model_base import VideoCrafterConfig, VideoCrafterModel

log = logging.getLogger("fifo_infinity")

# The UNet weight dtypes the loader offers, as core's UNet loader names them (plus fp16 / bf16): "default" is
# the host's choice for the device (`model_management.unet_dtype`). fp8 is storage only: the layers cast each
# weight to the compute dtype when they run (comfy.ops manual cast).
WEIGHT_DTYPES = {"default": None, "fp16": torch.float16, "bf16": torch.bfloat16,
                 "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def weight_dtype_of(name: str) -> torch.dtype | None:
    """The torch dtype of a `WEIGHT_DTYPES` name; raises ValueError naming the choices."""
    if name not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype: '{name}' is not one of {list(WEIGHT_DTYPES)}")
    return WEIGHT_DTYPES[name]


def patcher_class(disable_dynamic: bool = False) -> type:
    """The ModelPatcher class the host builds its own models with: `CoreModelPatcher` where the host has one
    (v0.33: dynamic VRAM on NVIDIA; a CPU load device falls back to the plain class by itself), the plain
    `ModelPatcher` when `disable_dynamic` or on hosts without it (v0.3.75)."""
    if disable_dynamic:
        return comfy.model_patcher.ModelPatcher
    return getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)


def build_model(unet_sd: dict, rescale: bool = True, dtype: torch.dtype | None = None,
                disable_dynamic: bool = False, compute_dtype: torch.dtype | None = None) -> comfy.model_patcher.ModelPatcher:
    """MODEL from a UNet state dict (prefix removed).

    `dtype`: the weight (storage) dtype, None = ComfyUI's choice for the device; fp8 dtypes are storage only.
    `compute_dtype`: the dtype the layers compute in, None = the host's choice for the weight dtype and device
    (`model_management.unet_manual_cast`: e.g. fp32 for fp16 weights on a CPU); another dtype makes the layers
    cast their weights to it (comfy.ops manual cast). As core's `load_diffusion_model_state_dict`.
    The patcher is the host's class (`patcher_class`); weights are assigned as core does for dynamic patchers."""
    unet_config = convert.infer_unet_config(unet_sd)
    config = VideoCrafterConfig(unet_config)
    load_device = mm.get_torch_device()
    params = comfy.utils.calculate_parameters(unet_sd)
    if dtype is None:
        dtype = mm.unet_dtype(model_params=params, supported_dtypes=config.supported_inference_dtypes)
    if compute_dtype is None:
        manual_cast = mm.unet_manual_cast(dtype, load_device, config.supported_inference_dtypes)
    else:
        manual_cast = None if compute_dtype == dtype else compute_dtype
    config.set_inference_dtype(dtype, manual_cast)
    model = VideoCrafterModel(config, device=mm.unet_inital_load_device(params, dtype), rescale=rescale)
    patcher = patcher_class(disable_dynamic)(model, load_device=load_device, offload_device=mm.unet_offload_device())
    missing, unexpected = model.diffusion_model.load_state_dict(unet_sd, strict=False, assign=patcher.is_dynamic()
                                                                 if hasattr(patcher, "is_dynamic") else False)
    if missing:
        raise convert.CheckpointError(f"UNet weights missing from the checkpoint ({len(missing)}), e.g. {missing[:5]}")
    if unexpected:
        log.warning("VideoCrafter loader: %d unexpected UNet keys ignored, e.g. %s", len(unexpected), unexpected[:5])
    return patcher


class _SizedClipH(comfy.text_encoders.sd2_clip.SD2ClipHModel):
    """SD2's OpenCLIP-H text model with the transformer sized from the checkpoint (tiny models too)."""
    hf_config: dict = {}

    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        # The penultimate layer as a positive index (layers - 2): ComfyUI asserts |layer_idx| < layers, which -2
        # breaks for a 2-layer tower although "penultimate" is well defined there (build_clip refuses 1 layer).
        comfy.sd1_clip.SDClipModel.__init__(
            self, device=device, layer="hidden", layer_idx=self.hf_config["num_hidden_layers"] - 2,
            textmodel_json_config=dict(self.hf_config), dtype=dtype,
            special_tokens={"start": 49406, "end": 49407, "pad": 0}, return_projected_pooled=True,
            model_options=model_options)


def build_clip(text_sd: dict, heads: int | None = None, embedding_directory=None,
               disable_dynamic: bool = False) -> comfy.sd.CLIP:
    """CLIP from the OpenCLIP text tower state dict (`cond_stage_model.model.*`, prefix removed).
    `disable_dynamic` reaches hosts whose CLIP takes it (v0.33); older hosts have only the plain patcher."""
    size = convert.infer_text_config(text_sd, heads)
    if size["layers"] < 2:
        raise convert.CheckpointError(
            f"the text encoder has {size['layers']} layer: VideoCrafter conditions on the output of the penultimate "
            f"layer, so the text tower needs at least 2 (VideoCrafter2's OpenCLIP ViT-H has 24)")
    te_sd = comfy.utils.clip_text_transformers_convert(dict(text_sd), "", "")
    if size["projection_dim"] != size["width"]:
        # ComfyUI's projection is square; VideoCrafter never uses it (penultimate hidden states, no pooling).
        # The identity keeps the pooled output defined and every load (and reload) of the file identical.
        te_sd["text_projection.weight"] = torch.eye(size["width"])
    hf_config = {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
                 "eos_token_id": 49407, "hidden_act": "gelu", "hidden_size": size["width"], "initializer_factor": 1.0,
                 "initializer_range": 0.02, "intermediate_size": size["mlp_width"], "layer_norm_eps": 1e-05,
                 "max_position_embeddings": size["context_length"], "model_type": "clip_text_model",
                 "num_attention_heads": size["heads"], "num_hidden_layers": size["layers"], "pad_token_id": 1,
                 "projection_dim": size["width"], "torch_dtype": "float32", "vocab_size": size["vocab_size"]}
    clip_h = type("VideoCrafterClipH", (_SizedClipH,), {"hf_config": hf_config})

    class VideoCrafterClip(comfy.text_encoders.sd2_clip.SD2ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
            comfy.sd1_clip.SD1ClipModel.__init__(self, device=device, dtype=dtype, model_options=model_options,
                                                 clip_name="h", clip_model=clip_h, **kwargs)

    class VideoCrafterTokenizer(comfy.text_encoders.sd2_clip.SD2Tokenizer):
        pass

    target = comfy.supported_models_base.ClipTarget(VideoCrafterTokenizer, VideoCrafterClip)
    extra = {"disable_dynamic": True} if disable_dynamic and _accepts(comfy.sd.CLIP, "disable_dynamic") else {}
    clip = comfy.sd.CLIP(target, embedding_directory=embedding_directory,
                         parameters=comfy.utils.calculate_parameters(te_sd), **extra)
    missing, unexpected = clip.load_sd(te_sd)
    missing = [k for k in missing if not k.endswith("position_ids") and "text_projection" not in k and "logit_scale" not in k]
    if missing:
        raise convert.CheckpointError(f"text encoder weights missing from the checkpoint: {missing[:5]}")
    return clip


def build_vae(vae_sd: dict) -> comfy.sd.VAE:
    """VAE from the KL autoencoder state dict (`first_stage_model.*`, prefix removed), sized from its shapes."""
    vae = comfy.sd.VAE(sd=dict(vae_sd), config={"params": convert.infer_vae_config(vae_sd)})
    vae.throw_exception_if_invalid()
    return vae


def _accepts(function, keyword: str) -> bool:
    return keyword in inspect.signature(function).parameters


def _parts(path: str) -> dict:
    parts = convert.split_state_dict(convert.load_state_dict(path))
    convert.validate(parts, name=path.rsplit("/", 1)[-1])
    return parts


# Reload factories for the host's `cached_patcher_init` (v0.33: `ModelPatcher.clone(disable_dynamic=True)`,
# `deepclone_multigpu` for MultiGPU CFG Split and the Select * Device nodes), as core's loaders register
# them (comfy/sd.py `load_checkpoint_guess_config`): `factory(*arguments, disable_dynamic=...)` -> patcher.

def load_model_patcher(path: str, rescale: bool = True, dtype=None, compute_dtype=None, disable_dynamic: bool = False):
    """A fresh MODEL patcher from the checkpoint file `path` (the MODEL's reload factory)."""
    return build_model(_parts(path)["unet"], rescale=rescale, dtype=dtype, compute_dtype=compute_dtype,
                       disable_dynamic=disable_dynamic)


def load_clip_patcher(path: str, text_heads: int | None = None, embedding_directory=None, disable_dynamic: bool = False):
    """A fresh CLIP patcher from the checkpoint file `path` (the CLIP's reload factory)."""
    return build_clip(_parts(path)["text"], heads=text_heads, embedding_directory=embedding_directory,
                      disable_dynamic=disable_dynamic).patcher


def load_vae_patcher(path: str, disable_dynamic: bool = False):
    """A fresh VAE patcher from the checkpoint file `path` (the VAE's reload factory; like core's
    `load_vae_patcher`, the VAE picks its patcher class itself)."""
    return build_vae(_parts(path)["vae"]).patcher


def load_videocrafter(path: str, rescale: bool = True, text_heads: int | None = None, dtype=None, embedding_directory=None,
                      compute_dtype=None):
    """(MODEL, CLIP, VAE, parts) from a VideoCrafter checkpoint file; raises `convert.CheckpointError`.

    `dtype` / `compute_dtype`: the UNet's weight and compute dtypes (`build_model`); the text encoder and the VAE
    take the host's dtypes for their devices, as core's loaders give them.

    On hosts whose patchers have `cached_patcher_init` (v0.33), each of the three patchers gets its reload
    factory, so the host can build an independent copy (another device, a non-dynamic delegate)."""
    parts = _parts(path)
    model = build_model(parts["unet"], rescale=rescale, dtype=dtype, compute_dtype=compute_dtype)
    clip = build_clip(parts["text"], heads=text_heads, embedding_directory=embedding_directory)
    vae = build_vae(parts["vae"])
    if hasattr(model, "cached_patcher_init"):
        model.cached_patcher_init = (load_model_patcher, (path, rescale, dtype, compute_dtype))
        clip.patcher.cached_patcher_init = (load_clip_patcher, (path, text_heads, embedding_directory))
        vae.patcher.cached_patcher_init = (load_vae_patcher, (path,))
    return model, clip, vae, parts
