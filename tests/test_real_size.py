"""The real VideoCrafter2 UNet's size and key set, built on the meta device (no weights needed).

docs/videocrafter2.md, "Checkpoint layout and conversion" (counted by instantiating the official config):
1484 UNet keys, 1,413,284,420 parameters; the config inferred from that state dict is VideoCrafter2's `inference_t2v_512_v2.0.yaml`.
"""

import torch

VIDEOCRAFTER2_UNET = dict(in_channels=4, model_channels=320, out_channels=4, num_res_blocks=2,
                          attention_resolutions=[1, 2, 4], channel_mult=[1, 2, 4, 4], num_head_channels=64,
                          transformer_depth=1, context_dim=1024, use_linear=True, temporal_conv=True,
                          temporal_attention=True, addition_attention=True, fps_cond=True, image_cross_attention=False)


def test_real_unet_has_the_official_keys_and_size(host):
    import comfy.ops
    from fifo_infinity.videocrafter.convert import infer_unet_config
    from fifo_infinity.videocrafter.unet import UNet3D
    unet = UNet3D(**VIDEOCRAFTER2_UNET, device=torch.device("meta"), operations=comfy.ops.disable_weight_init)
    state = unet.state_dict()
    assert len(state) == 1484
    assert sum(t.numel() for t in state.values()) == 1_413_284_420
    for key, shape in {"init_attn.0.proj_in.weight": (512, 320, 1),
                       "input_blocks.1.0.temopral_conv.conv1.2.weight": (320, 320, 3, 1, 1),
                       "input_blocks.1.2.transformer_blocks.0.attn2.to_k.weight": (320, 320),
                       "input_blocks.7.1.transformer_blocks.0.attn2.to_k.weight": (1280, 1024),
                       "output_blocks.5.3.conv.weight": (1280, 1280, 3, 3),
                       "input_blocks.3.0.op.weight": (320, 320, 3, 3),
                       "fps_embedding.2.weight": (1280, 1280)}.items():
        assert tuple(state[key].shape) == shape, key
    inferred = infer_unet_config(state)
    for key, value in VIDEOCRAFTER2_UNET.items():
        assert (sorted(inferred[key]) if key == "attention_resolutions" else inferred[key]) == value, key
