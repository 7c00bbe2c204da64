"""The pack in ComfyUI's real browser UI: headless Chromium (Debian's /usr/bin/chromium, driven by Playwright)
against a real `main.py --cpu` server serving the real frontend (comfyui-frontend-package).

Every test that looks at the graph runs in both renderers the frontend has: the classic LiteGraph canvas and,
where the frontend defines the `Comfy.VueNodes.Enabled` setting (frontend 1.32.9 and 1.49.6 both do), the Vue
"Nodes 2.0" renderer (detected from the page's own settings registry, never from a version string; without
it the nodes2 cases skip).

- the example workflows are listed as templates, and each one loads in the page with every node type
  registered, no node in an error state, and gives back exactly the API prompt of its API twin (on a host
  older than the one the UI files were generated on, the twin's inputs that host's nodes define; see
  tools/workflow_ui.py); saving it adds nothing to the pack's widget values;
- our web extension is listed, its imports resolve, it registers in the page, colours the pack's nodes
  (and only those) and adds the queue live view to the FIFO sampler nodes and the timeline to the FIFO
  Prompt Schedule nodes, as DOM widgets mounted in the node (Nodes 2.0) or over it (classic);
- every template has a thumbnail (`<name>.jpg`, what Browse Templates shows; written from the page's own
  classic rendering of the graph when FIFO_WRITE_THUMBNAILS=1);
- the prompt-schedule timeline (web/js/prompt_timeline.js) on the FIFO Prompt Schedule nodes shows the whole
  chain and its length at the sampler's fps, and dragging a boundary with the mouse changes a prompt's frames;
- the tiny-model demo template, queued from the page with a handful of frames, runs to the end, the page
  receives the server's `fifo_infinity.queue` messages and the widget draws them; screenshots of the graph,
  of the FIFO node and of the timeline, in each renderer, go to a temporary folder, or, with
  FIFO_WRITE_SCREENSHOTS=1, to benchmarks/results/browser_{graph,queue_widget,prompt_timeline}[_nodes2].png
  (the README shows two of the classic ones).

The server gets stand-ins (links to the reference tiny model) for the checkpoints the templates name that it
does not have (VideoCrafter2's `model.ckpt`, the VideoCrafter1 I2V checkpoint): frontend 1.49 marks a loader
whose model file the server lacks as an error (its missing-model check, test_a_missing_checkpoint_is_flagged),
as a user without the file should see it.

Chromium: FIFO_CHROMIUM or /usr/bin/chromium (never downloaded). Run: tools/run_tests.sh tests/test_browser.py
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import time
import urllib.parse

import numpy as np
import pytest
import requests

from conftest import PACK_DIR, comfy_root, load_api_workflow

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("FIFO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
VIEWPORT = {"width": 1600, "height": 1000}
RESULTS_DIR = os.path.join(PACK_DIR, "benchmarks", "results")
EXTENSION_FILE = os.path.join(PACK_DIR, "web", "js", "fifo_infinity.js")
EXTENSION_SCRIPTS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(PACK_DIR, "web", "js", "*.js")))
PACK_CATEGORY = "FIFO-Infinity"
QUEUE_WIDGET = "fifo_queue_view"
QUEUE_EVENT = "fifo_infinity.queue"
TIMELINE_WIDGET = "fifo_prompt_timeline"
OUR_WIDGETS = (QUEUE_WIDGET, TIMELINE_WIDGET)
THUMBNAIL_SIZE = (640, 400)

# The two renderers: the classic LiteGraph canvas, and Vue "Nodes 2.0" where the frontend has it.
NODES2_SETTING = "Comfy.VueNodes.Enabled"
MODES = ("classic", "nodes2")
SCREENSHOT_SUFFIX = {"classic": "", "nodes2": "_nodes2"}

EXAMPLES = sorted(os.path.splitext(os.path.basename(p))[0]
                  for p in glob.glob(os.path.join(PACK_DIR, "example_workflows", "*.json")))

# The tiny-model demo, queued from the browser with FIFO settings cut down so it runs in well under a minute
# on two shared CPU cores: the run time is dominated by the base clip (f*n DDIM steps) and the S - f warm-up
# iterations, not by the frame count, so f and n are reduced as well (queue of f*n + f/2 = 12 slots, 2 windows).
DEMO = "fifo_tiny_demo"
DEMO_SETTINGS = {"frames": 6, "video_length": 8, "num_partitions": 1}
DEMO_QUEUE_SLOTS = DEMO_SETTINGS["video_length"] * DEMO_SETTINGS["num_partitions"] + DEMO_SETTINGS["video_length"] // 2
DEMO_ITERATIONS = DEMO_SETTINGS["frames"] + DEMO_SETTINGS["video_length"] * (DEMO_SETTINGS["num_partitions"] - 1)

READY_JS = """() => !!(window.app && app.graph && app.canvas && window.LiteGraph && app.api && app.api.clientId
                      && LiteGraph.registered_node_types && LiteGraph.registered_node_types["KSampler"])"""

# Records every server message the page's api object dispatches that the tests look at.
LISTEN_JS = """() => {
  if (window.__fifoTest) return;
  window.__fifoTest = {events: []};
  for (const name of ["execution_start", "executing", "executed", "execution_success", "execution_error",
                      "execution_interrupted", "%s"]) {
    app.api.addEventListener(name, ({detail}) => window.__fifoTest.events.push({name, detail}));
  }
}""" % QUEUE_EVENT

# Switches the renderer through the setting a user flips, then waits until the graph's nodes are (Nodes 2.0)
# or are not (classic) DOM elements, and two frames more for the DOM widgets to be mounted.
MODE_JS = """async ([setting, on]) => {
  await app.extensionManager.setting.set(setting, on);
  const rendered = () => document.querySelectorAll("[data-node-id]").length;
  const want = () => on ? app.graph.nodes.length > 0 && rendered() >= app.graph.nodes.length : rendered() === 0;
  for (let t = 0; t < 200 && !want(); t++) await new Promise(r => setTimeout(r, 50));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  return {setting: app.extensionManager.setting.get(setting), rendered: rendered(), nodes: app.graph.nodes.length};
}"""

# Loads a workflow as Browse Templates does, lets the frontend finish what it does after a load (the renderer
# mounting nodes and widgets, 1.49's missing-model check setting `has_errors`), and reports what the page has.
LOAD_JS = """async ([url, name, nodes2]) => {
  const workflow = await (await fetch(url)).json();
  await app.loadGraphData(workflow, true, true, name, {showMissingNodesDialog: false, showMissingModelsDialog: false});
  const frames = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const rendered = () => document.querySelectorAll("[data-node-id]").length;
  for (let t = 0; nodes2 && t < 200 && rendered() < app.graph.nodes.length; t++) await new Promise(r => setTimeout(r, 50));
  await frames();
  await new Promise(r => setTimeout(r, 500));
  await frames();
  const prompt = await app.graphToPrompt();
  const saved = app.graph.serialize();
  const mounted = (node, widget) => {
    const element = (node.widgets ?? []).find(w => w.name === widget)?.element;
    if (!element) return null;
    const box = element.getBoundingClientRect();
    return {connected: element.isConnected, in_node: element.closest("[data-node-id]")?.dataset.nodeId ?? null,
            width: box.width, height: box.height};
  };
  return {
    template: workflow,
    nodes: app.graph.nodes.map(n => ({
      id: n.id, type: n.type, registered: !!LiteGraph.registered_node_types[n.type], has_errors: !!n.has_errors,
      color: n.color ?? null, bgcolor: n.bgcolor ?? null, widgets: (n.widgets ?? []).map(w => w.name),
      rendered: !!document.querySelector(`[data-node-id="${n.id}"]`),
      display_widgets: Object.fromEntries(%s.map(w => [w, mounted(n, w)]).filter(([, m]) => m))})),
    output: JSON.parse(JSON.stringify(prompt.output)),
    saved_widgets: Object.fromEntries(saved.nodes.map(n => [n.id, n.widgets_values ?? []])),
  };
}""" % json.dumps(list(OUR_WIDGETS))

# Fits the given nodes (all when ids is null) into the canvas and redraws at once.
FIT_JS = """([ids, margin]) => {
  const canvas = app.canvas, title = LiteGraph.NODE_TITLE_HEIGHT;
  const nodes = app.graph.nodes.filter(n => ids === null || ids.includes(String(n.id)));
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const n of nodes) {
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - title);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const rect = canvas.canvas.getBoundingClientRect();
  const left = 70, top = 80;   // keep clear of the side bar, menu bar and banners drawn over the canvas
  const width = rect.width - left - 2 * margin, height = rect.height - top - 2 * margin;
  const scale = Math.min(width / (x1 - x0), height / (y1 - y0), 1.5);
  canvas.ds.scale = scale;
  canvas.ds.offset[0] = (left + margin + (width - (x1 - x0) * scale) / 2) / scale - x0;
  canvas.ds.offset[1] = (top + margin + (height - (y1 - y0) * scale) / 2) / scale - y0;
  canvas.setDirty(true, true);
  canvas.draw(true, true);
  return scale;
}"""

# Screen rectangle [x, y, width, height] (CSS pixels) around every node, titles included.
NODES_BOX_JS = """() => {
  const canvas = app.canvas, ds = canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT;
  canvas.draw(true, true);
  const box = canvas.canvas.getBoundingClientRect();
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const n of app.graph.nodes) {
    x0 = Math.min(x0, n.pos[0]); y0 = Math.min(y0, n.pos[1] - title);
    x1 = Math.max(x1, n.pos[0] + n.size[0]); y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const sx = (x) => box.left + (x + ds.offset[0]) * ds.scale, sy = (y) => box.top + (y + ds.offset[1]) * ds.scale;
  return [sx(x0), sy(y0), (x1 - x0) * ds.scale, (y1 - y0) * ds.scale];
}"""

# Screen rectangles (CSS pixels) of a node (with its title: its DOM element in Nodes 2.0) and of one of our
# display widgets (its DOM element, in either renderer), and the widget's own width in CSS pixels.
RECT_JS = """async ([id, widgetName]) => {
  const canvas = app.canvas, ds = canvas.ds, title = LiteGraph.NODE_TITLE_HEIGHT;
  canvas.draw(true, true);
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const node = app.graph.getNodeById(Number(id));
  const rect = (r) => ({x: r.left, y: r.top, width: r.width, height: r.height});
  const nodeElement = document.querySelector(`[data-node-id="${id}"]`);
  let result;
  if (nodeElement) {
    result = {node: rect(nodeElement.getBoundingClientRect())};
  } else {
    const box = canvas.canvas.getBoundingClientRect();
    const x = box.left + (node.pos[0] + ds.offset[0]) * ds.scale, y = box.top + (node.pos[1] - title + ds.offset[1]) * ds.scale;
    result = {node: {x, y, width: node.size[0] * ds.scale, height: (node.size[1] + title) * ds.scale}};
  }
  const element = (node.widgets ?? []).find(w => w.name === widgetName)?.element;
  if (element && element.isConnected) {
    result.widget = rect(element.getBoundingClientRect());
    result.widget_css_width = element.clientWidth;
  }
  return result;
}"""


def _json(url):
    response = requests.get(url, timeout=30)
    response.raise_for_status()
    return response.json()


def _checkpoint_stand_ins(folder, model_folders):
    """Links under `folder` for every checkpoint the templates name that the server would not otherwise have
    (not in the test model folders, not bundled in the pack's models/): the page sees the names a user who
    followed the README would have. They point at the reference tiny model; the page never runs them."""
    have = set(os.listdir(os.path.join(PACK_DIR, "models")))
    for path in model_folders.values():
        if os.path.isdir(path):
            have |= set(os.listdir(path))
    stand_in = os.path.realpath(os.path.join(model_folders["checkpoints"], "tiny_vc2.safetensors"))
    os.makedirs(folder, exist_ok=True)
    for name in EXAMPLES:
        for entry in load_api_workflow(f"{name}.json").values():
            checkpoint = entry["inputs"].get("ckpt_name")
            if isinstance(checkpoint, str) and checkpoint not in have:
                os.symlink(stand_in, os.path.join(folder, checkpoint))
                have.add(checkpoint)
    return folder


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory, model_folders):
    """A real ComfyUI server with the real frontend (the API-only `server` fixture skips the frontend)."""
    import server_harness
    work_dir = tmp_path_factory.mktemp("browser_server")
    user_dir = work_dir / "user"
    user_dir.mkdir()
    folders = dict(model_folders, videocrafter=_checkpoint_stand_ins(str(work_dir / "videocrafter"), model_folders))
    instance = server_harness.ComfyServer(comfy_root(), str(work_dir), folders, frontend=True)
    # Its own --user-directory: the frontend stores its settings there, and must not write them into the host's
    # user/ folder (with COMFYUI_PATH, the user's own ComfyUI). ComfyServer has no argument for extra command
    # line options, so its Popen call gets the option appended while start() runs.
    popen = server_harness.subprocess.Popen
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(server_harness.subprocess, "Popen",
                      lambda command, *args, **kwargs: popen(command + ["--user-directory", str(user_dir)], *args, **kwargs))
        instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def pack_folder(browser_server):
    """The pack's folder name under custom_nodes, as the server reports it in /workflow_templates."""
    templates = _json(browser_server.url + "/workflow_templates")
    ours = [folder for folder, names in templates.items() if set(names) == set(EXAMPLES)]
    assert len(ours) == 1, f"no template folder lists exactly our examples {EXAMPLES}: {templates}"
    return ours[0]


@pytest.fixture(scope="module")
def object_info(browser_server):
    return _json(browser_server.url + "/object_info")


class PageLog:
    """Uncaught page errors and console errors, with the time they happened."""

    def __init__(self, page):
        self.entries = []
        page.on("pageerror", lambda error: self.entries.append((time.monotonic(), "pageerror", str(error))))
        page.on("console", lambda message: self.entries.append((time.monotonic(), message.type, message.text))
                if message.type == "error" else None)

    def since(self, start):
        return [(kind, text) for t, kind, text in self.entries if t >= start]

    def errors_since(self, start):
        """Page errors and console errors, except the browser's own failed-request lines (404s of optional
        user files, the offline release check), which name no URL and say nothing about the page's code."""
        return [(kind, text) for kind, text in self.since(start) if not text.startswith("Failed to load resource")]


# Settings of the fixture's own user directory, stored before the page opens: the classic LiteGraph canvas to
# start with (the `mode` fixture switches), no minimap over the screenshots, no first-run templates dialog
# covering the graph, and full detail (titles, widget text) at any zoom.
PAGE_SETTINGS = {NODES2_SETTING: False, "Comfy.Minimap.Visible": False, "Comfy.TutorialCompleted": True,
                 "LiteGraph.Canvas.MinFontSizeForLOD": 0}
GRAPH_VIEWPORT = {"width": 2400, "height": 1000}   # the demo graph is seven columns wide


def _store_settings(server):
    response = requests.post(server.url + "/settings", json=PAGE_SETTINGS, timeout=30)
    response.raise_for_status()
    stored = _json(server.url + "/settings")
    assert {k: stored.get(k) for k in PAGE_SETTINGS} == PAGE_SETTINGS, stored


@pytest.fixture(scope="module")
def page(browser_server):
    if not os.path.isfile(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (tools/setup_env.sh does) or set FIFO_CHROMIUM")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            _store_settings(browser_server)
            page = browser.new_page(viewport=VIEWPORT)
            page.log = PageLog(page)
            page.goto(browser_server.url + "/", wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_function(READY_JS, timeout=120_000, polling=250)
            page.evaluate(LISTEN_JS)
            # notifications stay out of the screenshots (1.32 answers the switch to Nodes 2.0 with a "Prefer the
            # legacy design?" toast at the bottom of the graph)
            page.add_style_tag(content=".p-toast { display: none !important; }")
            assert not page.evaluate(f"() => app.extensionManager.setting.get('{NODES2_SETTING}')")
            # the feature, from the frontend's own registry of the settings it defines
            page.has_nodes2 = page.evaluate(f"() => !!app.ui.settings.settingsLookup?.['{NODES2_SETTING}']")
            page.mode = "classic"
            yield page
        finally:
            browser.close()


def _set_mode(page, mode):
    if page.mode == mode:
        return
    state = page.evaluate(MODE_JS, [NODES2_SETTING, mode == "nodes2"])
    assert state["setting"] == (mode == "nodes2"), state
    if mode == "nodes2":
        assert state["rendered"] >= state["nodes"] > 0, f"Nodes 2.0 switched on but the graph is not drawn as DOM nodes: {state}"
    else:
        assert state["rendered"] == 0, f"classic canvas switched on but DOM nodes remain: {state}"
    page.mode = mode


@pytest.fixture(scope="module", params=MODES)
def mode(request, page):
    """The renderer the test runs in (module-scoped, so each one is switched on once): the classic canvas, or
    Nodes 2.0 where the frontend has it (else the case skips)."""
    if request.param == "nodes2" and not page.has_nodes2:
        pytest.skip(f"this frontend has no Nodes 2.0 (no {NODES2_SETTING} setting)")
    _set_mode(page, request.param)
    yield request.param
    _set_mode(page, "classic")


@pytest.fixture(scope="module")
def screenshot_dir(tmp_path_factory):
    """Where the screenshots go: benchmarks/results with FIFO_WRITE_SCREENSHOTS=1 (the committed ones), else a
    temporary folder, so that a test run leaves the clone unchanged."""
    if os.environ.get("FIFO_WRITE_SCREENSHOTS"):
        os.makedirs(RESULTS_DIR, exist_ok=True)
        return RESULTS_DIR
    return str(tmp_path_factory.mktemp("screenshots"))


def _close_dialogs(page):
    for _ in range(5):
        if not page.locator(".p-dialog").count():
            return
        page.keyboard.press("Escape")
        page.wait_for_timeout(300)
    assert not page.locator(".p-dialog").count(), "a dialog stays open over the graph"


def _load(page, browser_server, pack_folder, name, url=None):
    url = url or f"/api/workflow_templates/{urllib.parse.quote(pack_folder)}/{name}.json"
    return page.evaluate(LOAD_JS, [url, name, page.mode == "nodes2"])


def _pack_colors():
    """The colours web/js/fifo_infinity.js gives the pack's nodes (read from the file, one source of truth)."""
    with open(EXTENSION_FILE) as f:
        match = re.search(r'COLORS\s*=\s*\{\s*color:\s*"([^"]+)",\s*bgcolor:\s*"([^"]+)"\s*\}', f.read())
    assert match, "web/js/fifo_infinity.js: no `COLORS = { color: ..., bgcolor: ... }`"
    return match.group(1), match.group(2)


def _is_fifo_sampler(node_type, info):
    return node_type in ("FIFOInfinityFIFOSampler", "FIFOInfinityFIFOSamplerAllInOne") and not info.get("output_node")


def _host_input_names(info) -> set[str]:
    """Every input name a node of this host defines (object_info), a dynamic combo's nested inputs named
    `<combo>.<input>` as the frontend sends them."""
    names = set()

    def walk(spec, prefix):
        for section in ("required", "optional"):
            for name, entry in (spec.get(section) or {}).items():
                names.add(prefix + name)
                options = entry[1] if isinstance(entry, list) and len(entry) > 1 and isinstance(entry[1], dict) else {}
                if entry[0] == "COMFY_DYNAMICCOMBO_V3":
                    for option in options.get("options", []):
                        walk(option.get("inputs") or {}, prefix + name + ".")

    walk(info["input"], "")
    return names


def _twin_as_host_sees_it(api, object_info):
    """The API twin restricted to the inputs this host's nodes define: all of it on the host the UI files were
    generated on (tests/test_workflows.py holds the twin to that), less the newer inputs on an older host,
    whose server ignores them and whose frontend cannot send them."""
    return {i: {"class_type": e["class_type"],
                "inputs": {k: v for k, v in e["inputs"].items() if k in _host_input_names(object_info[e["class_type"]])}}
            for i, e in api.items()}


# --- server side of the UI ---------------------------------------------------------------------------------

def test_examples_are_browsable_templates(browser_server, pack_folder):
    assert EXAMPLES, "no example workflows in example_workflows/"
    for name in EXAMPLES:
        served = _json(f"{browser_server.url}/api/workflow_templates/{urllib.parse.quote(pack_folder)}/{name}.json")
        with open(os.path.join(PACK_DIR, "example_workflows", f"{name}.json")) as f:
            assert served == json.load(f), f"{name}.json is served with different content"
        assert os.path.isfile(os.path.join(PACK_DIR, "example_workflows", "api", f"{name}.json")), \
            f"{name}: no API twin in example_workflows/api/"


@pytest.mark.parametrize("script", EXTENSION_SCRIPTS)
def test_extension_is_listed_and_its_imports_resolve(browser_server, pack_folder, script):
    """ComfyUI serves web/js/x.js as /extensions/<pack>/js/x.js; every relative import in it must resolve
    from that URL (the frontend's scripts live at /scripts/, three levels up), or the browser drops the file.
    A script that registers an extension imports app.js for it."""
    listed = _json(browser_server.url + "/extensions")
    url = f"/extensions/{pack_folder}/js/{script}"
    assert url in listed, f"{url} not in /extensions: {[u for u in listed if 'fifo' in u.lower()]}"
    response = requests.get(browser_server.url + url, timeout=30)
    assert response.status_code == 200
    with open(os.path.join(PACK_DIR, "web", "js", script)) as f:
        assert response.text == f.read()
    specifiers = re.findall(r'^\s*import\s[^;]*?from\s+"([^"]+)"', response.text, flags=re.M)
    if "registerExtension(" in response.text:
        assert "../../../scripts/app.js" in specifiers, f"{script} registers an extension without importing app.js"
    unresolved = {}
    for specifier in specifiers:
        target = urllib.parse.urljoin(browser_server.url + url, specifier)
        status = requests.get(target, timeout=30).status_code
        if status != 200:
            unresolved[specifier] = f"{urllib.parse.urlparse(target).path} -> HTTP {status}"
    assert not unresolved, f"imports of {url} that do not resolve: {unresolved}"


# --- in the page -------------------------------------------------------------------------------------------

def test_extension_registers_in_the_page(page):
    names = page.evaluate("() => app.extensions.map(e => e.name)")
    errors = [text for _, text in page.log.since(0) if "fifo" in text.lower()]
    assert {"fifo_infinity.ui", "fifo_infinity.prompt_timeline"} <= set(names), \
        f"our extensions did not register; page errors about them: {errors}"
    assert not errors, errors


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_workflow_loads_in_the_page(page, mode, browser_server, pack_folder, object_info, name):
    start = time.monotonic()
    loaded = _load(page, browser_server, pack_folder, name)
    nodes = {str(n["id"]): n for n in loaded["nodes"]}
    template_ids = {str(n["id"]) for n in loaded["template"]["nodes"]}
    assert set(nodes) == template_ids, f"page has nodes {sorted(nodes)}, template {sorted(template_ids)}"

    missing = sorted({n["type"] for n in nodes.values() if not n["registered"] or n["type"] not in object_info})
    assert not missing, f"{name}: node types missing in the browser: {missing}"
    red = {i: n["type"] for i, n in nodes.items() if n["has_errors"]}
    assert not red, f"{name} ({mode}): nodes in an error state: {red}"
    not_drawn = sorted(i for i, n in nodes.items() if n["rendered"] != (mode == "nodes2"))
    assert not not_drawn, f"{name} ({mode}): nodes {not_drawn} {'not ' if mode == 'nodes2' else ''}drawn as DOM nodes"

    # what Queue would send is exactly the API twin (the prompt the server tests run), as far as this host's
    # nodes define its inputs
    want = _twin_as_host_sees_it(load_api_workflow(f"{name}.json"), object_info)
    got = {i: {"class_type": e["class_type"], "inputs": e["inputs"]} for i, e in loaded["output"].items()}
    differences = {i: {"page": got.get(i), "api twin": want.get(i)} for i in sorted(set(got) | set(want))
                   if got.get(i) != want.get(i)}
    assert not differences, f"{name} ({mode}): the page's prompt differs from example_workflows/api/{name}.json: " \
                            f"{json.dumps(differences)[:3000]}"

    # saving the loaded workflow gives back our nodes' widget values: the queue view and the timeline are
    # display-only and must not add a value (stock nodes are left out: e.g. LoadImage's upload button saves a
    # value of its own)
    template_widgets = {str(n["id"]): n.get("widgets_values", []) for n in loaded["template"]["nodes"]}
    saved_widgets = {str(i): v for i, v in loaded["saved_widgets"].items()}
    changed = {i: {"template": template_widgets[i], "saved": saved_widgets.get(i)} for i in template_widgets
               if object_info[nodes[i]["type"]]["category"].startswith(PACK_CATEGORY)
               and saved_widgets.get(i) != template_widgets[i]}
    assert not changed, f"{name}: saving the loaded workflow changes widget values: {json.dumps(changed)[:2000]}"

    color, bgcolor = _pack_colors()
    for i, node in nodes.items():
        info = object_info[node["type"]]
        ours = info["category"].startswith(PACK_CATEGORY)
        if ours:
            assert (node["color"], node["bgcolor"]) == (color, bgcolor), f"{name}: pack node {i} {node['type']} " \
                f"has colours {node['color']}/{node['bgcolor']}, not the pack's {color}/{bgcolor}"
        else:
            assert node["color"] != color and node["bgcolor"] != bgcolor, \
                f"{name}: stock node {i} {node['type']} got the pack's colours"
        has_view = QUEUE_WIDGET in node["widgets"]
        assert has_view == (ours and _is_fifo_sampler(node["type"], info)), \
            f"{name}: node {i} {node['type']} {'has' if has_view else 'lacks'} the queue view"
        assert (TIMELINE_WIDGET in node["widgets"]) == (node["type"] == "FIFOInfinityFIFOPromptSchedule"), \
            f"{name}: node {i} {node['type']}: the prompt timeline belongs on FIFO Prompt Schedule nodes only"
        # our widgets are DOM elements: inside their node's element in Nodes 2.0, over the canvas in classic
        for widget in OUR_WIDGETS:
            if widget not in node["widgets"]:
                continue
            mounted = node["display_widgets"].get(widget)
            assert mounted and mounted["connected"], f"{name} ({mode}): node {i}'s {widget} is not a mounted DOM widget"
            assert mounted["in_node"] == (i if mode == "nodes2" else None), \
                f"{name} ({mode}): node {i}'s {widget} is mounted in node {mounted['in_node']}"

    assert not page.log.errors_since(start), f"{name}: errors in the page while loading: {page.log.errors_since(start)}"
    if os.environ.get("FIFO_WRITE_THUMBNAILS") and mode == "classic":
        _write_thumbnail(page, name)


def test_a_missing_checkpoint_is_flagged(page, browser_server, pack_folder):
    """Why the server has stand-in checkpoints: a frontend with the node-error flags of its missing-model check
    (the `Comfy.RightSidePanel.ShowErrorsTab` setting; 1.49 has it, 1.32 does not) shows a loader whose file
    the server lacks in an error state, and the same load with a file it has shows none (so _load waits
    long enough for the check)."""
    if not page.evaluate("() => !!app.ui.settings.settingsLookup?.['Comfy.RightSidePanel.ShowErrorsTab']"):
        pytest.skip("this frontend does not flag nodes with missing models")
    template = f"/api/workflow_templates/{urllib.parse.quote(pack_folder)}/videocrafter2_clip.json"
    script = """async ([url, checkpoint]) => {
      const workflow = await (await fetch(url)).json();
      workflow.nodes.find(n => n.type === "FIFOInfinityCheckpointLoader").widgets_values[0] = checkpoint;
      return URL.createObjectURL(new Blob([JSON.stringify(workflow)], {type: "application/json"}));
    }"""
    for checkpoint, red in (("no_such_videocrafter2.ckpt", True), ("model.ckpt", False)):
        url = page.evaluate(script, [template, checkpoint])
        loaded = _load(page, browser_server, pack_folder, "missing_checkpoint", url=url)
        loader = next(n for n in loaded["nodes"] if n["type"] == "FIFOInfinityCheckpointLoader")
        assert loader["has_errors"] == red, f"ckpt_name {checkpoint!r}: has_errors {loader['has_errors']}"


def _write_thumbnail(page, name):
    """example_workflows/<name>.jpg: the graph as the page draws it, fitted, scaled to THUMBNAIL_SIZE."""
    from PIL import Image
    _close_dialogs(page)
    page.set_viewport_size(GRAPH_VIEWPORT)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.evaluate(FIT_JS, [None, 60])
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    box = page.evaluate(NODES_BOX_JS)
    png = page.screenshot(clip={"x": box[0] - 12, "y": box[1] - 12, "width": box[2] + 24, "height": box[3] + 24})
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.thumbnail((THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2))
    canvas = Image.new("RGB", (THUMBNAIL_SIZE[0] * 2, THUMBNAIL_SIZE[1] * 2), image.getpixel((2, 2)))
    canvas.paste(image, ((canvas.width - image.width) // 2, (canvas.height - image.height) // 2))
    canvas.resize(THUMBNAIL_SIZE, Image.LANCZOS).save(
        os.path.join(PACK_DIR, "example_workflows", f"{name}.jpg"), quality=85)
    page.set_viewport_size(VIEWPORT)


def test_every_template_has_a_thumbnail(browser_server, pack_folder):
    from PIL import Image
    for name in EXAMPLES:
        url = f"{browser_server.url}/api/workflow_templates/{urllib.parse.quote(pack_folder)}/{name}.jpg"
        response = requests.get(url, timeout=30)
        assert response.status_code == 200, f"{name}: no thumbnail at {url} (run with FIFO_WRITE_THUMBNAILS=1)"
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.format == "JPEG" and image.size == THUMBNAIL_SIZE, (name, image.format, image.size)
            assert np.asarray(image.convert("L")).std() > 5, f"{name}: the thumbnail is blank"


def _fit(page, ids, margin):
    page.evaluate(FIT_JS, [ids, margin])
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def test_prompt_timeline_edits_the_schedule(page, mode, browser_server, pack_folder, screenshot_dir):
    _load(page, browser_server, pack_folder, "fifo_multi_prompt")
    api = load_api_workflow("fifo_multi_prompt.json")
    chain = [i for i in ("6", "7", "8")]
    assert all(api[i]["class_type"] == "FIFOInfinityFIFOPromptSchedule" for i in chain)
    schedule = page.evaluate("(id) => window.fifoInfinity.collectSchedule(app.graph.getNodeById(id))", 7)
    texts = [api[api[i]["inputs"]["conditioning"][0]]["inputs"]["text"] for i in chain]
    assert [s["text"] for s in schedule["segments"]] == texts
    assert [s["frames"] for s in schedule["segments"]] == [api[i]["inputs"]["frames"] for i in chain]
    assert [s["transition"] for s in schedule["segments"]] == [0, 16, 0]
    assert schedule["total"] == 192 and schedule["fps"] == api["9"]["inputs"]["fps"] and schedule["fps_from_sampler"]
    assert schedule["seconds"] == 192 / api["9"]["inputs"]["fps"]

    # drag the end of prompt 1 (frame 64) to about frame 32 with the mouse, on the first schedule node
    _close_dialogs(page)
    _fit(page, ["6"], 40)
    rect = page.evaluate(RECT_JS, ["6", TIMELINE_WIDGET])
    assert "widget" in rect, f"the timeline is not shown on the FIFO Prompt Schedule node ({mode})"
    widget = rect["widget"]
    css_width = rect["widget_css_width"]
    scale = widget["width"] / css_width                      # screen pixels per widget pixel (the zoom)
    x_of = lambda frame: page.evaluate("([id, frame, width]) => window.fifoInfinity.frameX(app.graph.getNodeById(id), frame, width)",
                                       [6, frame, css_width])
    boundary, target = x_of(64), x_of(32)
    assert page.evaluate("([id, x, w]) => window.fifoInfinity.boundaryAt(app.graph.getNodeById(id), x, w)",
                         [6, boundary, css_width]) == 0
    y = widget["y"] + 20 * scale
    boundary_x, target_x = widget["x"] + boundary * scale, widget["x"] + target * scale
    position = page.evaluate("() => [...app.graph.getNodeById(6).pos]")
    page.mouse.move(boundary_x, y)
    page.mouse.down()
    page.mouse.move((boundary_x + target_x) / 2, y, steps=4)
    page.mouse.move(target_x, y, steps=4)
    page.mouse.up()
    frames = page.evaluate("() => app.graph.getNodeById(6).widgets.find(w => w.name === 'frames').value")
    assert abs(frames - 32) <= 2, f"dragging the boundary to frame 32 set frames = {frames} ({mode})"
    assert page.evaluate("() => [...app.graph.getNodeById(6).pos]") == position, "the drag moved the node"
    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    assert prompt["6"]["inputs"]["frames"] == frames and TIMELINE_WIDGET not in prompt["6"]["inputs"]
    after = page.evaluate("(id) => window.fifoInfinity.collectSchedule(app.graph.getNodeById(id))", 8)
    assert after["total"] == 128 + frames
    if mode == "nodes2":   # the Vue node shows the new value in its own frames widget
        page.wait_for_function("""(frames) => [...document.querySelectorAll('[data-node-id="6"] input')]
                                  .some(i => Number(i.value) === frames)""", arg=frames, timeout=10_000)
    _fit(page, ["6", "7", "8"], 30)
    page.wait_for_timeout(400)   # the other nodes' timelines follow within one poll
    rect = page.evaluate(RECT_JS, ["6", TIMELINE_WIDGET])
    page.screenshot(path=os.path.join(screenshot_dir, f"browser_prompt_timeline{SCREENSHOT_SUFFIX[mode]}.png"), clip=rect["node"])


def _saturated_pixels(png: bytes) -> int:
    """Pixels of clearly coloured paint (HSV saturation > 0.4, value > 0.3): the queue bars, not text or background."""
    from PIL import Image
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.float32) / 255
    high, low = rgb.max(-1), rgb.min(-1)
    saturation = np.where(high > 0, (high - low) / np.maximum(high, 1e-6), 0)
    return int(((saturation > 0.4) & (high > 0.3)).sum())


def _read_video_frames(path):
    import av
    with av.open(path) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_tiny_demo_queued_from_the_page(page, mode, browser_server, pack_folder, object_info, screenshot_dir):
    loaded = _load(page, browser_server, pack_folder, DEMO)
    fifo = [n for n in loaded["nodes"] if _is_fifo_sampler(n["type"], object_info[n["type"]])]
    assert len(fifo) == 1, f"{DEMO}: expected one FIFO sampler node, found {[n['type'] for n in fifo]}"
    fifo_id = str(fifo[0]["id"])
    assert QUEUE_WIDGET in fifo[0]["widgets"], f"the FIFO node has no {QUEUE_WIDGET} widget: {fifo[0]['widgets']}"
    loader = [n for n in loaded["nodes"] if n["type"] == "FIFOInfinityCheckpointLoader"]
    ckpt = page.evaluate("""(id) => { const w = app.graph.getNodeById(id).widgets.find(w => w.name === "ckpt_name");
                                      return [w.value, w.options.values]; }""", loader[0]["id"])
    assert ckpt[0] == "fifo_infinity_tiny_vc2.safetensors" and ckpt[0] in ckpt[1], \
        f"the demo's loader does not offer the bundled model: value {ckpt[0]!r}, choices {ckpt[1]}"

    # a seed of its own per renderer: the server would otherwise answer the second run from its cache,
    # without running the sampler (and without queue messages)
    settings = dict(DEMO_SETTINGS, seed=1000 + MODES.index(mode))
    page.evaluate("""([id, settings]) => {
      const node = app.graph.getNodeById(Number(id));
      for (const [name, value] of Object.entries(settings)) node.widgets.find(w => w.name === name).value = value;
      app.canvas.setDirty(true, true);
    }""", [fifo_id, settings])
    _close_dialogs(page)
    _fit(page, [fifo_id], 40)
    rect = page.evaluate(RECT_JS, [fifo_id, QUEUE_WIDGET])
    assert "widget" in rect, f"the queue view is not shown on the FIFO node ({mode})"
    before = _saturated_pixels(page.screenshot(clip=rect["widget"]))

    # Queue exactly as the Run button does; the POST carries the page's client id, so the server's
    # progress messages come back to this page.
    events_before = page.evaluate("() => window.__fifoTest.events.length")
    with page.expect_response(lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST",
                              timeout=60_000) as posted:
        page.evaluate("() => { app.queuePrompt(0, 1); }")
    response = posted.value
    assert response.status == 200, f"prompt refused: {response.text()[:2000]}"
    prompt_id = response.json()["prompt_id"]
    request = json.loads(response.request.post_data)
    assert request["client_id"] == page.evaluate("() => app.api.clientId")
    for name, value in settings.items():
        assert request["prompt"][fifo_id]["inputs"][name] == value

    started = time.monotonic()
    entry = browser_server.wait(prompt_id, timeout=240)
    elapsed = time.monotonic() - started
    assert entry["status"]["status_str"] == "success", \
        f"the demo failed: {json.dumps(entry['status'])[:3000]}\n{browser_server.tail()}"

    page.wait_for_function("""(id) => window.__fifoTest.events.some(
        e => e.name === "execution_success" && e.detail.prompt_id === id)""", arg=prompt_id, timeout=30_000)
    events = page.evaluate("(start) => window.__fifoTest.events.slice(start)", events_before)
    # ("executing" carries a bare node id; the other events a dict, with the prompt id except our queue message)
    mine = [e for e in events if isinstance(e["detail"], dict) and e["detail"].get("prompt_id") in (None, prompt_id)]
    assert not [e for e in mine if e["name"] in ("execution_error", "execution_interrupted")]
    executed = {e["detail"]["node"] for e in mine if e["name"] == "executed"}

    # the live queue view's messages reached the page, for the FIFO node, ending on the last frame
    queue = [e["detail"] for e in mine if e["name"] == QUEUE_EVENT]
    assert queue, f"no {QUEUE_EVENT} message reached the page (events: {sorted({e['name'] for e in mine})})"
    assert {m["node"] for m in queue} == {fifo_id}
    last = queue[-1]
    assert last["frames_done"] == last["frames_total"] == DEMO_SETTINGS["frames"], last
    assert last["iteration"] == last["iterations"] - 1 and last["iterations"] == DEMO_ITERATIONS, last
    assert len(last["timesteps"]) == DEMO_QUEUE_SLOTS and all(0 <= t <= 999 for t in last["timesteps"])
    assert max(last["timesteps"]) > min(last["timesteps"]), "every queue slot at the same noise level"
    assert len(last["windows"]) == 2 * DEMO_SETTINGS["num_partitions"]
    assert all(0 <= a < b <= DEMO_QUEUE_SLOTS and b - a == DEMO_SETTINGS["video_length"] for a, b in last["windows"])
    frames_done = [m["frames_done"] for m in queue]
    assert frames_done == sorted(frames_done), f"frames_done goes backwards: {frames_done}"

    # the outputs: the mp4 of SaveVideo holds the requested frames, upscaled 4x by the demo
    video_nodes = [i for i, e in request["prompt"].items() if e["class_type"] == "SaveVideo"]
    assert video_nodes and set(video_nodes) <= executed
    files = browser_server.output_files(entry, video_nodes[0], kind="images")
    assert len(files) == 1 and files[0].endswith(".mp4"), files
    frames = _read_video_frames(files[0])
    assert len(frames) == DEMO_SETTINGS["frames"] and frames[0].shape == (256, 256, 3)
    assert np.std(np.stack(frames).astype(np.float32)) > 1.0, "the demo video is a flat colour"

    # the widget drew the server's queue: coloured bars where there were none before the run
    _close_dialogs(page)
    _fit(page, [fifo_id], 40)
    rect = page.evaluate(RECT_JS, [fifo_id, QUEUE_WIDGET])
    after = _saturated_pixels(page.screenshot(clip=rect["widget"]))
    assert after > 20 * max(before, 10), f"queue view shows no bars after the run ({mode}: {before} -> {after} coloured pixels)"

    suffix = SCREENSHOT_SUFFIX[mode]
    widget_png = os.path.join(screenshot_dir, f"browser_queue_widget{suffix}.png")
    page.screenshot(path=widget_png, clip=rect["node"])
    page.set_viewport_size(GRAPH_VIEWPORT)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    _fit(page, None, 30)
    graph_png = os.path.join(screenshot_dir, f"browser_graph{suffix}.png")
    page.screenshot(path=graph_png)
    page.set_viewport_size(VIEWPORT)
    from PIL import Image
    for path in (widget_png, graph_png):
        with Image.open(path) as image:
            assert image.size[0] > 200 and image.size[1] > 150, (path, image.size)
    assert elapsed < 120, f"the cut-down demo took {elapsed:.0f} s"
    assert not [e for e in page.log.errors_since(started) if e[0] == "pageerror"], page.log.errors_since(started)
