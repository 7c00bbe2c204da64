"""Video-Infinity nodes: the context options, the model patch, per-clip prompts and a clip-parallel decode.

The algorithm lives in `attention/video_infinity.py`, where clips run in `parallel/transport.py`, the ComfyUI
glue in `bridge/video_infinity.py` (docs/video_infinity.md); these nodes only check inputs and build objects.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..attention.video_infinity import Phase, VideoInfinityError, VideoInfinityOptions
from ..bridge.video_infinity import apply_video_infinity, decode_clips, per_clip_conditioning
from .common import NODE_PREFIX, VideoInfinityContextType as ViContext, category
from .inputs import check_declared, devices_error, devices_input, require_declared

MAX_PROMPTS = 8
DEFAULTS = VideoInfinityOptions()


class FIFOInfinityVideoInfinityContext(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = DEFAULTS
        return io.Schema(
            node_id=f"{NODE_PREFIX}VideoInfinityContext",
            display_name="Video-Infinity Context",
            category=category("video-infinity"),
            description=(
                "Options of Video-Infinity (Tan et al. 2024): a long video is denoised as clips of frames_per_clip "
                "frames in lockstep; every temporal attention also sees `padding` frames of each neighbouring clip "
                "(local context) and `global_frames` frames taken at a stride from all clips (global context), with "
                "logit biases that favour the global context at high noise and the local context at low noise, and "
                "every temporal convolution sees conv_context_frames frames of each neighbour. The defaults are the "
                "official config.json (24-frame clips, padding 8, 16 global frames, +10 global bias for t >= 800, "
                "+10 local bias below)."),
            inputs=[
                io.Int.Input("frames_per_clip", default=d.frames_per_clip, min=1, max=4096,
                             tooltip="F: frames per clip. The latent must hold a whole number of clips (W*F frames). "
                                     "Official: 24 per GPU."),
                io.Int.Input("padding", default=d.padding, min=0, max=2048,
                             tooltip="Local context radius p: each query frame sees its own clip's frames within p "
                                     "and p frames of each neighbouring clip (zeros at the video ends). Must be at "
                                     "most frames_per_clip / 2. Official: 8."),
                io.Int.Input("global_frames", default=d.global_frames, min=0, max=65536,
                             tooltip="Size of the global key set (official 'top_k'): every clip contributes frames "
                                     "at a stride of F // (global_frames // clips), in clip order, cut to this many. "
                                     "0 = no global context. Official: 16."),
                io.Int.Input("local_phase_t", default=int(d.local_phase.t), min=0, max=1000,
                             tooltip="Local phase: applies while the timestep t is below this (official 800)."),
                io.Float.Input("local_phase_local_bias", default=d.local_phase.local_bias, min=-100.0, max=100.0, step=0.1,
                               tooltip="Logit bias on the local keys in the local phase (official +10)."),
                io.Float.Input("local_phase_global_bias", default=d.local_phase.global_bias, min=-100.0, max=100.0, step=0.1,
                               tooltip="Logit bias on the global keys in the local phase (official 0)."),
                io.Int.Input("global_phase_t", default=int(d.global_phase.t), min=0, max=1000,
                             tooltip="Global phase: applies while the timestep t is at or above this (official 800: "
                                     "the first 6 of 30 steps)."),
                io.Float.Input("global_phase_local_bias", default=d.global_phase.local_bias, min=-100.0, max=100.0, step=0.1,
                               tooltip="Logit bias on the local keys in the global phase (official 0)."),
                io.Float.Input("global_phase_global_bias", default=d.global_phase.global_bias, min=-100.0, max=100.0, step=0.1,
                               tooltip="Logit bias on the global keys in the global phase (official +10)."),
                io.Boolean.Input("token_num_scale", default=d.token_num_scale,
                                 tooltip="Scale the attention logits by ln(keys seen)/ln(16); the official README "
                                         "suggests it when padding + global_frames exceeds 24. Official: off."),
                io.Float.Input("attn_scale", default=d.attn_scale, min=0.01, max=10.0, step=0.01,
                               tooltip="Multiplies the softmax scale 1/sqrt(head dim). Official: 1.0."),
                io.Int.Input("conv_context_frames", default=d.conv_context_frames, min=0, max=64,
                             tooltip="Frames of each neighbouring clip given to every temporal convolution block "
                                     "(its receptive radius is 4). 0 = convolutions see their own clip only. Official: 4."),
                io.Boolean.Input("sync_group_norm", default=d.sync_group_norm,
                                 tooltip="Off = the released code: GroupNorm statistics per clip. On = the paper's "
                                         "synchronised statistics over all clips (temporal transformer norms and "
                                         "temporal conv GroupNorms); one more exchange per norm."),
                io.Boolean.Input("dual_scope_attention", default=d.dual_scope_attention,
                                 tooltip="Off = plain temporal attention inside each clip (no local or global context); "
                                         "with conv_context_frames 0 and sync off, the clips are denoised independently."),
            ],
            outputs=[ViContext.Output(display_name="context",
                                      tooltip="Video-Infinity options for Apply Video-Infinity, Video-Infinity Prompts "
                                              "and Video-Infinity VAE Decode.")],
        )

    @staticmethod
    def build(frames_per_clip, padding, global_frames, local_phase_t, local_phase_local_bias, local_phase_global_bias,
              global_phase_t, global_phase_local_bias, global_phase_global_bias, token_num_scale, attn_scale,
              conv_context_frames, sync_group_norm, dual_scope_attention) -> VideoInfinityOptions:
        return VideoInfinityOptions(
            frames_per_clip=frames_per_clip, padding=padding, global_frames=global_frames,
            local_phase=Phase(local_phase_t, local_phase_local_bias, local_phase_global_bias),
            global_phase=Phase(global_phase_t, global_phase_local_bias, global_phase_global_bias),
            token_num_scale=token_num_scale, attn_scale=attn_scale, conv_context_frames=conv_context_frames,
            sync_group_norm=sync_group_norm, dual_scope_attention=dual_scope_attention)

    @classmethod
    def validate_inputs(cls, local_phase_local_bias=None, local_phase_global_bias=None, global_phase_local_bias=None,
                        global_phase_global_bias=None, attn_scale=None):
        # Names only the floats (ComfyUI's own range check lets NaN through); the integer inputs keep ComfyUI's
        # per-input range check and the rules across inputs (padding <= F/2, ...) run when the node executes.
        return check_declared(cls, dict(local_phase_local_bias=local_phase_local_bias,
                                        local_phase_global_bias=local_phase_global_bias,
                                        global_phase_local_bias=global_phase_local_bias,
                                        global_phase_global_bias=global_phase_global_bias,
                                        attn_scale=attn_scale)) or True

    @classmethod
    def execute(cls, **inputs):
        require_declared(cls, inputs)
        return io.NodeOutput(cls.build(**inputs))          # VideoInfinityError is a ValueError: shown as is


class FIFOInfinityApplyVideoInfinity(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}ApplyVideoInfinity",
            display_name="Apply Video-Infinity",
            category=category("video-infinity"),
            description=(
                "Patches a VideoCrafter2 MODEL for Video-Infinity. The patched model takes a long latent of W*F frames "
                "(frames as batch, any W >= 1) and runs it as W clips of F frames with dual-scope attention in every "
                "temporal transformer (both attentions, and the init attention) and neighbour frames in every temporal "
                "convolution. Works with the stock samplers (SamplerCustomAdvanced, KSampler). Clips can run in one "
                "call, in groups on several devices of this machine, or one rank per process with torch.distributed "
                "(run the workflow with the pack's run.py under torchrun)."),
            inputs=[
                io.Model.Input("model", tooltip="A VideoCrafter2 MODEL (VideoCrafter2 Checkpoint Loader)."),
                ViContext.Input("context", tooltip="Video-Infinity options (Video-Infinity Context)."),
                devices_input("clips", "the clips are split into one group per entry."),
            ],
            outputs=[io.Model.Output(tooltip="The patched model (a clone; the input model is unchanged).")],
        )

    @classmethod
    def validate_inputs(cls, devices=None):
        return devices_error(devices) or True

    @classmethod
    def execute(cls, model, context: VideoInfinityOptions, devices: str = ""):
        try:
            return io.NodeOutput(apply_video_infinity(model, context, devices))
        except VideoInfinityError as error:
            raise ValueError(f"Apply Video-Infinity: {error}") from error


class FIFOInfinityVideoInfinityPrompts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}VideoInfinityPrompts",
            display_name="Video-Infinity Prompts",
            category=category("video-infinity"),
            description=(
                "One prompt per group of clips, as the official multi-prompt configs: with P prompts and W clips, clip "
                "r is conditioned on prompt floor(r*P/W) (1 prompt: all clips; 8 prompts on 8 clips: one each; 4 on 8: "
                "two consecutive clips each). Prompts are not blended: transitions come from the clips' shared "
                "context. Connect the CONDITIONINGs in order (or one list of them); extra keys such as fps are taken "
                "from the first."),
            inputs=[
                ViContext.Input("context", tooltip="Video-Infinity options (for the clip length)."),
                io.Latent.Input("latent", tooltip="The long latent to be sampled (for the number of clips W)."),
                io.Conditioning.Input("conditioning_1", tooltip="Prompt of the first clip group."),
                *[io.Conditioning.Input(f"conditioning_{i}", optional=True,
                                        tooltip=f"Prompt of clip group {i} (optional; groups are spread evenly over the clips).")
                  for i in range(2, MAX_PROMPTS + 1)],
            ],
            outputs=[io.Conditioning.Output(tooltip="Per-frame conditioning [W*F frames] for the patched model.")],
            is_input_list=True,
        )

    @classmethod
    def execute(cls, context, latent, conditioning_1, **more):
        options = context[0]
        samples = latent[0]["samples"]
        prompts = list(conditioning_1)
        for i in range(2, MAX_PROMPTS + 1):
            prompts += list(more.get(f"conditioning_{i}") or [])
        try:
            return io.NodeOutput(per_clip_conditioning(prompts, options, samples.shape[0]))
        except VideoInfinityError as error:
            raise ValueError(f"Video-Infinity Prompts: {error}") from error


class FIFOInfinityVideoInfinityDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=f"{NODE_PREFIX}VideoInfinityDecode",
            display_name="Video-Infinity VAE Decode",
            category=category("video-infinity"),
            description=(
                "Decodes a long video latent frame by frame. In one process it is VAE Decode. Under torchrun (the "
                "pack's run.py) every rank decodes only its own clips and the frames are gathered on rank 0, which "
                "returns the whole video; the other ranks return their own clips' frames (their outputs are discarded "
                "by the runner)."),
            inputs=[
                io.Vae.Input("vae", tooltip="The VAE (VideoCrafter2 Checkpoint Loader)."),
                io.Latent.Input("samples", tooltip="The sampled long latent [W*F, 4, h, w]."),
                ViContext.Input("context", tooltip="Video-Infinity options (for the clip length)."),
            ],
            outputs=[io.Image.Output(tooltip="Frames [W*F, H, W, 3] (rank 0 under torchrun).")],
        )

    @classmethod
    def execute(cls, vae, samples, context: VideoInfinityOptions):
        try:
            return io.NodeOutput(decode_clips(vae, samples["samples"], context))
        except VideoInfinityError as error:
            raise ValueError(f"Video-Infinity VAE Decode: {error}") from error


NODES = [FIFOInfinityVideoInfinityContext, FIFOInfinityApplyVideoInfinity, FIFOInfinityVideoInfinityPrompts,
         FIFOInfinityVideoInfinityDecode]
