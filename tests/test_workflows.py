"""Every example workflow: its UI file equals the one generated from its API twin with the real node
definitions (so the two never drift apart), and every node type it uses exists in the host.

The UI files are generated on the newest host (tools/workflow_ui.py says why and how). Which check a host
gets follows from what its node definitions know, never from its version:

- a host that defines every input and output the committed pair names (the generating host, or a newer
  one) must regenerate the UI file exactly, and the twin must name every widget its frontend sends;
- an older host, whose nodes lack some of them (v0.3.75: SaveVideo's nested `format.codec`, CreateVideo's
  `bit_depth`, the pass-through outputs of output nodes), checks what its frontend will really do with the
  file: the node types exist, the links are the twin's and leave outputs it has, and the widget values it
  reads back by position are the twin's for every input it defines. It cannot rewrite the files.
"""

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
    name = os.path.basename(api_path)
    missing = {n["class_type"] for n in api.values()} - set(host.NODE_CLASS_MAPPINGS)
    assert not missing, f"{name} uses unknown nodes {missing}"
    committed = workflow_ui.load(ui_path) if os.path.exists(ui_path) else None
    unknown = workflow_ui.unknown_to_host(api, committed, host.NODE_CLASS_MAPPINGS) if committed else []
    if not unknown:
        generated = workflow_ui.api_to_ui(api, host.NODE_CLASS_MAPPINGS)
        if os.environ.get("FIFO_WRITE_WORKFLOWS"):
            workflow_ui.dump(generated, ui_path)
            committed = generated
        assert committed is not None, f"missing UI workflow {ui_path}; run with FIFO_WRITE_WORKFLOWS=1"
        assert committed == generated, f"{ui_path} differs from its API twin; run with FIFO_WRITE_WORKFLOWS=1"
    else:
        assert not os.environ.get("FIFO_WRITE_WORKFLOWS"), \
            f"{name}: this host lacks what the committed files name ({unknown}): regenerate them on the newest host"
        problems = workflow_ui.compatibility_problems(api, committed, host.NODE_CLASS_MAPPINGS)
        assert not problems, f"{name}: the older host's frontend would not read the twin from {ui_path}: {problems}"


def test_an_older_host_is_told_apart_and_checked(host):
    """The two checks are real: taking an output away from a node definition makes the host 'older' for
    a file that names it, and a value moved between widgets is caught by the older host's read-back."""
    api_path, ui_path = next((a, u) for a, u in EXAMPLES if os.path.basename(a) == "videocrafter2_clip.json")
    api, ui = workflow_ui.load(api_path), workflow_ui.load(ui_path)
    classes = dict(host.NODE_CLASS_MAPPINGS)
    assert not workflow_ui.compatibility_problems(api, ui, classes)
    loader = classes["FIFOInfinityCheckpointLoader"]
    fewer_outputs = type("OlderLoader", (), {"INPUT_TYPES": loader.INPUT_TYPES,
                                             "RETURN_TYPES": tuple(loader.RETURN_TYPES)[:3],
                                             "RETURN_NAMES": tuple(getattr(loader, "RETURN_NAMES", None) or loader.RETURN_TYPES)[:3]})
    assert any("FIFOInfinityCheckpointLoader: output 3" in p
               for p in workflow_ui.unknown_to_host(api, ui, dict(classes, FIFOInfinityCheckpointLoader=fewer_outputs)))
    sampler = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    sampler["widgets_values"][2], sampler["widgets_values"][3] = sampler["widgets_values"][3], sampler["widgets_values"][2]
    problems = workflow_ui.compatibility_problems(api, ui, classes)
    assert any("'steps' reads back" in p for p in problems) and any("'cfg' reads back" in p for p in problems), problems
