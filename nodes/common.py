"""What the node files share besides their inputs (`nodes/inputs.py`): the menu category and the pack's own
socket types (unique names, docs/architecture.md "Node ids and types")."""

from comfy_api.latest import io

CATEGORY = "FIFO-Infinity"
NODE_PREFIX = "FIFOInfinity"     # every node id (and node class name) starts with it

# The image encoder of a VideoCrafter1 image-to-video checkpoint (visual tower + Resampler), from the loader.
ImageEncoder = io.Custom("VIDEOCRAFTER_IMAGE_ENCODER")
# A chain of prompts over a FIFO video (bridge.fifo_conditioning.FifoPromptList).
FifoPromptScheduleType = io.Custom("FIFO_PROMPT_SCHEDULE")
# FIFO+ latent seeding settings (bridge.consistency.LatentSeeding).
LatentSeedingType = io.Custom("FIFO_LATENT_SEEDING")
# Video-Infinity options (attention.video_infinity.VideoInfinityOptions).
VideoInfinityContextType = io.Custom("VIDEO_INFINITY_CONTEXT")


def category(sub: str | None = None) -> str:
    return f"{CATEGORY}/{sub}" if sub else CATEGORY
