"""VideoCrafter FPS: sets the fps conditioning value the UNet embeds (VideoCrafter2 default 8)."""

from __future__ import annotations

import node_helpers
from comfy_api.latest import io

from .common import NODE_PREFIX, category
from .inputs import fps_input


class FIFOInfinityVideoCrafterFPS(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}VideoCrafterFPS",
            display_name="VideoCrafter FPS",
            category=category("conditioning"),
            description=("Sets the frames-per-second value VideoCrafter2 is conditioned on (its fps embedding is added "
                         "to the timestep embedding). Without this node the model uses 8, the value of VideoCrafter2's "
                         "and FIFO-Diffusion's scripts; Video-Infinity's configs use 24. Lower values give more motion "
                         "between frames."),
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="Positive or negative conditioning to tag with an fps value."),
                fps_input("Conditioning fps (not the playback rate of the saved video)."),
            ],
            outputs=[io.Conditioning.Output(tooltip="The same conditioning with its fps set.")],
        )

    @classmethod
    def execute(cls, conditioning, fps: int):
        return io.NodeOutput(node_helpers.conditioning_set_values(conditioning, {"fps": fps}))


NODES = [FIFOInfinityVideoCrafterFPS]
