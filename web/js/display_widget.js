// FIFO-Infinity: a display-only node widget that paints on its own <canvas> element, for the queue view
// (fifo_infinity.js) and the prompt timeline (prompt_timeline.js).
//
// It is added through the frontend's public DOM widget API, `node.addDOMWidget(name, type, element, options)`
// (frontends 1.32.9 and 1.49.6, the ones the tests run, both have it): the classic LiteGraph canvas lays the
// element over the node (its DOM widget overlay), and the Vue "Nodes 2.0" renderer mounts the same element
// inside the node. Neither path has to call a canvas `draw` for us: the widget repaints itself
// whenever what it shows changes (`repaint`, a size change, or, for views that follow the graph, a light
// check of their content every POLL_MS), so it looks the same in both renderers.
//
// Display-only: `serialize: false` on the widget and in its options keeps it out of the saved workflow's
// widgets_values and out of the prompt; its value is always undefined.

const POLL_MS = 250;
const views = new Set();   // every mounted view, checked by the poll
let pollTimer = null;

function pollViews() {
  for (const view of views) {
    if (view.element.isConnected) view.refresh();
  }
}

// Adds the widget to `node` and returns its view: { node, widget, element, canvas, refresh(), repaint() }.
//   name, height    widget name (also its type) and its height in CSS pixels
//   paint(ctx, width, height)   draws the content; ctx is scaled so that one unit is one CSS pixel
//   signature()     a string that changes whenever the content would (repaint only then); optional
//   follow          true: poll `signature` (content that depends on other nodes); false: repaint on demand
//   onPointer(event, x, y, view)   pointer events on the canvas (x, y in the widget's CSS pixels); return
//                   true to take the event (the node is then neither dragged nor selected by it)
export function addDisplayWidget(node, { name, height, paint, signature = () => "", follow = false, onPointer = null }) {
  const margin = 6;
  const element = document.createElement("div");
  element.className = "fifo-infinity-display-widget";
  element.dataset.fifoWidget = name;
  element.style.cssText = `position:relative; box-sizing:border-box; width:100%; height:${height}px; min-height:${height}px; overflow:hidden;`;
  const canvas = document.createElement("canvas");
  canvas.style.cssText = "position:absolute; left:0; top:0; width:100%; height:100%; display:block;";
  element.appendChild(canvas);

  const view = { node, element, canvas, lastSignature: null, lastSize: "" };
  view.repaint = () => {
    const width = element.clientWidth, h = element.clientHeight;
    if (!width || !h) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(h * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, h);
    paint(ctx, width, h);
    view.lastSize = `${width}x${h}x${ratio}`;
  };
  view.refresh = () => {
    const size = `${element.clientWidth}x${element.clientHeight}x${window.devicePixelRatio || 1}`;
    const current = signature();
    if (current === view.lastSignature && size === view.lastSize) return;
    view.lastSignature = current;
    view.repaint();
  };

  const widget = node.addDOMWidget(name, name, element, {
    serialize: false,                 // display only: not in widgets_values, never part of the prompt
    hideOnZoom: false,                // also drawn when zoomed out (thumbnails, overviews)
    margin,
    getValue: () => undefined,
    setValue: () => {},
    getMinHeight: () => height + 2 * margin,
    getMaxHeight: () => height + 2 * margin,
    onDraw: () => view.refresh(),     // classic canvas: called with every frame of the node
  });
  widget.serialize = false;
  view.widget = widget;

  if (onPointer) {
    const local = (event) => {
      const rect = canvas.getBoundingClientRect();   // the classic overlay scales the element with the zoom
      const sx = rect.width ? canvas.clientWidth / rect.width : 1, sy = rect.height ? canvas.clientHeight / rect.height : 1;
      return [(event.clientX - rect.left) * sx, (event.clientY - rect.top) * sy];
    };
    for (const type of ["pointerdown", "pointermove", "pointerup", "pointercancel"]) {
      canvas.addEventListener(type, (event) => {
        const [x, y] = local(event);
        if (onPointer(event, x, y, view)) {
          event.preventDefault();
          event.stopPropagation();
        }
      });
    }
  }

  if (typeof ResizeObserver === "function") new ResizeObserver(() => view.refresh()).observe(element);
  if (follow) {
    views.add(view);
    pollTimer ??= setInterval(pollViews, POLL_MS);
  }
  const onRemove = widget.onRemove;
  widget.onRemove = function () {
    views.delete(view);
    if (!views.size && pollTimer !== null) {
      clearInterval(pollTimer);
      pollTimer = null;
    }
    return onRemove?.apply(this, arguments);
  };
  return view;
}
