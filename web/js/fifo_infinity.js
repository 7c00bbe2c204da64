// FIFO-Infinity browser extension: one colour scheme for the pack's nodes, and a live view of the FIFO queue
// fed by the server's "fifo_infinity.queue" messages (see nodes/fifo_progress.py).
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const PACK_CATEGORY = "FIFO-Infinity";
const COLORS = { color: "#2a3f5f", bgcolor: "#1c2a3f" };
const QUEUE_EVENT = "fifo_infinity.queue";
const queueViews = new Map();   // node id (string) -> view state

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
function drawQueue(ctx, node, widgetWidth, y, state) {
  const margin = 10, height = 70, width = widgetWidth - 2 * margin;
  ctx.save();
  ctx.fillStyle = "#0d1420";
  ctx.fillRect(margin, y, width, height + 22);
  const timesteps = state?.timesteps ?? [];
  const slots = timesteps.length;
  if (slots > 0) {
    const barWidth = width / slots;
    (state.windows ?? []).forEach(([start, end], index) => {
      ctx.fillStyle = index % 2 ? "rgba(255,200,60,0.18)" : "rgba(120,200,255,0.18)";
      ctx.fillRect(margin + start * barWidth, y, (end - start) * barWidth, height);
    });
    timesteps.forEach((t, i) => {
      const level = Math.max(0.02, t / 999);
      ctx.fillStyle = i === state.popped_slot ? "#ffd24a" : `hsl(${210 - 170 * level}, 70%, ${35 + 30 * level}%)`;
      ctx.fillRect(margin + i * barWidth + 0.5, y + height * (1 - level), Math.max(1, barWidth - 1), height * level);
    });
  }
  ctx.fillStyle = "#dde6f5";
  ctx.font = "12px sans-serif";
  const text = state
    ? `frames ${state.frames_done} / ${state.frames_total}` +
      `   iteration ${state.iteration + 1} / ${state.iterations}` +
      `   left ~${formatSeconds(state.seconds_left)}`
    : "queue: waiting for the sampler";
  ctx.fillText(text, margin + 4, y + height + 16);
  ctx.restore();
}

function addQueueWidget(node) {
  const widget = {
    name: "fifo_queue_view",
    type: "fifo_queue_view",
    value: null,
    serialize: false,                 // display only: not saved in the workflow, never part of the prompt
    options: { serialize: false },
    draw(ctx, node, widgetWidth, y) { drawQueue(ctx, node, widgetWidth, y, queueViews.get(String(node.id))); },
    computeSize(width) { return [width, 100]; },
  };
  node.addCustomWidget(widget);
  node.setSize([Math.max(node.size[0], 360), node.computeSize()[1]]);
}

app.registerExtension({
  name: "fifo_infinity.ui",

  async setup() {
    api.addEventListener(QUEUE_EVENT, ({ detail }) => {
      queueViews.set(String(detail.node), detail);
      app.graph?.setDirtyCanvas(true, false);
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!isPackNode(nodeData)) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      this.color = COLORS.color;
      this.bgcolor = COLORS.bgcolor;
      if (nodeData.output_node !== true && /FIFO/.test(nodeData.name) && /Sampler/.test(nodeData.name)) {
        addQueueWidget(this);
      }
      return result;
    };
  },
});
