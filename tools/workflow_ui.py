"""Build the UI-format (litegraph) example workflows from their API-format twins.

The API twins in `example_workflows/api/` are the source of truth (the tests post them to a real server);
the UI files in `example_workflows/` (what ComfyUI's Browse Templates loads) are generated from them with
the real host's node definitions, so the two never drift apart. `tests/test_workflows.py` regenerates them
and fails if a committed UI file differs.

    tools/run_tests.sh tests/test_workflows.py                     # check
    FIFO_WRITE_WORKFLOWS=1 tools/run_tests.sh tests/test_workflows.py   # rewrite the UI files
"""

from __future__ import annotations

import json
import os

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
COLUMN_WIDTH, ROW_HEIGHT = 480, 300


def _inputs_in_order(node_class) -> list[tuple[str, str, dict]]:
    """(name, type, options) of the required then optional inputs, in the node's declared order."""
    spec = node_class.INPUT_TYPES()
    out = []
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind = entry[0]
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            if isinstance(kind, list):
                kind, options = "COMBO", dict(options, options=kind)
            out.append((name, kind, options))
    return out


def _default(kind: str, options: dict):
    if "default" in options:
        return options["default"]
    if kind == "COMBO":
        return (options.get("options") or [None])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def _outputs(node_class) -> list[tuple[str, str]]:
    types = list(node_class.RETURN_TYPES)
    names = list(getattr(node_class, "RETURN_NAMES", None) or types)
    return list(zip(names, types))


def _depth(api: dict, node_id: str, memo: dict) -> int:
    if node_id not in memo:
        memo[node_id] = 0
        parents = [v[0] for v in api[node_id]["inputs"].values() if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)]
        memo[node_id] = 1 + max((_depth(api, p, memo) for p in parents), default=-1)
    return memo[node_id]


def api_to_ui(api: dict, node_classes: dict) -> dict:
    """UI-format workflow for an API-format prompt, laid out in columns by graph depth."""
    links, nodes = [], []
    link_id = 0
    outgoing: dict[tuple[str, int], list[int]] = {}
    incoming: dict[tuple[str, str], int] = {}
    for node_id in sorted(api, key=int):
        for name, value in api[node_id]["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                link_id += 1
                source, slot = value[0], value[1]
                source_class = node_classes[api[source]["class_type"]]
                links.append([link_id, int(source), slot, int(node_id), None, _outputs(source_class)[slot][1]])
                outgoing.setdefault((source, slot), []).append(link_id)
                incoming[(node_id, name)] = link_id

    depth_memo: dict = {}
    rows: dict[int, int] = {}
    for order, node_id in enumerate(sorted(api, key=lambda n: (_depth(api, n, depth_memo), int(n)))):
        entry = api[node_id]
        node_class = node_classes[entry["class_type"]]
        inputs, widgets = [], []
        for name, kind, options in _inputs_in_order(node_class):
            if (node_id, name) in incoming:
                link = incoming[(node_id, name)]
                for row in links:
                    if row[0] == link:
                        row[4] = len(inputs)
                inputs.append({"name": name, "type": kind, "link": link})
            elif kind in WIDGET_TYPES:
                # widgets_values are positional: an input the API twin leaves out takes its default
                widgets.append(entry["inputs"][name] if name in entry["inputs"] else _default(kind, options))
                if kind == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed")):
                    widgets.append("fixed")
            else:
                inputs.append({"name": name, "type": kind, "link": None})   # an unconnected socket
        outputs = [{"name": name, "type": kind, "links": outgoing.get((node_id, slot), []), "slot_index": slot}
                   for slot, (name, kind) in enumerate(_outputs(node_class))]
        column = _depth(api, node_id, depth_memo)
        row = rows.get(column, 0)
        rows[column] = row + 1
        node = {"id": int(node_id), "type": entry["class_type"], "pos": [40 + column * COLUMN_WIDTH, 40 + row * ROW_HEIGHT],
                "size": [340, 200], "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": entry["class_type"]}, "widgets_values": widgets}
        title = entry.get("_meta", {}).get("title")
        if title:
            node["title"] = title
        nodes.append(node)
    nodes.sort(key=lambda n: n["id"])
    return {"last_node_id": max(int(n) for n in api), "last_link_id": link_id, "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def example_paths(pack_dir: str) -> list[tuple[str, str]]:
    """(api twin, UI file) pairs of every example workflow."""
    api_dir = os.path.join(pack_dir, "example_workflows", "api")
    return [(os.path.join(api_dir, name), os.path.join(pack_dir, "example_workflows", name))
            for name in sorted(os.listdir(api_dir)) if name.endswith(".json")]


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def dump(data: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
