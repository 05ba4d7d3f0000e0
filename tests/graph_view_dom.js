// DOM check of the page that semot.circuits.html_page.write_html writes, run in headless
// Chromium by tests/test_graph_view.py (driver.execute_script: this is a function body that
// returns the observations).
const w = window, d = document;
const out = {};
function ev(el, type, extra) {
  const E = type.startsWith("mouse") || type === "click" || type === "dblclick" ? w.MouseEvent
    : type === "wheel" ? w.WheelEvent : w.Event;
  el.dispatchEvent(new E(type, Object.assign({ bubbles: true, cancelable: true, clientX: 10, clientY: 10, button: 0 }, extra || {})));
}
const vo = d.getElementById("v-orig"), vcmp = d.getElementById("v-comp");
out.nodes = vo.querySelectorAll(".node").length;
out.groups = vcmp.querySelectorAll(".group").length;
out.scripts = d.querySelectorAll("script").length;
// hover a node -> tooltip
const n3 = vo.querySelector('.node[data-i="3"]');
ev(n3, "mousemove");
const tip = d.getElementById("tip");
out.tipShown = tip.style.display;
out.tipText = tip.textContent;
out.tipHasElement = tip.querySelector("script") !== null;
// toggle
ev(d.getElementById("b-comp"), "click");
out.afterToggle = [vo.style.display, vcmp.style.display];
// hover a group
const g0 = vcmp.querySelector('.group[data-g="0"]');
ev(g0, "mousemove");
out.groupTip = tip.textContent;
// click a group in the compressed view (mousedown + mouseup without moving)
ev(g0, "mousedown"); ev(g0, "mouseup");
out.afterGroupClick = [vo.style.display, vcmp.style.display, vo.classList.contains("has-sel")];
out.selectedNodes = Array.from(vo.querySelectorAll(".node.sel")).map((e) => +e.getAttribute("data-i"));
out.selinfo = d.getElementById("selinfo").textContent;
// click the same group in the list -> clears
const li = d.querySelector('.glist[data-g="0"]');
ev(li, "click");
out.afterListClick = [vo.classList.contains("has-sel"), vo.querySelectorAll(".node.sel").length];
// click a node of group 2 in the original view
const n8 = vo.querySelector('.node[data-i="8"]');
ev(n8, "mousedown"); ev(n8, "mouseup");
out.afterNodeClick = Array.from(vo.querySelectorAll(".node.sel")).map((e) => +e.getAttribute("data-i"));
out.selLinks = vo.querySelectorAll("line.lk.sel").length;
// Escape clears
d.dispatchEvent(new w.KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
out.afterEscape = vo.querySelectorAll(".node.sel").length;
// pan: mousedown on background, move, up -> viewBox changes, no selection
const vb0 = vo.getAttribute("viewBox");
ev(vo, "mousedown", { clientX: 100, clientY: 100 });
w.dispatchEvent(new w.MouseEvent("mousemove", { clientX: 150, clientY: 130 }));
w.dispatchEvent(new w.MouseEvent("mouseup", { clientX: 150, clientY: 130 }));
out.panned = vo.getAttribute("viewBox") !== vb0;
ev(vo, "wheel", { deltaY: 100 });
ev(vo, "dblclick");
out.reset = vo.getAttribute("viewBox") === vb0;
out.pwned = w.__pwned === undefined ? null : w.__pwned;
return out;
