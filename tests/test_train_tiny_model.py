"""tools/train_tiny_model.py: the synthetic world, determinism for a seed, resumability and the export layout."""

import importlib.util
import os

import numpy as np
import pytest
import torch

from conftest import PACK_DIR, comfy_root

spec = importlib.util.spec_from_file_location("train_tiny_model", os.path.join(PACK_DIR, "tools", "train_tiny_model.py"))
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)


def smoke_args(tmp_path, seed=5, **overrides):
    argv = ["--smoke", "--quiet", "--seed", str(seed), "--cache-dir", str(tmp_path / "cache"), "--loss-log", "",
            "--comfyui", comfy_root(), "--vae-steps", "2", "--vae-crop-steps", "1", "--vae-full-batch", "1", "--vae-batch", "2", "--vae-crop", "16", "--calibration-clips", "1",
            "--pool-clips", "4", "--pool-chunk", "2", "--unet-steps", "2", "--unet-batch", "2"]
    for key, value in overrides.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    return train.parse_args(argv)


def test_world_clips_match_their_captions():
    rng = np.random.default_rng(0)
    for _ in range(200):
        video, caption, objects = train.make_clip(rng)
        assert video.shape == (16, 64, 64, 3) and video.dtype == np.uint8
        assert caption in train.all_captions()
        for obj in objects:
            assert f"a {obj['colour']} {obj['shape']}" in caption
            cx, cy = obj["centres"][:, 0], obj["centres"][:, 1]
            assert (cx >= obj["radius"] - 1e-4).all() and (cx <= 64 - obj["radius"] + 1e-4).all()
            assert (cy >= obj["radius"] - 1e-4).all() and (cy <= 64 - obj["radius"] + 1e-4).all()
            # the pixel at the centre of the top object in frame 0 has its colour
        top = objects[-1]
        x, y = (int(v) for v in top["centres"][0])
        assert tuple(video[0, y, x]) == tuple(np.clip(np.asarray(train.COLOURS[top["colour"]]), 0, 255))
        if len(objects) == 1 and caption.endswith("moving left"):
            assert objects[0]["centres"][-1, 0] < objects[0]["centres"][0, 0]
        if len(objects) == 1 and (caption.endswith("bouncing") or "moving" in caption):
            # "bouncing" exactly when a wall changes a move between two of the clip's frames
            steps = np.diff(objects[0]["centres"], axis=0)
            turned = np.abs(steps - np.asarray(objects[0]["velocity"])).max() > 1e-3
            assert turned == caption.endswith("bouncing"), caption


def test_reversed_captions_flip_direction_only():
    assert train.caption_reversed("a red ball moving left") == "a red ball moving right"
    assert train.caption_reversed("a blue square moving up") == "a blue square moving down"
    assert train.caption_reversed("a green ball bouncing") == "a green ball bouncing"
    assert train.caption_reversed("a red ball and a blue square") == "a red ball and a blue square"
    assert all(train.caption_reversed(c) in train.all_captions() for c in train.all_captions())


def test_schedule_buffers_are_videocrafter2s(host, tiny_checkpoint):
    from fifo_infinity.videocrafter.model_base import alphas_cumprod_float32, rescale_table
    buffers = train.schedule_buffers(train.setup_comfy(comfy_root()))
    assert torch.equal(buffers["alphas_cumprod"], alphas_cumprod_float32())
    assert torch.equal(buffers["scale_arr"], rescale_table())
    import safetensors.torch
    ref = safetensors.torch.load_file(tiny_checkpoint)
    for key, value in buffers.items():
        assert torch.allclose(value, ref[key], rtol=1e-5, atol=1e-7), key


def test_same_seed_same_losses_other_seed_other_losses(host):
    first = train.smoke_losses(3, comfyui=comfy_root())
    second = train.smoke_losses(3, comfyui=comfy_root())
    assert len(first) == 4 and all(np.isfinite(first))      # 2 VAE steps, 2 UNet steps
    assert first == second
    assert train.smoke_losses(4, comfyui=comfy_root()) != first


def test_high_noise_fraction_is_deterministic_and_changes_only_the_unet_steps(host):
    default = train.smoke_losses(3, comfyui=comfy_root())
    high = train.smoke_losses(3, comfyui=comfy_root(), extra=("--high-noise-fraction", "1"))
    assert high == train.smoke_losses(3, comfyui=comfy_root(), extra=("--high-noise-fraction", "1"))
    assert high[:2] == default[:2] and high[2:] != default[2:]      # same VAE steps, other UNet timesteps


def test_resuming_continues_the_same_run(host, tmp_path):
    """Stopping after a checkpoint and starting again gives the losses of an uninterrupted run."""
    whole = train.Trainer(smoke_args(tmp_path / "a"))
    whole.run()
    interrupted = train.Trainer(smoke_args(tmp_path / "b"))
    interrupted.run(max_steps=3)          # 2 VAE steps + 1 pool chunk, then a checkpoint
    assert os.path.isfile(interrupted.checkpoint_path())
    resumed = train.Trainer(smoke_args(tmp_path / "b"))
    assert resumed.resume() and resumed.phase == "pool"
    resumed.run()
    assert interrupted.history[:2] + resumed.history == whole.history


def test_resuming_inside_the_unet_phase_restores_optimiser_and_ema(host, tmp_path):
    whole = train.Trainer(smoke_args(tmp_path / "a", unet_steps=4))
    whole.run()
    interrupted = train.Trainer(smoke_args(tmp_path / "b", unet_steps=4))
    interrupted.run(max_steps=5)          # 2 VAE steps, 2 pool chunks, 1 UNet step, then a checkpoint
    resumed = train.Trainer(smoke_args(tmp_path / "b", unet_steps=4))
    assert resumed.resume() and (resumed.phase, resumed.step) == ("unet", 1)
    resumed.run()
    assert len(resumed.history) == 3 and interrupted.history + resumed.history == whole.history
    assert all(torch.equal(whole.ema[k], resumed.ema[k]) for k in whole.ema)


def test_resuming_with_other_data_settings_is_refused(host, tmp_path):
    train.Trainer(smoke_args(tmp_path)).run(max_steps=1)
    with pytest.raises(SystemExit, match=r"--pool-clips 6 \(the checkpoint has 4\)"):
        train.Trainer(smoke_args(tmp_path, pool_clips=6)).resume()
    again = train.Trainer(smoke_args(tmp_path, unet_steps=3, ramp_fraction=0.5))   # schedule changes are allowed
    assert again.resume() and again.phase == "vae"


def test_exports_never_replace_the_bundled_model_with_an_unfinished_run(host, tmp_path):
    trainer = train.Trainer(smoke_args(tmp_path))
    trainer.run(max_steps=1)
    assert trainer.export_path() == str(tmp_path / "cache" / "unfinished.safetensors")
    trainer.run()
    assert trainer.phase == "done" and trainer.export_path() == train.BUNDLED_MODEL
    assert train.Trainer(smoke_args(tmp_path, out=tmp_path / "x.safetensors")).export_path() == str(tmp_path / "x.safetensors")
    with pytest.raises(SystemExit, match="--export-only: no checkpoint in .*empty"):
        train.main([*sys_argv(smoke_args(tmp_path / "empty")), "--export-only"])


def sys_argv(args):
    """The command line of parsed smoke arguments without --smoke (main() exports only non-smoke runs)."""
    return ["--quiet", "--seed", str(args.seed), "--cache-dir", args.cache_dir, "--loss-log", "", "--comfyui",
            args.comfyui, "--vae-steps", "2", "--vae-crop-steps", "1", "--vae-crop", "16", "--pool-clips", "4"]


@pytest.mark.parametrize("flag, value, expected", [
    ("--pool-chunk", "0", "expected an integer >= 1, got 0"),
    ("--print-every", "0", "expected an integer >= 1, got 0"),
    ("--vae-crop", "20", "expected a multiple of 8 up to 64 pixels, got 20"),
    ("--vae-crop", "72", "expected a multiple of 8 up to 64 pixels, got 72"),
    ("--ramp-fraction", "1.5", "expected a number >= 0 and <= 1, got 1.5"),
    ("--unet-lr", "0", "expected a number > 0, got 0.0"),
    ("--comfyui", "/nonexistent", "'/nonexistent' is not a ComfyUI root"),
])
def test_bad_arguments_are_refused_by_name(capsys, flag, value, expected):
    argv = ["--comfyui", comfy_root(), flag, value]
    with pytest.raises(SystemExit):
        train.parse_args(argv)
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and expected in err, err


def test_a_finished_run_continues_when_the_unet_steps_are_raised(host, tmp_path):
    finished = train.Trainer(smoke_args(tmp_path))
    finished.run()
    assert finished.phase == "done" and finished.step == 2
    again = train.Trainer(smoke_args(tmp_path))
    assert again.resume() and again.phase == "done"      # same --unet-steps: nothing left to do
    again.run()
    assert again.history == []
    longer = train.Trainer(smoke_args(tmp_path, unet_steps=4))
    assert longer.resume() and longer.phase == "unet" and longer.step == 2
    longer.run()
    assert longer.phase == "done" and longer.step == 4 and len(longer.history) == 2


def test_export_loads_through_the_pack_loader(host, tmp_path):
    """The exported file is a VideoCrafter2 checkpoint: the loader builds it, and its CLIP gives the training text features."""
    from fifo_infinity.videocrafter import convert
    from fifo_infinity.videocrafter.loader import load_videocrafter
    trainer = train.Trainer(smoke_args(tmp_path))
    trainer.run()
    path = str(tmp_path / "tiny.safetensors")
    trainer.export(path)
    sd = convert.load_state_dict(path)
    prefixes = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.model.")
    assert {k for k in sd if not k.startswith(prefixes)} == set(train.schedule_buffers(trainer.pkg))
    assert all(v.dtype == torch.float16 for k, v in sd.items() if k.startswith(prefixes))
    config = convert.infer_unet_config(convert.split_state_dict(sd)["unet"])
    for key in ("model_channels", "channel_mult", "num_res_blocks", "attention_resolutions", "num_head_channels",
                "context_dim", "temporal_conv", "temporal_attention", "addition_attention", "fps_cond"):
        assert config[key] == train.UNET[key], key
    model, clip, vae, _ = load_videocrafter(path, dtype=torch.float32)
    for i in (0, 1, len(trainer.captions) - 1):
        cond = clip.encode_from_tokens(clip.tokenize(trainer.captions[i])).float()
        assert torch.allclose(cond[0], trainer.embeddings[i], atol=1e-5), trainer.captions[i]
    # the exported UNet is the EMA one, and the loader's model computes what training computed
    x = torch.randn(16, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    t = torch.full((16,), 500.0)
    context = trainer.embeddings[1:2].expand(16, -1, -1)
    trainer.unet.load_state_dict({k: v.half().float() for k, v in trainer.ema.items()})
    trainer.unet.eval()
    with torch.no_grad():
        ours = trainer.unet(x, t, context=context, transformer_options={"video_length": 16}, fps=torch.full((16,), 8.0))
        loaded = model.model.diffusion_model(x, t, context=context, transformer_options={"video_length": 16},
                                             fps=torch.full((16,), 8.0))
    assert torch.allclose(ours, loaded, atol=1e-4)
