"""The consistency examples end to end through a real ComfyUI server: Weighted Q-Cache and Image to Video."""

from PIL import Image

from conftest import frame_size, load_api_workflow

OUR_NODES = ["FIFOInfinityWeightedQCache", "FIFOInfinityImageToVideoConditioning"]


def small(prompt, ckpt_name, latent_id, sampler_id, frames=16, steps=2):
    width, height = frame_size()
    prompt["1"]["inputs"]["ckpt_name"] = ckpt_name
    prompt[latent_id]["inputs"].update(width=width, height=height, frames=frames)
    prompt[sampler_id]["inputs"]["steps"] = steps
    return prompt


def node_of(prompt, class_type):
    return next(i for i, n in prompt.items() if n["class_type"] == class_type)


def run_and_check_frames(server, prompt, frames=16, size=None):
    size = size or frame_size()
    entry = server.wait(server.queue(prompt), timeout=900)
    assert entry["status"]["status_str"] == "success", entry["status"]
    files = server.output_files(entry, node_of(prompt, "SaveAnimatedWEBP"))
    assert len(files) == 1
    with Image.open(files[0]) as image:
        assert image.n_frames == frames
        assert image.size == size


def test_object_info_describes_the_consistency_nodes(server):
    info = server.get("/object_info")
    for name in OUR_NODES:
        assert name in info, name
        assert len(info[name]["description"]) > 80
        for section in info[name]["input"].values():
            for entry in section.values():
                assert entry[1].get("tooltip"), (name, entry)
    assert info["FIFOInfinityCheckpointLoader"]["output"][3] == "VIDEOCRAFTER_IMAGE_ENCODER"
    templates = server.get("/workflow_templates")["fifo-infinity"]
    assert {"weighted_qcache_clip", "image_to_video_clip"} <= set(templates)


def test_weighted_qcache_example_runs(server):
    prompt = small(load_api_workflow("weighted_qcache_clip.json"), "tiny_vc2.safetensors", "5", "6")
    assert prompt["6"]["inputs"]["model"] == ["4", 0]          # the sampler takes the patched model
    prompt["4"]["inputs"]["transformers"] = "temporal + spatial"
    run_and_check_frames(server, prompt)


def test_image_to_video_example_runs(server):
    prompt = small(load_api_workflow("image_to_video_clip.json"), "tiny_vc1_i2v.safetensors", "6", "7")
    run_and_check_frames(server, prompt)


def test_image_to_video_with_a_text_to_video_checkpoint_names_the_problem(server):
    prompt = small(load_api_workflow("image_to_video_clip.json"), "tiny_vc2.safetensors", "6", "7")
    entry = server.wait(server.queue(prompt), timeout=600)
    assert entry["status"]["status_str"] == "error"
    assert "has no image encoder" in str(entry["status"]["messages"])


def test_bad_step_range_is_refused_with_our_node_named(server):
    prompt = small(load_api_workflow("weighted_qcache_clip.json"), "tiny_vc2.safetensors", "5", "6")
    prompt["4"]["inputs"].update(start_percent=0.8, end_percent=0.2)
    response = server.post_prompt(prompt)
    assert response.status_code == 400
    errors = response.json()["node_errors"]["4"]
    assert errors["class_type"] == "FIFOInfinityWeightedQCache"
    assert "must not be after end_percent" in str(errors["errors"])
