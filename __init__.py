"""FIFO-Infinity: long and infinite text-to-video with VideoCrafter2 in ComfyUI (FIFO-Diffusion, Video-Infinity).

ComfyUI entry point only. Nothing ComfyUI-specific is imported at module level, so the pure cores
(`samplers/`, `videocrafter/convert.py`) can be imported without a host.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes import FifoInfinityExtension
    return FifoInfinityExtension()
