"""Save Video (streaming): LATENT + VAE -> an mp4/webm file, decoding and encoding chunk by chunk.

ComfyUI's VAE Decode keeps every decoded frame in memory (about 2 MB per 512x320 frame); this node never
holds more than `decode_chunk` decoded frames, so a 10,000-frame latent saves in the memory of 16 frames.
Its VIDEO output is the host's own video type over the file it wrote (`comfy_api` `VideoFromFile`: frames
are read back from the file only when a downstream node asks), so core's video nodes take it.
"""

from __future__ import annotations

import json
import os

import folder_paths
from comfy_api.latest import InputImpl, io, ui

from ..bridge.video_writer import FORMATS, StreamingVideoWriter, safe_prefix, to_uint8, video_file_name
from .common import NODE_PREFIX, category
from .inputs import check_declared, require_declared


class FIFOInfinitySaveVideoStreaming(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}SaveVideoStreaming",
            display_name="Save Video (streaming)",
            category=category("video"),
            description=("Decodes a video latent a few frames at a time and encodes each chunk into an mp4 (H.264) or "
                         "webm (VP9) file as it goes, so memory stays flat however long the video is. Use it instead "
                         "of VAE Decode + a save node for long FIFO runs. The file is finalised even if decoding "
                         "stops part-way, keeping every frame already written."),
            inputs=[
                io.Latent.Input("samples", tooltip="Video latent, frames as batch [frames, 4, H/8, W/8]."),
                io.Vae.Input("vae", tooltip="The VAE of the model that made the latent."),
                io.String.Input("filename_prefix", default="fifo_infinity/video",
                                tooltip="Path under ComfyUI's output folder; '..' and absolute parts are dropped so "
                                        "the file always lands inside the output folder."),
                io.Combo.Input("format", options=list(FORMATS), default="mp4 (H.264)",
                               tooltip="Container and codec. mp4/H.264 plays everywhere; webm/VP9 is smaller."),
                io.Float.Input("fps", default=8.0, min=0.1, max=120.0, step=0.1, tooltip="Playback frames per second."),
                io.Int.Input("quality", default=85, min=1, max=100,
                             tooltip="1..100, higher is better and larger (mapped linearly onto the codec's crf)."),
                io.Int.Input("decode_chunk", default=16, min=1, max=256,
                             tooltip="Frames decoded at once; peak memory grows with this, not with the video length."),
            ],
            outputs=[io.Latent.Output(display_name="samples", tooltip="The input latent, passed through."),
                     io.Video.Output(display_name="video",
                                     tooltip="The saved file as ComfyUI's VIDEO (frames, size and fps read back from "
                                             "the file when used), for core's video nodes: Save Video, Get Video "
                                             "Components, trimming, frame interpolation.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, fps=None):
        return check_declared(cls, dict(fps=fps)) or True

    @classmethod
    def execute(cls, samples, vae, filename_prefix: str, format: str, fps: float, quality: int, decode_chunk: int):
        require_declared(cls, dict(fps=fps, quality=quality, decode_chunk=decode_chunk))
        latent = samples["samples"]
        if latent.ndim != 4 or latent.shape[0] < 1:
            raise ValueError(f"samples: expected a video latent [frames, 4, h, w], got shape {list(latent.shape)}")
        prefix = safe_prefix(filename_prefix)
        output_dir = folder_paths.get_output_directory()
        first = vae.decode(latent[:1])
        height, width = first.shape[-3], first.shape[-2]
        try:
            folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, output_dir, width, height)
            path = video_file_name(folder, name, counter, format)
            metadata = {}
            prompt = getattr(cls.hidden, "prompt", None)
            if prompt is not None:
                metadata["prompt"] = json.dumps(prompt)
            writer = StreamingVideoWriter(path, width, height, fps, format, quality, metadata)
        except OSError as error:
            raise RuntimeError(
                f"filename_prefix: cannot write the video under {os.path.join(output_dir, prefix)!r} ({error}). "
                f"The latents upstream are kept in ComfyUI's cache: fix the folder or the prefix and queue again "
                f"to save them without sampling again.") from error
        with writer:
            writer.write(to_uint8(first.reshape(-1, height, width, first.shape[-1])[..., :3]))
            for start in range(1, latent.shape[0], decode_chunk):
                images = vae.decode(latent[start:start + decode_chunk])
                writer.write(to_uint8(images.reshape(-1, height, width, images.shape[-1])[..., :3]))
        return io.NodeOutput(samples, InputImpl.VideoFromFile(path),
                             ui=ui.PreviewVideo([ui.SavedResult(os.path.basename(path), subfolder, io.FolderType.output)]))


NODES = [FIFOInfinitySaveVideoStreaming]
