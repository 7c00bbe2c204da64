"""End to end through a real ComfyUI server over HTTP: registration, templates, a clip, validation errors."""


from PIL import Image

from conftest import frame_size, load_api_workflow

OUR_NODES = ["FIFOInfinityCheckpointLoader", "FIFOInfinityEmptyVideoLatent"]


def tiny_clip_prompt(width=None, height=None, frames=16, steps=8):
    default_width, default_height = frame_size()
    width, height = width or default_width, height or default_height
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
    assert "tiny_vc2.safetensors" in str(info["FIFOInfinityCheckpointLoader"]["input"]["required"]["ckpt_name"])


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
        assert image.size == frame_size()


def test_bad_size_is_refused_with_our_node_named(server):
    prompt = tiny_clip_prompt(width=100)
    response = server.post_prompt(prompt)
    assert response.status_code == 400
    body = response.json()
    errors = body["node_errors"]["4"]
    assert errors["class_type"] == "FIFOInfinityEmptyVideoLatent"
    text = str(errors["errors"])
    assert "width = 100" in text and "multiple of 64" in text


def test_streaming_save_video_output_runs_through_core_video_nodes(server, manifest):
    """Save Video (streaming)'s VIDEO goes into core's nodes on a real server: SaveVideo writes it again, and
    Get Video Components -> Create Video -> SaveVideo rebuilds it from its frames and fps; every file has the
    frames, size and fps the streaming node wrote."""
    import av
    height, width = (8 * side for side in manifest["latent_hw"])
    frames, fps = 10, 12.0
    prompt = {
        "1": {"class_type": "FIFOInfinityCheckpointLoader", "inputs": {"ckpt_name": "tiny_vc2.safetensors",
                                                                      "rescale_schedule": True}},
        "2": {"class_type": "FIFOInfinityEmptyVideoLatent", "inputs": {"width": width, "height": height,
                                                                      "frames": frames}},
        "3": {"class_type": "FIFOInfinitySaveVideoStreaming",
              "inputs": {"samples": ["2", 0], "vae": ["1", 2], "filename_prefix": "video_type/stream",
                         "format": "mp4 (H.264)", "fps": fps, "quality": 90, "decode_chunk": 4}},
        "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 1], "filename_prefix": "video_type/direct",
                                                    "format": "mp4", "codec": "h264"}},
        "5": {"class_type": "GetVideoComponents", "inputs": {"video": ["3", 1]}},
        "6": {"class_type": "CreateVideo", "inputs": {"images": ["5", 0], "fps": ["5", 2]}},
        "7": {"class_type": "SaveVideo", "inputs": {"video": ["6", 0], "filename_prefix": "video_type/rebuilt",
                                                    "format": "mp4", "codec": "h264"}},
    }
    entry = server.wait(server.queue(prompt), timeout=600)
    assert entry["status"]["status_str"] == "success", entry["status"]
    for node in ("3", "4", "7"):
        [path] = server.output_files(entry, node)
        with av.open(path) as container:
            stream = container.streams.video[0]
            assert sum(1 for _ in container.decode(stream)) == frames, node
            assert (stream.width, stream.height) == (width, height), node
            assert float(stream.average_rate) == fps, node
