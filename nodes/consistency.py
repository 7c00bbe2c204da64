"""FIFO+ consistency tricks as composable nodes: Weighted Q-Cache, Image to Video Conditioning, FIFO Latent
Seeding, and a FIFO base clip from one image. The glue is `bridge/qcache.py` and `bridge/consistency.py`, the
Q-cache itself `attention/qcache.py` (docs/consistency.md)."""

from __future__ import annotations

from comfy_api.latest import io

from ..attention.qcache import parse_levels
from ..bridge.consistency import LatentSeeding, append_image_tokens, still_clip
from ..bridge.qcache import ATTENTION_CHOICES, VARIANTS, apply_query_cache
from ..samplers.fifo import FifoOptions
from .common import NODE_PREFIX, ImageEncoder, LatentSeedingType, category
from .inputs import PIXEL_SIZES, check_declared, option_input, require_declared, size_inputs


class FIFOInfinityWeightedQCache(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}WeightedQCache",
            display_name="Weighted Q-Cache",
            category=category("consistency"),
            description=(
                "FIFO+'s weighted Q-cache against identity drift in long videos: in the UNet's decoder, the query of "
                "the chosen attention becomes (1 - weight) * decoder query + weight * the query of the encoder block "
                "at the same resolution, from the same forward pass (every window, CFG branch and step). Keys and "
                "values stay the decoder's. Works with any sampler (stock KSampler, FIFO, Video-Infinity). "
                "weight 0.9 is the FIFO+ author's setting; 1.0 is what the FIFO+ code does."),
            inputs=[
                io.Model.Input("model", tooltip="A VideoCrafter MODEL (VideoCrafter2 Checkpoint Loader). It is cloned, not changed."),
                io.Float.Input("weight", default=0.9, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of the encoder's query in the decoder's query. 0 = off, 0.9 = FIFO+ author's "
                                       "results, 1.0 = full replacement (the FIFO+ code's hard-coded value)."),
                io.Combo.Input("attention", options=list(ATTENTION_CHOICES), default="attn1",
                               tooltip="Which attention's query is blended. In temporal transformers both attn1 and attn2 "
                                       "are self-attention over frames; FIFO+'s examples use attn1. In spatial "
                                       "transformers attn1 is self-attention, attn2 cross-attention to the prompt."),
                io.Combo.Input("transformers", options=list(VARIANTS), default="temporal",
                               tooltip="temporal: the temporal transformers (FIFO+'s TTqcache, its main setting); "
                                       "spatial: the per-frame spatial transformers (FIFO+'s STqcache); or both."),
                io.String.Input("decoder_levels", default="all",
                                tooltip="Decoder resolution levels to blend, 'all' or comma-separated numbers: 0 = full "
                                        "latent resolution (output blocks 9-11), 1 = half (6-8), 2 = quarter (3-5). "
                                        "The lowest level (0-2) has no attention."),
                io.Float.Input("start_percent", default=0.0, min=0.0, max=1.0, step=0.001,
                               tooltip="Start of the denoising range where the cache applies (0 = the first, noisiest step). "
                                       "With FIFO each frame has its own noise level and is judged on its own."),
                io.Float.Input("end_percent", default=1.0, min=0.0, max=1.0, step=0.001,
                               tooltip="End of the denoising range where the cache applies (1 = the last step)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the weighted Q-cache patched in.")],
        )

    @classmethod
    def validate_inputs(cls, weight=None, decoder_levels=None, start_percent=None, end_percent=None):
        message = check_declared(cls, dict(weight=weight, start_percent=start_percent, end_percent=end_percent))
        if message:
            return message
        if None not in (start_percent, end_percent) and start_percent > end_percent:
            return f"start_percent ({start_percent}) must not be after end_percent ({end_percent})"
        if decoder_levels is not None:
            try:
                parse_levels(decoder_levels, range(16))
            except ValueError as error:
                return str(error)
        return True

    @classmethod
    def execute(cls, model, weight: float, attention: str, transformers: str, decoder_levels: str,
                start_percent: float, end_percent: float):
        require_declared(cls, dict(weight=weight, start_percent=start_percent, end_percent=end_percent))
        try:
            patched, _ = apply_query_cache(model, weight, attention, transformers, decoder_levels, start_percent, end_percent)
        except ValueError as error:
            raise ValueError(f"Weighted Q-Cache: {error}") from error
        return io.NodeOutput(patched)


class FIFOInfinityImageToVideoConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}ImageToVideoConditioning",
            display_name="Image to Video Conditioning",
            category=category("conditioning"),
            description=(
                "VideoCrafter1 image-to-video: encodes the image into 16 tokens (OpenCLIP ViT-H + the checkpoint's "
                "Resampler) and appends them to the positive text context (77 + 16 tokens); the negative gets the tokens "
                "of a mid-grey image, as the official code's unconditional branch. The image is stretched to 224x224 "
                "like the official preprocessing. Needs a VideoCrafter1 Image2Video checkpoint (its image encoder "
                "output); combines with the Weighted Q-Cache, FIFO and Video-Infinity."),
            inputs=[
                io.Conditioning.Input("positive", tooltip="Text conditioning of the prompt (CLIPTextEncode)."),
                io.Conditioning.Input("negative", tooltip="Text conditioning of the negative prompt; VideoCrafter uses \"\"."),
                ImageEncoder.Input("image_encoder", tooltip="IMAGE_ENCODER output of the VideoCrafter2 Checkpoint Loader "
                                                            "with a VideoCrafter1 image-to-video checkpoint."),
                io.Image.Input("image", tooltip="The image the video should follow; the first image of a batch is used."),
            ],
            outputs=[
                io.Conditioning.Output(display_name="positive", tooltip="Text tokens followed by the image's 16 tokens."),
                io.Conditioning.Output(display_name="negative", tooltip="Text tokens followed by the mid-grey image's 16 tokens."),
            ],
        )

    @classmethod
    def execute(cls, positive, negative, image_encoder, image):
        if image_encoder is None:
            raise ValueError("image_encoder: this checkpoint has no image encoder (text-to-video); load a VideoCrafter1 "
                             "image-to-video checkpoint (Image2Video_512 model.ckpt)")
        tokens = image_encoder.encode(image[:1])
        grey = image_encoder.unconditional_tokens()
        return io.NodeOutput(append_image_tokens(positive, tokens), append_image_tokens(negative, grey))


class FIFOInfinityLatentSeeding(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}LatentSeeding",
            display_name="FIFO Latent Seeding",
            category=category("consistency"),
            description=(
                "FIFO+ latent seeding ('t2v_seed') for the FIFO samplers: once the queue is built, its first frame is "
                "decoded, embedded as an image (16 tokens, VideoCrafter1 image-to-video) and appended to the prompt "
                "for the whole run, so the video keeps the look of its start; the negative gets the mid-grey image's "
                "tokens as in the official I2V code. reseed_every re-anchors on the newest output frame every K "
                "frames (the fork's unfinished autoregressive mode, done so that the context does not grow). Needs a "
                "VideoCrafter1 Image2Video checkpoint (model + IMAGE_ENCODER); connect plain text conditioning."),
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE of the checkpoint, to decode the seed frame."),
                ImageEncoder.Input("image_encoder", tooltip="IMAGE_ENCODER output of the VideoCrafter2 Checkpoint Loader "
                                                            "with a VideoCrafter1 image-to-video checkpoint."),
                option_input(LatentSeeding, "reseed_every",
                             tooltip="0: seed once from the queue's first frame (FIFO+). K > 0: every K output frames, "
                                     "re-seed from the frame just produced (replacing the previous seed)."),
            ],
            outputs=[LatentSeedingType.Output(tooltip="Connect to the latent_seeding input of a FIFO sampler.")],
        )

    @classmethod
    def execute(cls, vae, image_encoder, reseed_every: int):
        return io.NodeOutput(LatentSeeding(vae, image_encoder, reseed_every))   # ValueError names a bad input


class FIFOInfinityImageToBaseClip(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}ImageToBaseClip",
            display_name="Image to FIFO Base Clip",
            category=category("consistency"),
            description=(
                "Start a FIFO video from an image: the image is resized (centre crop) to width x height, VAE-encoded "
                "and repeated into a still clip of video_length frames, for the base_clip input of the FIFO samplers "
                "(FIFO then sets it in motion; with queue_init 'uniform' every slot starts from the image). For a "
                "moving start, sample a clip with Image to Video Conditioning instead and connect that latent."),
            inputs=[
                io.Image.Input("image", tooltip="The first image of a batch is used."),
                io.Vae.Input("vae", tooltip="The VAE of the video model."),
                option_input(FifoOptions, "video_length", "f of the FIFO sampler: frames in the clip."),
                *size_inputs("Video"),
            ],
            outputs=[io.Latent.Output(display_name="base_clip", tooltip="LATENT [video_length, 4, height/8, width/8].")],
        )

    @classmethod
    def validate_inputs(cls, width=None, height=None):
        return check_declared(cls, dict(width=width, height=height), PIXEL_SIZES) or True

    @classmethod
    def execute(cls, image, vae, video_length: int, width: int, height: int):
        require_declared(cls, dict(video_length=video_length, width=width, height=height), PIXEL_SIZES)
        return io.NodeOutput({"samples": still_clip(image, vae, video_length, width, height)})


NODES = [FIFOInfinityWeightedQCache, FIFOInfinityImageToVideoConditioning, FIFOInfinityLatentSeeding,
         FIFOInfinityImageToBaseClip]
