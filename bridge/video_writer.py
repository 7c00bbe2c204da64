"""Streaming video encoding with PyAV: frames are encoded as they arrive, so memory does not grow with length.

No ComfyUI import. Used by the `Save Video (streaming)` node, the demo and the benchmarks.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

FORMATS = {
    # name: (container extension, PyAV codec, pixel format, largest crf)
    "mp4 (H.264)": ("mp4", "libx264", "yuv420p", 51),
    "webm (VP9)": ("webm", "libvpx-vp9", "yuv420p", 63),
}


def crf_for_quality(video_format: str, quality: int) -> int:
    """Constant rate factor for a quality 1..100 (100 = best); linear over the codec's crf range."""
    if not 1 <= quality <= 100:
        raise ValueError(f"quality = {quality}: expected 1..100")
    largest = FORMATS[video_format][3]
    return round(largest * (100 - quality) / 100)


def safe_prefix(filename_prefix: str, default: str | None = "video") -> str | None:
    """The prefix with absolute roots, '.' and '..' components removed, so it stays inside the output folder;
    `default` when nothing is left."""
    parts = [p for p in filename_prefix.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(parts) or default


class StreamingVideoWriter:
    """Append RGB frames `[N, H, W, 3]` uint8 to a video file; `close()` (or the context manager) finalises it.

    The file is valid up to the last frame written even when the writer is closed after an error, so an
    interrupted run keeps what it encoded.
    """

    def __init__(self, path: str, width: int, height: int, fps: float, video_format: str = "mp4 (H.264)",
                 quality: int = 85, metadata: dict[str, str] | None = None):
        if video_format not in FORMATS:
            raise ValueError(f"format = {video_format!r}: expected one of {list(FORMATS)}")
        if width % 2 or height % 2:
            raise ValueError(f"frame size {width}x{height}: H.264/VP9 with yuv420p need even sides")
        _, codec, pixel_format, _ = FORMATS[video_format]
        self.path = path
        self.frames_written = 0
        self.container = av.open(path, mode="w")
        for key, value in (metadata or {}).items():
            self.container.metadata[key] = value
        self.stream = self.container.add_stream(codec, rate=Fraction(round(fps * 1000), 1000))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = pixel_format
        crf = str(crf_for_quality(video_format, quality))
        self.stream.options = {"crf": crf, "b": "0"} if codec == "libvpx-vp9" else {"crf": crf}

    def write(self, frames: np.ndarray) -> None:
        """Encode `frames` `[N, H, W, 3]` uint8 (RGB)."""
        for frame in frames:
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                self.container.mux(packet)
            self.frames_written += 1

    def close(self) -> None:
        if self.container is None:
            return
        try:
            for packet in self.stream.encode():
                self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def to_uint8(images) -> np.ndarray:
    """ComfyUI IMAGE `[N, H, W, 3]` floats in 0..1 -> uint8, truncating like ComfyUI's save nodes."""
    return (images.detach().clamp(0, 1) * 255).to("cpu").numpy().astype(np.uint8)


def video_file_name(folder: str, name: str, counter: int, video_format: str) -> str:
    return os.path.join(folder, f"{name}_{counter:05}_.{FORMATS[video_format][0]}")
