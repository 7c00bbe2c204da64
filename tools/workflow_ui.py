"""Build the UI-format (litegraph) example workflows from their API-format twins.

The API twins in `example_workflows/api/` are the source of truth (the tests post them to a real server);
the UI files in `example_workflows/` (what ComfyUI's Browse Templates loads) are generated from them with
the real host's node definitions, so the two never drift apart.

    tools/run_tests.sh tests/test_workflows.py                         # check
    FIFO_WRITE_WORKFLOWS=1 tools/run_tests.sh tests/test_workflows.py   # rewrite the UI files

**One file, two hosts.** The suite runs on two ComfyUI hosts whose core nodes differ (v0.33 gave output
nodes such as SaveAnimatedWEBP and SaveVideo a pass-through output, made SaveVideo's `format` a V3 dynamic
combo with a nested `codec` and a hidden legacy `codec`, gave CreateVideo a `bit_depth` widget), but a
template is one file that both frontends load. The files are therefore generated on the newest host, the
one whose node definitions know every input and output the files name, and they are written the way that
host's frontend (1.49) serializes a workflow itself (measured in the browser, tests/test_browser.py):

- `widgets_values` holds one value per widget, in the node's declared input order (required, then
  optional, hidden ones included); a dynamic combo is a combo widget followed at once by the widgets of its
  selected option, named `<combo>.<input>` (recursively); an INT with `control_after_generate` (and any
  `seed` / `noise_seed`) is followed by its "fixed" control widget;
- `outputs` are the host's outputs (pass-through outputs included), `inputs` the sockets (linked or not).

Both frontends restore `widgets_values` by position, so an older frontend reads the values of the widgets
it has: those a newer host appends (CreateVideo's `bit_depth`) are ignored, and SaveVideo's nested
`format.codec` lands on v0.3.75's `codec`, which is why the twins give the legacy `codec` the same value.
An older frontend keeps outputs its host lacks as unconnected slots. `compatibility_problems` is what an
older host checks instead of regenerating the files (tests/test_workflows.py decides which check a host
gets, from what its node definitions know, never from a version string).

The API twins are written for the newest host too: they name every widget input its frontend sends (the
generator refuses a twin that leaves one out, or names one the host does not define), so that the page's
prompt is exactly the twin there; an older server ignores the inputs its nodes lack.
"""

from __future__ import annotations

import json
import os

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
CONTROL_WIDGET = "control_after_generate"
# Layout: columns by graph depth, each as wide as its widest node plus COLUMN_GAP. Frontend 1.49 widens a node
# to fit its title, about TITLE_CHAR_WIDTH per character plus TITLE_PADDING (measured on the templates'
# titles); a node is given at least that width, so that columns do not overlap.
NODE_SIZE = (340, 200)
TITLE_CHAR_WIDTH, TITLE_PADDING = 7.5, 40
COLUMN_GAP, ROW_HEIGHT = 80, 300


def _entry(entry) -> tuple[object, dict]:
    """(type, options) of one INPUT_TYPES entry; a list type is a combo with those options."""
    kind = entry[0]
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    if isinstance(kind, list):
        kind, options = "COMBO", dict(options, options=kind)
    return kind, options


def _declared_inputs(spec: dict) -> list[tuple[str, object, dict]]:
    """(name, type, options) of the required then optional inputs of an INPUT_TYPES dict, in declared order."""
    return [(name, *_entry(entry)) for section in ("required", "optional") for name, entry in spec.get(section, {}).items()]


def _is_widget(kind, options: dict) -> bool:
    return (kind in WIDGET_TYPES or kind == DYNAMIC_COMBO) and not options.get("forceInput")


def _default(kind, options: dict):
    if "default" in options:
        return options["default"]
    if kind == DYNAMIC_COMBO:
        return options["options"][0]["key"]
    if kind == "COMBO":
        return (options.get("options") or [None])[0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def widget_layout(node_class, values: dict) -> list[tuple[str, object]]:
    """(name, value) of every widget the frontend gives a node of `node_class`, in its order, with the values
    of `values` (an API prompt's inputs; a missing one takes its default, a dynamic combo's value picks which
    nested widgets follow it). Control widgets are named CONTROL_WIDGET and hold "fixed"."""
    layout = []

    def walk(spec: dict, prefix: str):
        for name, kind, options in _declared_inputs(spec):
            full = prefix + name
            if not _is_widget(kind, options):
                continue
            value = values.get(full, _default(kind, options))
            layout.append((full, value))
            if kind == "INT" and (options.get(CONTROL_WIDGET) or name in ("seed", "noise_seed")):
                layout.append((CONTROL_WIDGET, "fixed"))
            if kind == DYNAMIC_COMBO:
                chosen = [o for o in options["options"] if o["key"] == value]
                if not chosen:
                    raise ValueError(f"{full} = {value!r} is none of {[o['key'] for o in options['options']]}")
                walk(chosen[0]["inputs"], full + ".")

    walk(node_class.INPUT_TYPES(), "")
    return layout


def _sockets(node_class) -> list[tuple[str, str]]:
    """(name, type) of the inputs that are sockets, not widgets, in declared order."""
    return [(name, kind) for name, kind, options in _declared_inputs(node_class.INPUT_TYPES()) if not _is_widget(kind, options)]


def _outputs(node_class) -> list[tuple[str, str]]:
    types = list(node_class.RETURN_TYPES)
    names = list(getattr(node_class, "RETURN_NAMES", None) or types)
    return list(zip(names, types))


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _depth(api: dict, node_id: str, memo: dict) -> int:
    if node_id not in memo:
        memo[node_id] = 0
        parents = [v[0] for v in api[node_id]["inputs"].values() if _is_link(v)]
        memo[node_id] = 1 + max((_depth(api, p, memo) for p in parents), default=-1)
    return memo[node_id]


def _node_width(entry: dict) -> int:
    title = entry.get("_meta", {}).get("title") or entry["class_type"]
    return max(NODE_SIZE[0], int(round(TITLE_CHAR_WIDTH * len(title) + TITLE_PADDING)))


def twin_problems(api: dict, node_classes: dict) -> list[str]:
    """What keeps the page's prompt from being exactly this API twin on this host: node types it lacks,
    inputs the twin names that its nodes do not define, widget inputs the twin leaves out (the page sends
    every widget), links to widget inputs (the generator does not lay those out)."""
    problems = []
    for node_id, entry in sorted(api.items(), key=lambda item: int(item[0])):
        node_class = node_classes.get(entry["class_type"])
        if node_class is None:
            problems.append(f"node {node_id}: no node type {entry['class_type']}")
            continue
        inputs = entry["inputs"]
        widgets = {name for name, _ in widget_layout(node_class, inputs) if name != CONTROL_WIDGET}
        sockets = {name for name, _ in _sockets(node_class)}
        for name in sorted(set(inputs) - widgets - sockets):
            problems.append(f"node {node_id} {entry['class_type']}: input {name!r} is not defined by this host")
        for name in sorted(widgets - set(inputs)):
            problems.append(f"node {node_id} {entry['class_type']}: widget {name!r} missing from the twin")
        for name in sorted(widgets & {n for n, v in inputs.items() if _is_link(v)}):
            problems.append(f"node {node_id} {entry['class_type']}: widget input {name!r} is linked")
    return problems


def api_to_ui(api: dict, node_classes: dict) -> dict:
    """UI-format workflow for an API-format prompt, laid out in columns by graph depth (see the module
    docstring for the format); raises ValueError if the twin does not fit this host (`twin_problems`)."""
    problems = twin_problems(api, node_classes)
    if problems:
        raise ValueError("the API twin does not match this host's node definitions:\n  " + "\n  ".join(problems))
    links, nodes = [], []
    link_id = 0
    outgoing: dict[tuple[str, int], list[int]] = {}
    incoming: dict[tuple[str, str], int] = {}
    for node_id in sorted(api, key=int):
        for name, value in api[node_id]["inputs"].items():
            if _is_link(value):
                link_id += 1
                source, slot = value[0], value[1]
                source_class = node_classes[api[source]["class_type"]]
                links.append([link_id, int(source), slot, int(node_id), None, _outputs(source_class)[slot][1]])
                outgoing.setdefault((source, slot), []).append(link_id)
                incoming[(node_id, name)] = link_id

    depth_memo: dict = {}
    rows: dict[int, int] = {}
    widths = {node_id: _node_width(api[node_id]) for node_id in api}
    columns = max(_depth(api, n, depth_memo) for n in api) + 1
    column_width = [max((widths[n] for n in api if _depth(api, n, depth_memo) == c), default=0) for c in range(columns)]
    column_x = [40 + sum(w + COLUMN_GAP for w in column_width[:c]) for c in range(columns)]
    for order, node_id in enumerate(sorted(api, key=lambda n: (_depth(api, n, depth_memo), int(n)))):
        entry = api[node_id]
        node_class = node_classes[entry["class_type"]]
        inputs = []
        for name, kind in _sockets(node_class):
            link = incoming.get((node_id, name))
            if link is not None:
                for row in links:
                    if row[0] == link:
                        row[4] = len(inputs)
            inputs.append({"name": name, "type": kind, "link": link})
        widgets = [value for _, value in widget_layout(node_class, entry["inputs"])]
        outputs = [{"name": name, "type": kind, "links": outgoing.get((node_id, slot), []), "slot_index": slot}
                   for slot, (name, kind) in enumerate(_outputs(node_class))]
        column = _depth(api, node_id, depth_memo)
        row = rows.get(column, 0)
        rows[column] = row + 1
        node = {"id": int(node_id), "type": entry["class_type"], "pos": [column_x[column], 40 + row * ROW_HEIGHT],
                "size": [widths[node_id], NODE_SIZE[1]], "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": entry["class_type"]}, "widgets_values": widgets}
        title = entry.get("_meta", {}).get("title")
        if title:
            node["title"] = title
        nodes.append(node)
    nodes.sort(key=lambda n: n["id"])
    return {"last_node_id": max(int(n) for n in api), "last_link_id": link_id, "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 0.8, "offset": [0, 0]}}, "version": 0.4}


def unknown_to_host(api: dict, ui: dict, node_classes: dict) -> list[str]:
    """What the committed pair names that this host's node definitions lack: twin inputs its nodes do not
    define and UI outputs its nodes do not have. Empty on the host the files were generated on (and on
    newer ones); not empty on an older host."""
    unknown = [p for p in twin_problems(api, node_classes) if "is not defined by this host" in p or "no node type" in p]
    for node in ui["nodes"]:
        node_class = node_classes.get(node["type"])
        if node_class is None:
            continue
        have = _outputs(node_class)
        for slot, output in enumerate(node.get("outputs", [])):
            if slot >= len(have) or have[slot][0] != output["name"]:
                unknown.append(f"node {node['id']} {node['type']}: output {slot} {output['name']!r} is not defined by this host")
    return unknown


def read_back(ui_node: dict, node_class) -> dict:
    """The widget values a frontend whose host defines `node_class` reads from a UI node: its own widgets
    take `widgets_values` in order (both frontends restore by position); control widgets are left out."""
    values, read = list(ui_node.get("widgets_values", [])), {}
    position = 0

    def walk(spec: dict, prefix: str):
        nonlocal position
        for name, kind, options in _declared_inputs(spec):
            if not _is_widget(kind, options) or position >= len(values):
                continue
            full = prefix + name
            read[full] = values[position]
            position += 1
            if kind == "INT" and (options.get(CONTROL_WIDGET) or name in ("seed", "noise_seed")):
                position += 1
            if kind == DYNAMIC_COMBO:
                chosen = [o for o in options["options"] if o["key"] == read[full]]
                if chosen:
                    walk(chosen[0]["inputs"], full + ".")

    walk(node_class.INPUT_TYPES(), "")
    return read


def compatibility_problems(api: dict, ui: dict, node_classes: dict) -> list[str]:
    """What an older host checks of a UI file generated on a newer one: every node type exists, the links
    are the twin's (same source node and slot, same target input), each link leaves an output this host
    has, with the type the file says, and the widget values this host's frontend reads back by position
    are the twin's for every input this host defines."""
    problems = []
    by_id = {str(n["id"]): n for n in ui["nodes"]}
    if set(by_id) != set(api):
        problems.append(f"UI nodes {sorted(by_id, key=int)} are not the twin's {sorted(api, key=int)}")
        return problems
    want_links = {(src[0], src[1], node_id, name) for node_id, entry in api.items()
                  for name, src in entry["inputs"].items() if _is_link(src)}
    got_links = set()
    for link_id, source, slot, target, target_slot, kind in ui["links"]:
        name = by_id[str(target)]["inputs"][target_slot]["name"]
        got_links.add((str(source), slot, str(target), name))
        source_class = node_classes.get(by_id[str(source)]["type"])
        have = _outputs(source_class) if source_class else []
        if slot >= len(have) or have[slot][1] != kind:
            problems.append(f"link {link_id}: node {source} has no output {slot} of type {kind} on this host")
    if got_links != want_links:
        problems.append(f"links differ from the twin's: extra {sorted(got_links - want_links)}, "
                        f"missing {sorted(want_links - got_links)}")
    for node_id, entry in api.items():
        node_class = node_classes.get(entry["class_type"])
        if node_class is None:
            problems.append(f"node {node_id}: no node type {entry['class_type']} on this host")
            continue
        if by_id[node_id]["type"] != entry["class_type"]:
            problems.append(f"node {node_id} is a {by_id[node_id]['type']}, the twin's a {entry['class_type']}")
        read = read_back(by_id[node_id], node_class)
        for name, _ in widget_layout(node_class, entry["inputs"]):
            if name == CONTROL_WIDGET:
                continue
            if name not in read:
                problems.append(f"node {node_id} {entry['class_type']}: no value for widget {name!r}")
            elif name in entry["inputs"] and read[name] != entry["inputs"][name]:
                problems.append(f"node {node_id} {entry['class_type']}: widget {name!r} reads back "
                                f"{read[name]!r}, the twin says {entry['inputs'][name]!r}")
    return problems


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
