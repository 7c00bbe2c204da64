"""The layout of docs/architecture.md holds: what each folder may import, node ids and class names."""

import ast
import os

import pytest

PACK_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE = ("samplers", "attention", "parallel")          # no ComfyUI import
HOST_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "node_helpers", "latent_preview", "nodes",
                "server", "execution", "utils"}


def _python_files(folder):
    for root, dirs, files in os.walk(os.path.join(PACK_DIR, folder)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        yield from (os.path.join(root, f) for f in files if f.endswith(".py"))


def _imports(path):
    """(absolute top-level module names, pack folders reached by relative imports) of one file, at any depth."""
    absolute, relative = set(), set()
    folder = os.path.relpath(os.path.dirname(path), PACK_DIR)
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            absolute |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                absolute.add(node.module.split(".")[0])
            elif node.level == 1:
                relative.add(folder)
            else:       # from ..x import y: the pack's folder x (or the pack's root)
                relative.add(node.module.split(".")[0] if node.module else ".")
    return absolute, relative


@pytest.mark.parametrize("folder", PURE)
def test_the_cores_import_no_comfyui(folder):
    for path in _python_files(folder):
        absolute, relative = _imports(path)
        assert not absolute & HOST_MODULES, f"{path} imports {absolute & HOST_MODULES}"
        assert not relative & {"bridge", "nodes", "videocrafter"}, f"{path} imports upward: {relative}"


def test_nothing_imports_upward():
    allowed = {"samplers": {"samplers"}, "attention": {"attention"}, "parallel": {"parallel", "attention"},
               "videocrafter": {"videocrafter", "samplers"},
               "bridge": {"bridge", "samplers", "attention", "parallel", "videocrafter"},
               "nodes": {"nodes", "bridge", "samplers", "attention", "parallel", "videocrafter"}}
    for folder, may in allowed.items():
        for path in _python_files(folder):
            _, relative = _imports(path)
            assert relative <= may, f"{path} imports {relative - may}"


def test_nothing_outside_tests_imports_from_tests():
    for folder in ("benchmarks", "tools", "bridge", "nodes", "samplers", "attention", "parallel", "videocrafter"):
        for path in _python_files(folder):
            text = open(path).read()
            assert "tests" not in _imports(path)[0] and '"tests"' not in text and "'tests'" not in text, path


def test_node_ids_have_one_prefix_and_match_their_classes(host):
    from fifo_infinity.nodes import NODE_MODULES
    from fifo_infinity.nodes.common import NODE_PREFIX
    ids = []
    for module in NODE_MODULES:
        for node in module.NODES:
            node_id = node.define_schema().node_id
            assert node_id.startswith(NODE_PREFIX) and node.__name__ == node_id, (node.__name__, node_id)
            ids.append(node_id)
    assert len(set(ids)) == len(ids)
    assert all(node_id in host.NODE_CLASS_MAPPINGS for node_id in ids)
