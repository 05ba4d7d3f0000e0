(function(){
"use strict";
var D = JSON.parse(document.getElementById("semot-data").textContent);
var tip = document.getElementById("tip");
var views = {orig: document.getElementById("v-orig"), comp: document.getElementById("v-comp")};
var buttons = {orig: document.getElementById("b-orig"), comp: document.getElementById("b-comp")};
var nodeEls = views.orig.querySelectorAll(".node");
var linkEls = views.orig.querySelectorAll("line.lk");
var groupEls = views.comp.querySelectorAll(".group");
var glinkEls = views.comp.querySelectorAll("line.lk");
var listEls = document.querySelectorAll(".glist");
var selinfo = document.getElementById("selinfo");
var current = "orig", sel = -1;
function show(which){
  current = which;
  for (var k in views){ views[k].style.display = (k === which) ? "" : "none";
    buttons[k].classList.toggle("on", k === which); }
}
buttons.orig.addEventListener("click", function(){ show("orig"); });
buttons.comp.addEventListener("click", function(){ show("comp"); });
function tok(p){ return (p < D.tokens.length) ? JSON.stringify(D.tokens[p]) : ""; }
function gname(g){ var n = D.groups[g].n; return n ? n : "(unnamed)"; }
function nodeLines(i){
  var n = D.nodes[i], g = D.groups[n.g];
  return [n.t ? n.t : "(no label)",
    n.k + ", layer " + n.ln + ", position " + n.p + " " + tok(n.p),
    "group: " + gname(n.g) + " (" + g.m.length + (g.m.length === 1 ? " node)" : " nodes)")];
}
function groupLines(g){
  var G = D.groups[g], out = [gname(g), G.m.length + (G.m.length === 1 ? " node" : " nodes") +
    ", mean layer " + G.l + ", mean position " + G.p];
  var shown = G.m.slice(0, 12).map(function(i){ var n = D.nodes[i];
    return "  " + n.k + ", layer " + n.ln + ", position " + n.p + ": " +
      (n.t ? n.t : "(no label)"); });
  if (G.m.length > 12) shown.push("  \u2026 " + (G.m.length - 12) + " more");
  return out.concat(shown);
}
function fill(el, lines){
  el.textContent = "";
  lines.forEach(function(s, k){ var d = document.createElement("div"); d.textContent = s;
    if (k === 0) d.className = "t0"; el.appendChild(d); });
}
function hoverLines(t){
  if (!t || !t.getAttribute) return null;
  if (t.classList.contains("node")) return nodeLines(+t.getAttribute("data-i"));
  if (t.classList.contains("group")) return groupLines(+t.getAttribute("data-g"));
  return null;
}
document.addEventListener("mousemove", function(ev){
  var lines = dragging ? null : hoverLines(ev.target);
  if (!lines){ tip.style.display = "none"; return; }
  fill(tip, lines); tip.style.display = "block";
  var x = ev.clientX + 14, y = ev.clientY + 14, w = tip.offsetWidth, h = tip.offsetHeight;
  if (x + w > window.innerWidth) x = ev.clientX - w - 10;
  if (y + h > window.innerHeight) y = Math.max(0, ev.clientY - h - 10);
  tip.style.left = x + "px"; tip.style.top = y + "px";
});
function select(g){
  sel = (g === sel) ? -1 : g;
  var on = sel >= 0;
  nodeEls.forEach(function(el){ el.classList.toggle("sel", on &&
    D.nodes[+el.getAttribute("data-i")].g === sel); });
  linkEls.forEach(function(el){ el.classList.toggle("sel", on &&
    (D.nodes[+el.getAttribute("data-s")].g === sel ||
     D.nodes[+el.getAttribute("data-t")].g === sel)); });
  groupEls.forEach(function(el){ el.classList.toggle("sel", +el.getAttribute("data-g") === sel); });
  glinkEls.forEach(function(el){ el.classList.toggle("sel", on &&
    (+el.getAttribute("data-s") === sel || +el.getAttribute("data-t") === sel)); });
  listEls.forEach(function(el){ el.classList.toggle("on", +el.getAttribute("data-g") === sel); });
  views.orig.classList.toggle("has-sel", on); views.comp.classList.toggle("has-sel", on);
  if (on) fill(selinfo, groupLines(sel)); else selinfo.textContent = "(click a group)";
}
listEls.forEach(function(el){ el.addEventListener("click", function(){
  select(+el.getAttribute("data-g")); }); });
function clickOn(t){
  if (t.classList && t.classList.contains("node")){
    select(D.nodes[+t.getAttribute("data-i")].g);
  } else if (t.classList && t.classList.contains("group")){
    var g = +t.getAttribute("data-g"); if (g !== sel) select(g); show("orig");
  } else if (sel >= 0) select(sel);
}
var dragging = null;
function getVB(svg){ return svg.getAttribute("viewBox").split(/[ ,]+/).map(Number); }
function setVB(svg, v){ svg.setAttribute("viewBox", v.map(function(a){
  return a.toFixed(2); }).join(" ")); }
function panZoom(svg){
  var home = svg.getAttribute("viewBox");
  function scale(v){ var r = svg.getBoundingClientRect();
    return Math.max(v[2] / Math.max(r.width, 1), v[3] / Math.max(r.height, 1)); }
  svg.addEventListener("wheel", function(ev){
    ev.preventDefault();
    var v = getVB(svg), r = svg.getBoundingClientRect(), s = scale(v);
    var cx = v[0] + v[2] / 2 + (ev.clientX - r.left - r.width / 2) * s;
    var cy = v[1] + v[3] / 2 + (ev.clientY - r.top - r.height / 2) * s;
    var f = Math.exp(Math.max(-1, Math.min(1, ev.deltaY * 0.002)));
    setVB(svg, [cx - (cx - v[0]) * f, cy - (cy - v[1]) * f, v[2] * f, v[3] * f]);
  }, {passive: false});
  svg.addEventListener("mousedown", function(ev){
    if (ev.button !== 0) return;
    var v = getVB(svg);
    dragging = {svg: svg, x: ev.clientX, y: ev.clientY, v: v, moved: false, s: scale(v),
      target: ev.target};
  });
  svg.addEventListener("dblclick", function(){ svg.setAttribute("viewBox", home); });
}
window.addEventListener("mousemove", function(ev){
  if (!dragging) return;
  var dx = ev.clientX - dragging.x, dy = ev.clientY - dragging.y;
  if (Math.abs(dx) + Math.abs(dy) > 4) dragging.moved = true;
  if (!dragging.moved) return;
  var v = dragging.v;
  setVB(dragging.svg, [v[0] - dx * dragging.s, v[1] - dy * dragging.s, v[2], v[3]]);
});
window.addEventListener("mouseup", function(){
  if (!dragging) return;
  var d = dragging; dragging = null;
  if (!d.moved) clickOn(d.target);
});
document.addEventListener("keydown", function(ev){
  if (ev.key === "Escape" && sel >= 0) select(sel);
  if (ev.key === "t") show(current === "orig" ? "comp" : "orig");
});
panZoom(views.orig); panZoom(views.comp);
show("orig");
})();
