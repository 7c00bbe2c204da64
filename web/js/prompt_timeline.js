// FIFO-Infinity prompt-schedule editor: on every FIFO Prompt Schedule node, a timeline of the whole chain of
// prompts (first to last), one segment per prompt with its text and frame count, the transitions as blends,
// and the total length in frames and seconds at the fps of the FIFO sampler the chain feeds (8 if it has none).
// Drag the boundary at the end of a segment to change that prompt's frame count (its node's `frames` widget);
// the widget is display-only and adds nothing to the saved workflow or the prompt.
import { app } from "../../../scripts/app.js";

const SCHEDULE_NODE = "FIFOPromptSchedule";
const WIDGET = "fifo_prompt_timeline";
const DEFAULT_FPS = 8;
const MARGIN = 10, BAR_HEIGHT = 34, HEIGHT = 70, GRAB_PIXELS = 6;
const SEGMENT_COLORS = ["#3d6fb6", "#b6703d", "#4f9a5b", "#8c57b0", "#b0a13d", "#3da5b0"];

function widgetValue(node, name) {
  return node?.widgets?.find((w) => w.name === name)?.value;
}

function inputNode(node, name) {
  const slot = node?.findInputSlot?.(name);
  return slot === undefined || slot < 0 ? null : node.getInputNode(slot);
}

function targets(node) {
  const out = [];
  for (const output of node?.outputs ?? []) {
    for (const linkId of output.links ?? []) {
      const link = app.graph.links instanceof Map ? app.graph.links.get(linkId) : app.graph.links[linkId];
      const target = link && app.graph.getNodeById(link.target_id);
      if (target) out.push(target);
    }
  }
  return out;
}

// The prompt text feeding a schedule node: the nearest upstream node with a `text` widget (CLIPTextEncode),
// following the first input at each step; the node's title otherwise.
function promptText(node) {
  let current = inputNode(node, "conditioning");
  for (let depth = 0; current && depth < 6; depth++) {
    const text = widgetValue(current, "text");
    if (typeof text === "string") return text || "(empty prompt)";
    current = current.inputs?.length ? current.getInputNode(0) : null;
  }
  return current?.title ?? "(not connected)";
}

// The chain of schedule nodes through `node`, first prompt first, and the fps of the sampler it feeds.
export function collectSchedule(node) {
  let first = node;
  const seen = new Set([node.id]);
  for (let up = inputNode(first, "previous"); up && up.type === SCHEDULE_NODE && !seen.has(up.id); up = inputNode(first, "previous")) {
    seen.add(up.id);
    first = up;
  }
  const chain = [first];
  for (let next = targets(first).find((t) => t.type === SCHEDULE_NODE); next && !chain.includes(next);
       next = targets(next).find((t) => t.type === SCHEDULE_NODE)) {
    chain.push(next);
  }
  const consumers = targets(chain[chain.length - 1]).filter((t) => t.type !== SCHEDULE_NODE);
  const fpsNode = consumers.find((t) => typeof widgetValue(t, "fps") === "number");
  const fps = fpsNode ? widgetValue(fpsNode, "fps") : DEFAULT_FPS;
  const segments = [];
  let start = 0;
  chain.forEach((n, index) => {
    const frames = Math.max(1, Number(widgetValue(n, "frames")) || 1);
    const transition = index === 0 ? 0 : Math.max(0, Number(widgetValue(n, "transition")) || 0);
    segments.push({ node: n.id, text: promptText(n), frames, transition, start });
    start += frames;
  });
  return { segments, total: start, fps, seconds: start / fps, fps_from_sampler: !!fpsNode };
}

function layout(schedule, width) {
  const usable = width - 2 * MARGIN;
  const perFrame = usable / Math.max(1, schedule.total);
  return { perFrame, x: (frame) => MARGIN + frame * perFrame };
}

function clipText(ctx, text, width) {
  if (ctx.measureText(text).width <= width) return text;
  let cut = text;
  while (cut.length > 1 && ctx.measureText(cut + "…").width > width) cut = cut.slice(0, -1);
  return cut.length > 1 ? cut + "…" : "";
}

function drawTimeline(ctx, node, widgetWidth, y) {
  const schedule = collectSchedule(node);
  const { perFrame, x } = layout(schedule, widgetWidth);
  ctx.save();
  ctx.fillStyle = "#0d1420";
  ctx.fillRect(MARGIN, y, widgetWidth - 2 * MARGIN, HEIGHT);
  ctx.font = "11px sans-serif";
  schedule.segments.forEach((segment, index) => {
    const left = x(segment.start), width = segment.frames * perFrame;
    ctx.fillStyle = SEGMENT_COLORS[index % SEGMENT_COLORS.length];
    ctx.globalAlpha = segment.node === node.id ? 1.0 : 0.55;
    ctx.fillRect(left, y + 4, Math.max(1, width - 1), BAR_HEIGHT);
    if (segment.transition > 0 && index > 0) {   // the blend from the previous prompt over `transition` frames
      const previous = SEGMENT_COLORS[(index - 1) % SEGMENT_COLORS.length];
      const blend = ctx.createLinearGradient(left, 0, left + segment.transition * perFrame, 0);
      blend.addColorStop(0, previous);
      blend.addColorStop(1, SEGMENT_COLORS[index % SEGMENT_COLORS.length]);
      ctx.fillStyle = blend;
      ctx.fillRect(left, y + 4, Math.min(width - 1, segment.transition * perFrame), BAR_HEIGHT);
    }
    ctx.globalAlpha = 1.0;
    ctx.fillStyle = "#ffffff";
    ctx.fillText(clipText(ctx, segment.text, width - 6), left + 3, y + 18);
    ctx.fillText(clipText(ctx, `${segment.frames} f`, width - 6), left + 3, y + 32);
    ctx.fillStyle = "#ffd24a";                  // the draggable boundary at the segment's end
    ctx.fillRect(left + width - 2, y + 4, 2, BAR_HEIGHT);
  });
  ctx.fillStyle = "#dde6f5";
  ctx.font = "12px sans-serif";
  const source = schedule.fps_from_sampler ? "" : " (no sampler fps: default)";
  ctx.fillText(`${schedule.segments.length} prompts · ${schedule.total} frames · ` +
               `${schedule.seconds.toFixed(1)} s at ${schedule.fps} fps${source}`, MARGIN + 4, y + HEIGHT - 12);
  ctx.restore();
}

// Index of the segment whose end boundary is under `x` (widget coordinates), or -1.
export function boundaryAt(node, x, widgetWidth) {
  const schedule = collectSchedule(node);
  const { perFrame, x: toX } = layout(schedule, widgetWidth);
  return schedule.segments.findIndex((s) => Math.abs(toX(s.start + s.frames) - x) <= GRAB_PIXELS);
}

function setFrames(nodeId, frames) {
  const target = app.graph.getNodeById(nodeId);
  const widget = target?.widgets?.find((w) => w.name === "frames");
  if (!widget || widget.value === frames) return;
  widget.value = frames;
  widget.callback?.(frames, app.canvas, target);
  app.graph.setDirtyCanvas(true, true);
}

function addTimelineWidget(node) {
  const widget = {
    name: WIDGET,
    type: WIDGET,
    value: null,
    serialize: false,                 // display only: not saved in the workflow, never part of the prompt
    options: { serialize: false },
    drag: null,
    draw(ctx, node, widgetWidth, y) { this.width = widgetWidth; drawTimeline(ctx, node, widgetWidth, y); },
    computeSize(width) { return [width, HEIGHT + 4]; },
    mouse(event, pos, node) {
      const type = event.type;
      if (type === "pointerdown" || type === "mousedown") {
        const width = this.width ?? node.size[0];
        const index = boundaryAt(node, pos[0], width);
        if (index < 0) return false;
        const schedule = collectSchedule(node);
        const segment = schedule.segments[index];
        this.drag = { node: segment.node, start: segment.start, perFrame: layout(schedule, width).perFrame };
        return true;
      }
      if (!this.drag) return false;
      if (type === "pointermove" || type === "mousemove" || type === "pointerup" || type === "mouseup") {
        const frames = Math.max(1, Math.round((pos[0] - MARGIN) / this.drag.perFrame - this.drag.start));
        setFrames(this.drag.node, frames);
        if (type === "pointerup" || type === "mouseup") this.drag = null;
        return true;
      }
      return false;
    },
  };
  node.addCustomWidget(widget);
  node.setSize([Math.max(node.size[0], 420), node.computeSize()[1]]);
}

app.registerExtension({
  name: "fifo_infinity.prompt_timeline",

  async setup() {
    window.fifoInfinity = { ...(window.fifoInfinity ?? {}), collectSchedule, boundaryAt };
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== SCHEDULE_NODE) return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addTimelineWidget(this);
      return result;
    };
  },
});
