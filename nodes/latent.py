"""Empty Video Latent: a zero latent of `frames` frames laid out as a batch `[frames, 4, H/8, W/8]`."""

from __future__ import annotations

import torch

import comfy.model_management
from comfy_api.latest import io

from .common import category

SIZE_MULTIPLE = 64   # 8 (VAE) x 2**3 (the UNet's three downsamplings)


def size_error(name: str, value: int) -> str | None:
    """None if `value` pixels is a size VideoCrafter2's UNet can take, else a message with the nearest valid sizes."""
    if value % SIZE_MULTIPLE == 0:
        return None
    low = max(SIZE_MULTIPLE, value // SIZE_MULTIPLE * SIZE_MULTIPLE)
    high = (value // SIZE_MULTIPLE + 1) * SIZE_MULTIPLE
    return (f"{name} = {value} pixels cannot be used: VideoCrafter2's UNet downsamples the latent three times, so "
            f"{name} must be a multiple of {SIZE_MULTIPLE} pixels. Nearest valid values: {low} or {high}.")


class EmptyVideoLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="VideoCrafterEmptyVideoLatent",
            display_name="Empty Video Latent",
            category=category("latent"),
            description=("An empty video latent for VideoCrafter2: `frames` frames stored as the batch, "
                         "[frames, 4, height/8, width/8]. Width and height must be multiples of 64 pixels "
                         "(VideoCrafter2 was trained at 512x320)."),
            inputs=[
                io.Int.Input("width", default=512, min=64, max=4096, step=64,
                             tooltip="Frame width in pixels, a multiple of 64 (VideoCrafter2: 512)."),
                io.Int.Input("height", default=320, min=64, max=4096, step=64,
                             tooltip="Frame height in pixels, a multiple of 64 (VideoCrafter2: 320)."),
                io.Int.Input("frames", default=16, min=1, max=100000,
                             tooltip="Number of frames. The stock samplers denoise them as one clip; VideoCrafter2 "
                                     "was trained on 16. Use the FIFO sampler for longer videos."),
            ],
            outputs=[io.Latent.Output(tooltip="Zero latent [frames, 4, height/8, width/8] (frames as batch).")],
        )

    @classmethod
    def validate_inputs(cls, width: int, height: int, frames: int):
        return size_error("width", width) or size_error("height", height) or True

    @classmethod
    def execute(cls, width: int, height: int, frames: int):
        samples = torch.zeros([frames, 4, height // 8, width // 8], device=comfy.model_management.intermediate_device())
        return io.NodeOutput({"samples": samples})


NODES = [EmptyVideoLatent]
