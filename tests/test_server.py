"""End to end through a real ComfyUI server over HTTP: registration, templates, a clip, validation errors."""

import copy

from PIL import Image

from conftest import load_api_workflow

OUR_NODES = ["VideoCrafterCheckpointLoader", "VideoCrafterEmptyVideoLatent"]


def tiny_clip_prompt(width=128, height=64, frames=16, steps=8):
    prompt = load_api_workflow("videocrafter2_clip.json")
    prompt["1"]["inputs"]["ckpt_name"] = "tiny_vc2.safetensors"
    prompt["4"]["inputs"].update(width=width, height=height, frames=frames)
    prompt["5"]["inputs"]["steps"] = steps
    return prompt


def test_object_info_lists_our_nodes_with_descriptions(server):
    info = server.get("/object_info")
    for name in OUR_NODES:
        assert name in info, name
        assert len(info[name]["description"]) > 40
        for section in info[name]["input"].values():
            for entry in section.values():
                if isinstance(entry, list) and len(entry) > 1 and isinstance(entry[1], dict):
                    assert entry[1].get("tooltip"), (name, entry)
    assert "tiny_vc2.safetensors" in str(info["VideoCrafterCheckpointLoader"]["input"]["required"]["ckpt_name"])


def test_workflow_templates_list_the_examples(server):
    templates = server.get("/workflow_templates")
    assert "videocrafter2_clip" in templates["fifo-infinity"]
    workflow = server.get("/api/workflow_templates/fifo-infinity/videocrafter2_clip.json")
    assert {node["type"] for node in workflow["nodes"]} >= set(OUR_NODES)


def test_stock_ksampler_clip_writes_16_frames_of_the_requested_size(server):
    prompt = tiny_clip_prompt()
    entry = server.wait(server.queue(prompt), timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    files = server.output_files(entry, "7")
    assert len(files) == 1
    with Image.open(files[0]) as image:
        assert image.n_frames == 16
        assert image.size == (128, 64)


def test_bad_size_is_refused_with_our_node_named(server):
    prompt = tiny_clip_prompt(width=100)
    response = server.post_prompt(prompt)
    assert response.status_code == 400
    body = response.json()
    errors = body["node_errors"]["4"]
    assert errors["class_type"] == "VideoCrafterEmptyVideoLatent"
    text = str(errors["errors"])
    assert "width = 100" in text and "multiple of 64" in text
