"""The Video-Infinity example workflow end to end: through a real ComfyUI server, and through the headless
runner (run.py) under torchrun with 2 gloo ranks, which must produce the same latent as the server's single
process. Sizes are shrunk for the tiny model; everything else is the example's graph."""

import json

import pytest
import safetensors.torch
from PIL import Image

from conftest import frame_size, load_api_workflow, run_headless

FRAMES_PER_CLIP, CLIPS = 4, 3
SAMPLING_RELATIVE_TOLERANCE = 1e-4      # whole samplings at CFG 12 (latents reach ~300), as tests/test_loader.py


def tiny_prompt(steps=3, frames=FRAMES_PER_CLIP * CLIPS, devices=""):
    prompt = load_api_workflow("video_infinity_long_video.json")
    prompt["1"]["inputs"]["ckpt_name"] = "tiny_vc2.safetensors"
    width, height = frame_size()
    prompt["6"]["inputs"].update(width=width, height=height, frames=frames)
    prompt["7"]["inputs"].update(frames_per_clip=FRAMES_PER_CLIP, padding=2, global_frames=4, conv_context_frames=2)
    prompt["8"]["inputs"]["devices"] = devices
    prompt["12"]["inputs"]["steps"] = steps
    prompt["17"] = {"class_type": "SaveLatent", "inputs": {"samples": ["14", 0], "filename_prefix": "vi_test/latent"}}
    return prompt


def test_example_workflow_is_the_official_setting():
    prompt = load_api_workflow("video_infinity_long_video.json")
    types = {node["class_type"] for node in prompt.values()}
    assert {"SamplerCustomAdvanced", "SamplerDPMPP_2M_SDE", "FIFOInfinityApplyVideoInfinity", "FIFOInfinityVideoInfinityContext"} <= types
    assert prompt["11"]["inputs"]["solver_type"] == "midpoint" and prompt["12"]["inputs"]["steps"] == 30
    assert prompt["10"]["inputs"]["cfg"] == 12.0
    assert prompt["4"]["inputs"]["fps"] == 24 and prompt["5"]["inputs"]["fps"] == 24
    assert prompt["6"]["inputs"]["frames"] % prompt["7"]["inputs"]["frames_per_clip"] == 0


@pytest.fixture(scope="module")
def server_run(server):
    entry = server.wait(server.queue(tiny_prompt()), timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return server, entry


def test_example_workflow_runs_through_the_server(server_run):
    server, entry = server_run
    files = server.output_files(entry, "16")
    assert len(files) == 1
    with Image.open(files[0]) as image:
        assert image.n_frames == FRAMES_PER_CLIP * CLIPS
        assert image.size == frame_size()


def test_server_refuses_bad_devices_and_reports_bad_lengths(server):
    response = server.post_prompt(tiny_prompt(devices="cuda:9"))
    assert response.status_code == 400
    assert "does not exist" in str(response.json()["node_errors"]["8"]["errors"])
    entry = server.wait(server.queue(tiny_prompt(frames=FRAMES_PER_CLIP * CLIPS + 1, steps=1)), timeout=600)
    assert entry["status"]["status_str"] == "error"
    assert "not a whole number of clips" in json.dumps(entry["status"]["messages"])


def _latent(path):
    return safetensors.torch.load_file(path)["latent_tensor"]


@pytest.mark.distributed
def test_runner_under_torchrun_matches_the_single_process(server_run, model_folders, tmp_path):
    server, entry = server_run
    reference = _latent(server.output_files(entry, "17", kind="latents")[0])
    result = run_headless(tiny_prompt(), tmp_path, model_folders, processes=2)
    assert [r["success"] for r in result["ranks"]] == [True, True]
    latents = [f for f in result["files"] if f.endswith(".latent")]
    webps = [f for f in result["files"] if f.endswith(".webp")]
    assert len(latents) == 1 and len(webps) == 1
    with Image.open(webps[0]) as image:
        assert image.n_frames == FRAMES_PER_CLIP * CLIPS        # rank 0 gathered every clip's frames
    latent = _latent(latents[0])
    error = (latent - reference).abs().max().item()
    largest = reference.abs().max().item()
    print(f"runner, gloo 2 ranks vs server (one process): latent max abs error {error:.3g} on values up to {largest:.3g}")
    assert error < SAMPLING_RELATIVE_TOLERANCE * largest

