"""Checkpoint formats and refusals: .ckpt (Lightning, DeepSpeed, flat), .safetensors, pickles, corrupt files."""

import os

import pytest
import safetensors.torch
import torch

from fifo_infinity.videocrafter import convert


@pytest.fixture(scope="module")
def state_dict(tiny_checkpoint):
    return safetensors.torch.load_file(tiny_checkpoint)


def unet_weights(model):
    return model.model.diffusion_model.state_dict()


@pytest.mark.parametrize("layout", ["lightning", "deepspeed", "flat"])
def test_ckpt_layouts_load_like_safetensors(host, tmp_path, state_dict, tiny_model, manifest, layout):
    from fifo_infinity.videocrafter.loader import load_videocrafter
    if layout == "lightning":
        payload = {"state_dict": state_dict, "epoch": 3}
    elif layout == "deepspeed":
        payload = {"module": {convert.DEEPSPEED_PREFIX + k: v for k, v in state_dict.items()}}
    else:
        payload = dict(state_dict)
    path = tmp_path / "model.ckpt"
    torch.save(payload, path)
    model, clip, vae, _ = load_videocrafter(str(path), text_heads=manifest["text_encoder"]["heads"], dtype=torch.float32)
    reference = unet_weights(tiny_model[0])
    loaded = unet_weights(model)
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)
    tokens = clip.tokenize("a red ball bouncing")
    assert torch.equal(clip.encode_from_tokens(tokens), tiny_model[1].encode_from_tokens(tokens))


class WritesAFile:
    """Unpickling this would run code that writes a file."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('payload ran')",))


def test_pickle_payload_is_refused_without_running(tmp_path, state_dict):
    marker = tmp_path / "payload_ran.txt"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": dict(list(state_dict.items())[:3]), "extra": WritesAFile(str(marker))}, path)
    with pytest.raises(convert.CheckpointError, match="refused.*execute"):
        convert.load_state_dict(str(path))
    assert not marker.exists()


def test_truncated_files_give_clear_errors(tmp_path, tiny_checkpoint, state_dict):
    data = open(tiny_checkpoint, "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(convert.CheckpointError, match="truncated or corrupt"):
        convert.load_state_dict(str(truncated))

    ckpt = tmp_path / "full.ckpt"
    torch.save({"state_dict": state_dict}, ckpt)
    cut = tmp_path / "truncated.ckpt"
    cut.write_bytes(ckpt.read_bytes()[:100_000])
    with pytest.raises(convert.CheckpointError, match="truncated zip archive .*fetch the file again"):
        convert.load_state_dict(str(cut))

    legacy = tmp_path / "legacy.ckpt"           # the pre-zip pickle format, cut short: a reason is always given
    torch.save({"state_dict": state_dict}, legacy, _use_new_zipfile_serialization=False)
    cut.write_bytes(legacy.read_bytes()[:100_000])
    with pytest.raises(convert.CheckpointError, match=r"truncated or corrupt\?\): \S"):
        convert.load_state_dict(str(cut))

    with pytest.raises(convert.CheckpointError, match="not found"):
        convert.load_state_dict(str(tmp_path / "missing.ckpt"))


def test_image_checkpoint_is_refused_naming_the_missing_temporal_layers(state_dict):
    """An SD-style image checkpoint (same key scheme, no temporal layers) is refused."""
    image_like = {k: v for k, v in state_dict.items()
                  if ".temopral_conv." not in k and ".init_attn." not in k
                  and not (k.startswith(convert.UNET_PREFIX) and ".2." in k and "_blocks." in k)}
    parts = convert.split_state_dict(image_like)
    with pytest.raises(convert.CheckpointError, match="temporal layers.*temopral_conv"):
        convert.validate(parts, "sd15.safetensors")


def test_files_without_a_unet_or_parts_are_refused(state_dict):
    vae_only = {k: v for k, v in state_dict.items() if k.startswith(convert.VAE_PREFIX)}
    with pytest.raises(convert.CheckpointError, match="no 'model.diffusion_model.\\*' keys"):
        convert.validate(convert.split_state_dict(vae_only), "vae.safetensors")
    no_text = {k: v for k, v in state_dict.items() if not k.startswith(convert.TEXT_PREFIX)}
    with pytest.raises(convert.CheckpointError, match="cond_stage_model.model"):
        convert.validate(convert.split_state_dict(no_text), "x.ckpt")


def test_loader_node_lists_both_folders_and_reports_errors(host, tmp_path, tiny_checkpoint, state_dict):
    import folder_paths
    videocrafter_dir = tmp_path / "videocrafter"
    checkpoints_dir = tmp_path / "checkpoints"
    videocrafter_dir.mkdir()
    checkpoints_dir.mkdir()
    os.symlink(tiny_checkpoint, videocrafter_dir / "tiny_vc2.safetensors")
    image_like = {k: v for k, v in state_dict.items() if ".temopral_conv." not in k and ".init_attn." not in k}
    safetensors.torch.save_file(image_like, str(checkpoints_dir / "image_model.safetensors"))
    folder_paths.add_model_folder_path("videocrafter", str(videocrafter_dir))
    folder_paths.add_model_folder_path("checkpoints", str(checkpoints_dir))

    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityCheckpointLoader"]
    spec = node.INPUT_TYPES()["required"]["ckpt_name"]
    choices = spec[1]["options"] if spec[0] == "COMBO" else spec[0]
    assert "tiny_vc2.safetensors" in choices and "image_model.safetensors" in choices
    model, clip, vae, image_encoder = node.execute("tiny_vc2.safetensors").result
    assert image_encoder is None          # text-to-video checkpoint: no image encoder (VideoCrafter1 I2V has one)
    assert type(model.model).__name__ == "VideoCrafterModel"
    with pytest.raises(ValueError, match="ckpt_name: image_model.safetensors is an image diffusion checkpoint"):
        node.execute("image_model.safetensors")


def test_empty_video_latent_shapes_and_size_errors(host):
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityEmptyVideoLatent"]
    latent = node.execute(512, 320, 16).result[0]["samples"]
    assert latent.shape == (16, 4, 40, 64)
    message = node.validate_inputs(width=500, height=320)
    assert "width = 500" in message and "448 or 512" in message
    assert "width = 0 is outside its range: use a number from 64 to 4096" in node.validate_inputs(width=0, height=320)
    assert node.validate_inputs(width=512, height=320) is True
    assert node.validate_inputs(width=None, height=320) is True          # a linked input: checked when it runs
    with pytest.raises(ValueError, match="frames = 0 is outside its range"):
        node.execute(512, 320, 0)


def test_fps_conditioning_reaches_the_unet(host, tiny_model, manifest):
    """The VideoCrafter FPS node sets the conditioning key the model turns into its per-frame fps input (8, the
    official default, when it is not set)."""
    node = host.NODE_CLASS_MAPPINGS["FIFOInfinityVideoCrafterFPS"]
    frames = manifest["unet"]["temporal_length"]
    conditioning = [[torch.zeros(1, 77, manifest["unet"]["context_dim"]), {}]]
    tagged = node.execute(conditioning, 24).result[0]
    assert tagged[0][1]["fps"] == 24 and "fps" not in conditioning[0][1]
    model = tiny_model[0].model
    noise = torch.zeros(frames, 4, *manifest["latent_hw"])
    extra = model.extra_conds(fps=24, cross_attn=tagged[0][0], noise=noise, device="cpu")
    assert torch.equal(extra["fps"].process_cond(batch_size=frames, device="cpu").cond, torch.full((frames,), 24.0))
    default = model.extra_conds(cross_attn=tagged[0][0], noise=noise, device="cpu")
    assert torch.equal(default["fps"].process_cond(batch_size=frames, device="cpu").cond, torch.full((frames,), 8.0))


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_empty_files_say_they_are_empty(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(convert.CheckpointError, match=r"is empty \(0 bytes\).*fetch the file again"):
        convert.load_state_dict(str(empty))


def test_random_bytes_are_not_called_a_pickle(tmp_path):
    """A file that is neither a zip archive nor a pickle (random bytes, an HTML page saved as .ckpt) says so,
    instead of being reported as a pickle that needs code."""
    for name, data in (("random.ckpt", bytes(range(7, 256)) * 40), ("page.ckpt", b"<!DOCTYPE html><html>")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(convert.CheckpointError, match="neither a PyTorch checkpoint .* nor a pickle") as error:
            convert.load_state_dict(str(path))
        assert "execute" not in str(error.value)


@pytest.mark.parametrize("layers", [1, 2])
def test_text_tower_depth_any_from_two_layers(host, state_dict, manifest, layers):
    """The penultimate layer is defined for any tower of 2 layers or more (ComfyUI refuses layer_idx -2 for
    two); a 1-layer tower has none and is refused with a clear message."""
    from fifo_infinity.videocrafter import loader
    prefix = convert.TEXT_PREFIX + "transformer.resblocks."
    text = {k[len(convert.TEXT_PREFIX):]: v for k, v in state_dict.items() if k.startswith(convert.TEXT_PREFIX)
            and not (k.startswith(prefix) and int(k[len(prefix):].split(".")[0]) >= layers)}
    if layers < 2:
        with pytest.raises(convert.CheckpointError, match="has 1 layer: .*penultimate layer.*at least 2"):
            loader.build_clip(text, heads=manifest["text_encoder"]["heads"])
        return
    clip = loader.build_clip(text, heads=manifest["text_encoder"]["heads"])
    embedding = clip.encode_from_tokens(clip.tokenize("a red ball"))
    assert embedding.shape[1:] == (77, text["token_embedding.weight"].shape[1]) and torch.isfinite(embedding).all()
