// FIFO-Infinity browser extension: one colour scheme for the pack's nodes, and a live view of the FIFO queue
// fed by the server's "fifo_infinity.queue" messages (see bridge/fifo_progress.py). The view is a display-only
// DOM widget (display_widget.js), so it shows in the classic canvas and in the Vue "Nodes 2.0" renderer.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";
import { addDisplayWidget } from "./display_widget.js";

const PACK_CATEGORY = "FIFO-Infinity";
// The nodes that run a FIFO queue (nodes/fifo.py) and show its live view.
const QUEUE_VIEW_NODES = new Set(["FIFOInfinityFIFOSampler", "FIFOInfinityFIFOSamplerAllInOne"]);
const COLORS = { color: "#2a3f5f", bgcolor: "#1c2a3f" };
const QUEUE_EVENT = "fifo_infinity.queue";
const QUEUE_WIDGET = "fifo_queue_view";
const VIEW_HEIGHT = 100;
const queueStates = new Map();   // node id (string) -> the latest queue message for it
const queueViews = new Set();    // { node, view } of every queue view

function isPackNode(nodeData) {
  return typeof nodeData?.category === "string" && nodeData.category.startsWith(PACK_CATEGORY);
}

function formatSeconds(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "?";
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  return m > 0 ? `${m} min ${s} s` : `${s} s`;
}

// Draws one bar per queue slot (height = noise level, timestep / 999), the windows being denoised,
// and a line of text: frames done / total, estimated time left.
function drawQueue(ctx, width, state) {
  const margin = 4, height = VIEW_HEIGHT - 30, inner = width - 2 * margin;
  ctx.fillStyle = "#0d1420";
  ctx.fillRect(margin, 0, inner, height + 22);
  const timesteps = state?.timesteps ?? [];
  const slots = timesteps.length;
  if (slots > 0) {
    const barWidth = inner / slots;
    (state.windows ?? []).forEach(([start, end], index) => {
      ctx.fillStyle = index % 2 ? "rgba(255,200,60,0.18)" : "rgba(120,200,255,0.18)";
      ctx.fillRect(margin + start * barWidth, 0, (end - start) * barWidth, height);
    });
    timesteps.forEach((t, i) => {
      const level = Math.max(0.02, t / 999);
      ctx.fillStyle = i === state.popped_slot ? "#ffd24a" : `hsl(${210 - 170 * level}, 70%, ${35 + 30 * level}%)`;
      ctx.fillRect(margin + i * barWidth + 0.5, height * (1 - level), Math.max(1, barWidth - 1), height * level);
    });
  }
  ctx.fillStyle = "#dde6f5";
  ctx.font = "12px sans-serif";
  const text = state
    ? `frames ${state.frames_done} / ${state.frames_total}` +
      `   iteration ${state.iteration + 1} / ${state.iterations}` +
      `   left ~${formatSeconds(state.seconds_left)}`
    : "queue: waiting for the sampler";
  ctx.fillText(text, margin + 4, height + 16);
}

function addQueueWidget(node) {
  const stateOf = () => queueStates.get(String(node.id));
  const view = addDisplayWidget(node, {
    name: QUEUE_WIDGET,
    height: VIEW_HEIGHT,
    paint: (ctx, width) => drawQueue(ctx, width, stateOf()),
    signature: () => JSON.stringify(stateOf() ?? null),
  });
  queueViews.add({ node, view });
  const onRemove = view.widget.onRemove;
  view.widget.onRemove = function () {
    for (const entry of queueViews) if (entry.node === node) queueViews.delete(entry);
    return onRemove?.apply(this, arguments);
  };
  node.setSize([Math.max(node.size[0], 360), node.computeSize()[1]]);
}

app.registerExtension({
  name: "fifo_infinity.ui",

  async setup() {
    api.addEventListener(QUEUE_EVENT, ({ detail }) => {
      queueStates.set(String(detail.node), detail);
      for (const { node, view } of queueViews) if (String(node.id) === String(detail.node)) view.refresh();
    });
  },

  // a workflow being loaded: the last run's queue states belong to the graph it replaces
  beforeConfigureGraph() {
    queueStates.clear();
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isPackNode(nodeData)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.color = COLORS.color;
      this.bgcolor = COLORS.bgcolor;
      if (nodeData.output_node !== true && QUEUE_VIEW_NODES.has(nodeData.name)) {
        addQueueWidget(this);
      }
      return result;
    };
  },
});
