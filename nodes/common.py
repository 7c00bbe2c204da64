"""Small helpers shared by the node files (no algorithms here)."""

from comfy_api.latest import io

CATEGORY = "FIFO-Infinity"

# The image encoder of a VideoCrafter1 image-to-video checkpoint (visual tower + Resampler), from the loader.
ImageEncoder = io.Custom("VIDEOCRAFTER_IMAGE_ENCODER")


def category(sub: str | None = None) -> str:
    return f"{CATEGORY}/{sub}" if sub else CATEGORY
