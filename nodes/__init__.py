"""The pack's ComfyUI nodes (V3 API). Each module lists its node classes in `NODES`; add new modules here."""

from comfy_api.latest import ComfyExtension

from . import conditioning, consistency, fifo, infinity, latent, loader, video

NODE_MODULES = [loader, latent, conditioning, video, fifo, infinity, consistency]


class FifoInfinityExtension(ComfyExtension):
    async def get_node_list(self):
        return [node for module in NODE_MODULES for node in module.NODES]
