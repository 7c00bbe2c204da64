"""Empty Video Latent: a zero latent of `frames` frames laid out as a batch `[frames, 4, H/8, W/8]`."""

from __future__ import annotations

import torch

import comfy.model_management
from comfy_api.latest import io

from .common import NODE_PREFIX, category
from .inputs import PIXEL_SIZES, check_declared, require_declared, size_inputs


class FIFOInfinityEmptyVideoLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}EmptyVideoLatent",
            display_name="Empty Video Latent",
            category=category("latent"),
            description=("An empty video latent for VideoCrafter2: `frames` frames stored as the batch, "
                         "[frames, 4, height/8, width/8]. Width and height must be multiples of 64 pixels "
                         "(VideoCrafter2 was trained at 512x320)."),
            inputs=[
                *size_inputs(),
                io.Int.Input("frames", default=16, min=1, max=100000,
                             tooltip="Number of frames. The stock samplers denoise them as one clip; VideoCrafter2 "
                                     "was trained on 16. Use the FIFO sampler for longer videos."),
            ],
            outputs=[io.Latent.Output(tooltip="Zero latent [frames, 4, height/8, width/8] (frames as batch).")],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None):
        return check_declared(cls, dict(width=width, height=height), PIXEL_SIZES) or True

    @classmethod
    def execute(cls, width: int, height: int, frames: int):
        require_declared(cls, dict(width=width, height=height, frames=frames), PIXEL_SIZES)
        samples = torch.zeros([frames, 4, height // 8, width // 8], device=comfy.model_management.intermediate_device())
        return io.NodeOutput({"samples": samples})


NODES = [FIFOInfinityEmptyVideoLatent]
