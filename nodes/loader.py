"""VideoCrafter2 Checkpoint Loader: MODEL, CLIP, VAE (and an I2V checkpoint's image encoder) from one VideoCrafter checkpoint."""

from __future__ import annotations

import os

import folder_paths
from comfy_api.latest import io

from ..bridge.fifo import register_memory_cap
from ..videocrafter import convert
from ..videocrafter.image_encoder import build_image_encoder
from ..videocrafter.loader import WEIGHT_DTYPES, load_videocrafter, weight_dtype_of
from .common import NODE_PREFIX, ImageEncoder, category

MODEL_FOLDER = "videocrafter"
CHECKPOINT_EXTENSIONS = {".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".sft"}

# The pack's own models/ folder: the bundled tiny model (models/fifo_infinity_tiny_vc2.safetensors).
BUNDLED_MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")

# Register models/videocrafter (plus anything extra_model_paths.yaml adds) once at import, and the bundled
# models folder as one more path of the `videocrafter` folder, so the tiny model is offered like any other.
if MODEL_FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (
        [os.path.join(folder_paths.models_dir, MODEL_FOLDER)], CHECKPOINT_EXTENSIONS)
if BUNDLED_MODELS_DIR not in folder_paths.get_folder_paths(MODEL_FOLDER):
    folder_paths.add_model_folder_path(MODEL_FOLDER, BUNDLED_MODELS_DIR)


def checkpoint_choices() -> list[str]:
    """Files in models/videocrafter then models/checkpoints (ComfyUI's lists, honouring extra paths)."""
    names = list(folder_paths.get_filename_list(MODEL_FOLDER))
    names += [n for n in folder_paths.get_filename_list("checkpoints") if n not in names]
    return names


def resolve_checkpoint(name: str) -> str:
    for folder in (MODEL_FOLDER, "checkpoints"):
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return path
    raise ValueError(f"ckpt_name: '{name}' is in neither models/{MODEL_FOLDER} nor models/checkpoints")


class FIFOInfinityCheckpointLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}CheckpointLoader",
            display_name="VideoCrafter2 Checkpoint Loader",
            category=category("loaders"),
            description=(
                "Loads a VideoCrafter2 text-to-video checkpoint (the release's model.ckpt, or a .safetensors copy) "
                "as a 3D-UNet MODEL managed by ComfyUI, ComfyUI's SD2 OpenCLIP-H text encoder (CLIP) and the SD "
                "KL-f8 VAE. Looks in models/videocrafter and models/checkpoints. Pickled .ckpt files are loaded "
                "weights-only: a file that would need to run code is refused. VideoCrafter1 image-to-video checkpoints "
                "(Image2Video_512 model.ckpt) load too: their UNet gets its image cross-attention and the fourth "
                "output carries their image encoder for Image to Video Conditioning."),
            inputs=[
                io.Combo.Input("ckpt_name", options=checkpoint_choices(),
                               tooltip="VideoCrafter2 checkpoint (VideoCrafter/VideoCrafter2 on Hugging Face, file model.ckpt) "
                                       "in models/videocrafter or models/checkpoints."),
                io.Boolean.Input("rescale_schedule", default=True,
                                 tooltip="VideoCrafter2's x0 rescale (use_scale, 1.0 to 0.7 below t=400) in the model "
                                         "sampling, so stock samplers match VideoCrafter2's own DDIM. Turn off for "
                                         "plain EPS sampling (what the official FIFO step uses; the FIFO sampler "
                                         "switches it off by itself)."),
                io.Combo.Input("weight_dtype", options=list(WEIGHT_DTYPES), default="default", optional=True,
                               tooltip="The UNet's weight dtype. default: ComfyUI's choice for your device (fp16 or bf16 "
                                       "on most GPUs). fp8_e4m3fn / fp8_e5m2 store the weights in 8 bits (half the "
                                       "memory of fp16) and compute in ComfyUI's compute dtype. The errors each dtype "
                                       "gives against fp32 are in the README (Half precision and fp8)."),
            ],
            outputs=[
                io.Model.Output(tooltip="The VideoCrafter2 3D UNet. Latents are frames-as-batch [frames, 4, H/8, W/8]."),
                io.Clip.Output(tooltip="OpenCLIP ViT-H text encoder, penultimate layer (ComfyUI's SD2 CLIP)."),
                io.Vae.Output(tooltip="SD KL-f8 VAE; decodes each frame independently."),
                ImageEncoder.Output(display_name="IMAGE_ENCODER",
                                    tooltip="VideoCrafter1 image-to-video checkpoints only: the OpenCLIP ViT-H image "
                                            "tower and the 16-token Resampler, for Image to Video Conditioning. Empty "
                                            "(None) for text-to-video checkpoints."),
            ],
        )

    @classmethod
    def execute(cls, ckpt_name: str, rescale_schedule: bool = True, weight_dtype: str = "default"):
        dtype = weight_dtype_of(weight_dtype)
        path = resolve_checkpoint(ckpt_name)
        try:
            model, clip, vae, parts = load_videocrafter(path, rescale=rescale_schedule, dtype=dtype,
                                                        embedding_directory=folder_paths.get_folder_paths("embeddings"))
            image_encoder = build_image_encoder(parts)
        except convert.CheckpointError as error:
            raise ValueError(f"ckpt_name: {error}") from error
        register_memory_cap(model)   # FIFO through SamplerCustom(Advanced): memory estimated for one window batch
        return io.NodeOutput(model, clip, vae, image_encoder)


NODES = [FIFOInfinityCheckpointLoader]
