"""Every example workflow: its UI file equals the one generated from its API twin with the real node
definitions (so the two never drift apart), and every node type it uses exists in the host."""

import importlib.util
import os

import pytest

from conftest import PACK_DIR

spec = importlib.util.spec_from_file_location("workflow_ui", os.path.join(PACK_DIR, "tools", "workflow_ui.py"))
workflow_ui = importlib.util.module_from_spec(spec)
spec.loader.exec_module(workflow_ui)

EXAMPLES = workflow_ui.example_paths(PACK_DIR)


def test_there_are_examples():
    names = [os.path.basename(ui) for _, ui in EXAMPLES]
    assert "videocrafter2_clip.json" in names


@pytest.mark.parametrize("api_path,ui_path", EXAMPLES, ids=[os.path.basename(p) for p, _ in EXAMPLES])
def test_ui_file_matches_api_twin(host, api_path, ui_path):
    api = workflow_ui.load(api_path)
    missing = {n["class_type"] for n in api.values()} - set(host.NODE_CLASS_MAPPINGS)
    assert not missing, f"{os.path.basename(api_path)} uses unknown nodes {missing}"
    generated = workflow_ui.api_to_ui(api, host.NODE_CLASS_MAPPINGS)
    if os.environ.get("FIFO_WRITE_WORKFLOWS"):
        workflow_ui.dump(generated, ui_path)
    assert os.path.exists(ui_path), f"missing UI workflow {ui_path}; run with FIFO_WRITE_WORKFLOWS=1"
    assert workflow_ui.load(ui_path) == generated, f"{ui_path} differs from its API twin; run with FIFO_WRITE_WORKFLOWS=1"
