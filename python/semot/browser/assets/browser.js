// The feature browser written by semot.browser.write_browser. It opens from disk: data
// files are scripts (data/<key>.js calling semotData) added on demand, since file:// pages
// cannot fetch(). Every string from the data is inserted as text (textContent or
// createTextNode through el()), never as HTML.
"use strict";
(function () {
  const store = new Map();
  const waiting = new Map();
  window.semotData = function (key, value) {
    store.set(key, value);
    const w = waiting.get(key);
    if (w) {
      waiting.delete(key);
      w.forEach((f) => f[0](value));
    }
  };
  function load(key) {
    if (store.has(key)) return Promise.resolve(store.get(key));
    return new Promise((resolve, reject) => {
      const w = waiting.get(key);
      if (w) {
        w.push([resolve, reject]);
        return;
      }
      waiting.set(key, [[resolve, reject]]);
      const s = document.createElement("script");
      s.src = "data/" + key + ".js";
      s.onerror = () => {
        const ws = waiting.get(key) || [];
        waiting.delete(key);
        ws.forEach((f) => f[1](new Error("cannot load data/" + key + ".js")));
      };
      document.head.appendChild(s);
    });
  }

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = v;
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v);
      }
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
    return e;
  }
  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined) return "\u2013";
    if (typeof x !== "number") return String(x);
    if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential(1);
    return x.toFixed(digits === undefined ? 3 : digits);
  }
  function pct(x) {
    return x === null || x === undefined ? "\u2013" : (100 * x).toPrecision(2) + " %";
  }
  // Whitespace made visible: the token strings keep their spaces (white-space: pre).
  function shown(s) {
    return String(s).replace(/\n/g, "\u23ce").replace(/\t/g, "\u2192").replace(/\r/g, "");
  }
  function featureHref(j, id) {
    return "#/f/" + j + "/" + id;
  }

  let meta = null;
  let vocab = null;
  const main = document.getElementById("main");

  function siteName(j) {
    return meta.sites[j].name;
  }
  function getVocab() {
    if (vocab) return Promise.resolve(vocab);
    return load("vocab").then((v) => {
      vocab = new Map();
      for (let i = 0; i < v.ids.length; i++) vocab.set(v.ids[i], v.s[i]);
      return vocab;
    });
  }
  // Position of each feature id in its site (the index's order), per site.
  const positions = new Map();
  function siteIndex(j) {
    return load("s" + j + "/index").then((ix) => {
      if (!positions.has(j)) {
        const m = new Map();
        ix.ids.forEach((id, p) => m.set(id, p));
        positions.set(j, m);
      }
      return ix;
    });
  }
  function record(j, id) {
    return siteIndex(j).then(() => {
      const p = positions.get(j).get(id);
      if (p === undefined) return null;
      const shard = Math.floor(p / meta.shard);
      return load("s" + j + "/f" + shard).then((sh) => sh.features[p - sh.start]);
    });
  }

  function ready(view) {
    document.body.setAttribute("data-view", view);
  }
  function clear() {
    main.replaceChildren();
  }

  // ------------------------------------------------------------------ contexts
  function contextLine(ctx, amax) {
    const [seq, pos, act, ids, k] = ctx;
    const line = el("div", {
      class: "ctx",
      title: "sequence " + seq + ", position " + pos + ", activation " + fmt(act),
    });
    line.append(el("span", { class: "act", text: fmt(act, 2) }));
    // Keyword in context: the tokens before the firing one end at the middle, those after
    // start there, so the firing tokens of all lines line up and stay visible.
    const pre = el("span", { class: "pre" }), post = el("span", { class: "post" });
    const fire = el("span", { class: "fire-slot" });
    if (k < 0) fire.append(el("i", { text: "(tokens not stored)" }));
    ids.forEach((id, i) => {
      const s = vocab.get(id);
      const t = el("span", { class: i === k ? "tok fire" : "tok" });
      t.textContent = s === undefined ? "\u27e8" + id + "\u27e9" : shown(s);
      if (i === k) {
        const a = amax && act !== null ? Math.max(0.15, Math.min(1, act / amax)) : 1;
        t.style.backgroundColor = "rgba(255, 120, 0, " + a.toFixed(2) + ")";
      }
      (i < k ? pre : i === k ? fire : post).append(t);
    });
    line.append(el("span", { class: "left" }, pre), fire, el("span", { class: "right" }, post));
    return line;
  }
  function contextList(list, amax, cls) {
    const box = el("div", { class: "ctxs" + (cls ? " ctx-" + cls : "") });
    if (!list.length) box.append(el("p", { class: "muted", text: "(none)" }));
    list.forEach((c) => box.append(contextLine(c, amax)));
    return box;
  }
  function histogram(h) {
    const [lo, hi, counts] = h;
    const w = 220, ht = 60;
    const box = svg("svg", { width: w, height: ht + 16, class: "hist", role: "img" });
    const top = Math.max(1, ...counts);
    const bw = counts.length ? w / counts.length : w;
    counts.forEach((c, i) => {
      const bh = (c / top) * ht;
      box.append(svg("rect", { x: i * bw + 0.5, y: ht - bh, width: Math.max(1, bw - 1), height: bh }));
    });
    const t0 = svg("text", { x: 0, y: ht + 13 });
    t0.textContent = fmt(lo, 2);
    const t1 = svg("text", { x: w, y: ht + 13, "text-anchor": "end" });
    t1.textContent = fmt(hi, 2);
    box.append(t0, t1);
    return box;
  }

  // ------------------------------------------------------------------ index
  const state = new Map(); // per site: q, sort, filter, page, target
  function siteState(j) {
    if (!state.has(j)) {
      const t = meta.sites[j].targets;
      state.set(j, { q: "", sort: t.length ? "distance" : "id", filter: "all", page: 0,
                     target: t.length ? t[0] : null });
    }
    return state.get(j);
  }
  const SORTS = {
    distance: "distance (smallest first)",
    margin: "margin (largest first)",
    density: "density (largest first)",
    firings: "firing count (largest first)",
    matched: "matched first",
    id: "feature id",
  };
  const PAGE = 100;

  function order(ix, st) {
    const n = ix.ids.length;
    const m = st.target !== null ? ix.m[String(st.target)] : null;
    const q = st.q.trim().toLowerCase();
    const isId = /^\d+$/.test(q);
    let keep = [];
    for (let i = 0; i < n; i++) {
      if (st.filter === "matched" && !(m && m.ok[i] === 1)) continue;
      if (st.filter === "unmatched" && m && m.ok[i] === 1) continue;
      if (st.filter === "fired" && !ix.n[i]) continue;
      if (q) {
        let hit = isId && String(ix.ids[i]) === q;
        if (!hit) hit = ix.tok[i].some((s) => s.toLowerCase().includes(q));
        if (!hit && ix.lbl[i]) hit = ix.lbl[i].toLowerCase().includes(q);
        if (!hit) continue;
      }
      keep.push(i);
    }
    const num = (a) => (a === null || a === undefined ? null : a);
    function by(key, desc) {
      return (a, b) => {
        const x = num(key(a)), y = num(key(b));
        if (x === null && y === null) return ix.ids[a] - ix.ids[b];
        if (x === null) return 1;
        if (y === null) return -1;
        if (x !== y) return desc ? y - x : x - y;
        return ix.ids[a] - ix.ids[b];
      };
    }
    const sorts = {
      distance: by((i) => (m ? m.bd[i] : null), false),
      margin: by((i) => (m ? m.bm[i] : null), true),
      density: by((i) => ix.d[i], true),
      firings: by((i) => ix.fc[i], true),
      matched: by((i) => (m ? m.ok[i] : null), true),
      id: by((i) => ix.ids[i], false),
    };
    keep.sort(sorts[st.sort] || sorts.id);
    return keep;
  }

  function showIndex(j) {
    if (!(j >= 0 && j < meta.sites.length)) j = 0;
    const st = siteState(j);
    return siteIndex(j).then((ix) => {
      clear();
      const site = meta.sites[j];
      const controls = el("div", { class: "controls" });
      const siteSel = el("select", { id: "site", "aria-label": "site" });
      meta.sites.forEach((s, k) => {
        const o = el("option", { value: String(k), text: s.name + " (" + s.nf + " features)" });
        if (k === j) o.selected = true;
        siteSel.append(o);
      });
      siteSel.addEventListener("change", () => { location.hash = "#/s/" + siteSel.value; });
      const search = el("input", { id: "search", type: "search", placeholder: "feature id, token or label",
                                   value: st.q, "aria-label": "search" });
      const sortSel = el("select", { id: "sort", "aria-label": "sort" });
      for (const [key, text] of Object.entries(SORTS)) {
        if (!site.targets.length && ["distance", "margin", "matched"].includes(key)) continue;
        const o = el("option", { value: key, text: text });
        if (key === st.sort) o.selected = true;
        sortSel.append(o);
      }
      const filterSel = el("select", { id: "filter", "aria-label": "filter" });
      for (const [key, text] of [["all", "all features"], ["fired", "fired"], ["matched", "matched"],
                                  ["unmatched", "not matched"]]) {
        const o = el("option", { value: key, text: text });
        if (key === st.filter) o.selected = true;
        filterSel.append(o);
      }
      controls.append(el("label", null, "site ", siteSel), el("label", null, "search ", search),
                      el("label", null, "sort ", sortSel), el("label", null, "show ", filterSel));
      let targetSel = null;
      if (site.targets.length) {
        targetSel = el("select", { id: "target", "aria-label": "targets in" });
        site.targets.forEach((t) => {
          const o = el("option", { value: String(t), text: siteName(t) });
          if (t === st.target) o.selected = true;
          targetSel.append(o);
        });
        controls.append(el("label", null, "targets in ", targetSel));
      }
      const summary = el("p", { id: "summary", class: "muted" });
      const table = el("table", { id: "features" });
      const pager = el("div", { class: "pager" });
      main.append(el("h2", { text: site.name + (site.hook && site.hook !== site.name ? " \u00b7 " + site.hook : "") }),
                  controls, summary, table, pager);
      function render() {
        const rows = order(ix, st);
        const pages = Math.max(1, Math.ceil(rows.length / PAGE));
        st.page = Math.min(st.page, pages - 1);
        const a = st.page * PAGE, b = Math.min(rows.length, a + PAGE);
        summary.textContent = rows.length + " of " + ix.ids.length + " features" +
          (rows.length ? ", showing " + (a + 1) + "\u2013" + b : "");
        const m = st.target !== null ? ix.m[String(st.target)] : null;
        const head = el("tr", null, el("th", { text: "feature" }), el("th", { text: "density" }),
                        el("th", { text: "firings" }), el("th", { text: "top tokens" }));
        if (ix.lbl.some((x) => x)) head.append(el("th", { text: "label" }));
        if (m) head.append(el("th", { text: "best target in " + siteName(st.target) }),
                           el("th", { text: "distance" }), el("th", { text: "margin" }),
                           el("th", { text: "matched" }));
        const body = el("tbody");
        for (const i of rows.slice(a, b)) {
          const tr = el("tr", { "data-id": String(ix.ids[i]) });
          tr.append(el("td", null, el("a", { href: featureHref(j, ix.ids[i]), text: "#" + ix.ids[i] })),
                    el("td", { class: "num", text: pct(ix.d[i]) }),
                    el("td", { class: "num", text: String(ix.fc[i]) }));
          const tk = el("td", { class: "toks" });
          ix.tok[i].forEach((s) => tk.append(el("span", { class: "tok", text: shown(s) })));
          tr.append(tk);
          if (ix.lbl.some((x) => x)) tr.append(el("td", { text: ix.lbl[i] || "" }));
          if (m) {
            const bt = m.bt[i];
            tr.append(el("td", null, bt === null ? "\u2013" : el("a", { href: featureHref(st.target, bt), text: "#" + bt })),
                      el("td", { class: "num", text: fmt(m.bd[i]) }),
                      el("td", { class: "num", text: fmt(m.bm[i], 2) }),
                      el("td", { text: m.ok[i] === null ? "\u2013" : m.ok[i] ? "yes" : "no" }));
          }
          body.append(tr);
        }
        table.replaceChildren(el("thead", null, head), body);
        const prev = el("button", { id: "prev", text: "\u2190 previous" });
        const next = el("button", { id: "next", text: "next \u2192" });
        prev.disabled = st.page === 0;
        next.disabled = st.page >= pages - 1;
        prev.addEventListener("click", () => { st.page -= 1; render(); });
        next.addEventListener("click", () => { st.page += 1; render(); });
        pager.replaceChildren(prev, el("span", { text: " page " + (st.page + 1) + " of " + pages + " " }), next);
        ready("index:" + j + ":" + st.sort + ":" + st.q + ":" + st.page + ":" + st.filter);
      }
      search.addEventListener("input", () => { st.q = search.value; st.page = 0; render(); });
      sortSel.addEventListener("change", () => { st.sort = sortSel.value; st.page = 0; render(); });
      filterSel.addEventListener("change", () => { st.filter = filterSel.value; st.page = 0; render(); });
      if (targetSel) targetSel.addEventListener("change", () => { st.target = +targetSel.value; render(); });
      render();
      if (!window.__semotFirstIndex) {
        window.__semotFirstIndex = true;
        performance.mark("semot-index");
      }
    });
  }

  // ------------------------------------------------------------------ chains
  function chainPath(sitesOf, via, dists, here) {
    const n = via.length;
    const w = Math.max(260, 150 * n), h = 74;
    const box = svg("svg", { width: w, height: h, class: "chain", role: "img" });
    const x = (k) => 50 + (k * (w - 100)) / Math.max(1, n - 1);
    const path = svg("polyline", { points: via.map((_, k) => x(k) + ",30").join(" "), class: "path" });
    box.append(path);
    via.forEach((id, k) => {
      if (k < n - 1) {
        const t = svg("text", { x: (x(k) + x(k + 1)) / 2, y: 22, "text-anchor": "middle", class: "dist" });
        t.textContent = "d " + fmt(dists[k]);
        box.append(t);
      }
      const a = document.createElementNS(SVG, "a");
      a.setAttribute("href", featureHref(sitesOf[k], id));
      const c = svg("circle", { cx: x(k), cy: 30, r: 7, class: k === here ? "node here" : "node" });
      const t = svg("text", { x: x(k), y: 52, "text-anchor": "middle" });
      t.textContent = siteName(sitesOf[k]);
      const t2 = svg("text", { x: x(k), y: 66, "text-anchor": "middle" });
      t2.textContent = "#" + id;
      a.append(c, t, t2);
      box.append(a);
    });
    return box;
  }
  function chainsThrough(j, id) {
    if (!meta.chain || !meta.chain.includes(j)) return Promise.resolve([]);
    const k = meta.chain.indexOf(j);
    return load("chains").then((ch) => ch.rows.filter((r) => r[1][k] === id).map((r) => [r, k]));
  }
  function showChains() {
    if (!meta.chain) return showIndex(0);
    return load("chains").then((ch) => {
      clear();
      main.append(el("h2", { text: "Chains " + ch.sites.map(siteName).join(" \u2192 ") }));
      const st = state.get("chains") || { page: 0 };
      state.set("chains", st);
      const full = ch.rows.filter((r) => r[1].length === ch.sites.length).length;
      main.append(el("p", { class: "muted", text: ch.rows.length + " chains of one step or more, " +
                                                  full + " through every site" }));
      const list = el("div", { id: "chains" });
      const pager = el("div", { class: "pager" });
      main.append(list, pager);
      const per = 50;
      function render() {
        const pages = Math.max(1, Math.ceil(ch.rows.length / per));
        list.replaceChildren();
        for (const r of ch.rows.slice(st.page * per, (st.page + 1) * per)) {
          list.append(el("div", { class: "chainrow" }, chainPath(ch.sites, r[1], r[2], -1)));
        }
        const prev = el("button", { text: "\u2190 previous" });
        const next = el("button", { text: "next \u2192" });
        prev.disabled = st.page === 0;
        next.disabled = st.page >= pages - 1;
        prev.addEventListener("click", () => { st.page -= 1; render(); });
        next.addEventListener("click", () => { st.page += 1; render(); });
        pager.replaceChildren(prev, el("span", { text: " page " + (st.page + 1) + " of " + pages + " " }), next);
        ready("chains:" + st.page);
      }
      render();
    });
  }

  // ------------------------------------------------------------------ feature
  function showFeature(j, id) {
    if (!(j >= 0 && j < meta.sites.length)) return showIndex(0);
    return Promise.all([getVocab(), record(j, id), siteIndex(j), chainsThrough(j, id)]).then(
      ([, rec, ix, chains]) => {
        clear();
        const site = meta.sites[j];
        main.append(el("p", null, el("a", { href: "#/s/" + j, text: "\u2190 " + site.name + " features" })));
        if (!rec) {
          main.append(el("h2", { text: "feature #" + id + " is not in " + site.name }));
          ready("feature:" + j + ":" + id);
          return;
        }
        const p = positions.get(j).get(id);
        const head = el("div", { class: "fhead" });
        head.append(el("h2", { id: "ftitle", text: site.name + " \u00b7 feature #" + id }));
        if (ix.lbl[p]) head.append(el("p", { class: "label", text: ix.lbl[p] }));
        head.append(el("p", { class: "stats", text: "density " + pct(rec.d) + " \u00b7 " + rec.fc +
          " firings \u00b7 " + rec.n + " sampled points \u00b7 largest sampled activation " + fmt(rec.amax) }));
        const hist = el("div", { class: "histbox" }, el("div", { class: "muted", text: "activations of the sampled points" }),
                        histogram(rec.h));
        main.append(el("div", { class: "fsummary" }, head, hist));
        if (chains.length) {
          const box = el("div", { class: "chainbox" },
                         el("h3", { text: chains.length > 1 ? chains.length + " chains through this feature" : "Chain" }));
          chains.slice(0, 3).forEach(([r, k]) => box.append(chainPath(meta.chain, r[1], r[2], k)));
          if (chains.length > 3) box.append(el("p", { class: "muted", text: "(the first 3 shown)" }));
          main.append(box);
        }
        const left = el("section", { class: "col", id: "contexts" },
                        el("h3", { text: "Top contexts" }), contextList(rec.top, rec.amax, "top"),
                        el("h3", { text: "Sampled contexts" }), contextList(rec.smp, rec.amax, "sampled"));
        const right = el("section", { class: "col", id: "targets" });
        const tsites = Object.keys(rec.t);
        if (!tsites.length) right.append(el("p", { class: "muted", text: "no match frame from this site" }));
        const pending = [];
        for (const t of tsites) {
          const tj = +t;
          right.append(el("h3", { text: "Targets in " + siteName(tj) + " (margin " + fmt(rec.mg[t], 2) + ")" }));
          if (!rec.t[t].length) right.append(el("p", { class: "muted", text: "no candidate" }));
          for (const [tid, rank, dist, ok] of rec.t[t]) {
            const card = el("div", { class: ok ? "target matched" : "target" });
            card.append(el("div", { class: "thead" },
                           el("a", { href: featureHref(tj, tid), text: siteName(tj) + " #" + tid }),
                           el("span", { class: "muted", text: " rank " + rank + " \u00b7 distance " + fmt(dist) +
                                                             (ok ? " \u00b7 matched" : "") })));
            const slot = el("div", { class: "tctx" }, el("p", { class: "muted", text: "loading..." }));
            card.append(slot);
            right.append(card);
            pending.push(record(tj, tid).then((tr) => {
              slot.replaceChildren(tr ? contextList(tr.top.slice(0, 3), tr.amax, "target")
                                      : el("p", { class: "muted", text: "(not in the run)" }));
            }));
          }
        }
        main.append(el("div", { class: "cols" }, left, right));
        return Promise.all(pending).then(() => ready("feature:" + j + ":" + id));
      });
  }

  // ------------------------------------------------------------------ supernodes
  function showSupernodes() {
    if (!meta.supernodes) return showIndex(0);
    return Promise.all([load("supernodes"), getVocab()]).then(([sn]) => {
      clear();
      main.append(el("h2", { text: "Supernodes" + (sn.title ? " of " + sn.title : "") }));
      if (sn.prompt && sn.prompt.length) {
        const pr = el("p", { class: "prompt" });
        sn.prompt.forEach((t, i) => pr.append(el("span", { class: "tok", title: "position " + i, text: shown(t) })));
        main.append(pr);
      }
      const list = el("div", { id: "groups" });
      main.append(list);
      sn.groups.forEach((g, gi) => {
        const det = el("details", { class: "group", "data-g": String(gi) });
        det.append(el("summary", null, el("span", { class: "glabel", text: g.label || "(unnamed)" }),
                      el("span", { class: "muted", text: " \u00b7 " + g.members.length + " members" })));
        const body = el("div", { class: "members" });
        det.append(body);
        let filled = false;
        det.addEventListener("toggle", () => {
          if (!det.open || filled) return;
          filled = true;
          const jobs = g.members.map((m) => {
            const row = el("div", { class: "member" });
            const head = el("div", { class: "mhead" });
            if (m.site !== null) head.append(el("a", { href: featureHref(m.site, m.feat), text: siteName(m.site) + " #" + m.feat }));
            else head.append(el("span", { text: m.kind + " " + m.node }));
            head.append(el("span", { class: "muted", text: " \u00b7 layer " + m.layer + " \u00b7 position " + m.pos }));
            if (m.clerp) head.append(el("span", { class: "clerp", text: " " + m.clerp }));
            row.append(head);
            body.append(row);
            if (m.site === null) return Promise.resolve();
            return record(m.site, m.feat).then((r) => { if (r) row.append(contextList(r.top.slice(0, 3), r.amax, "member")); });
          });
          Promise.all(jobs).then(() => ready("supernodes:" + gi));
        });
        list.append(det);
      });
      ready("supernodes");
    });
  }

  // ------------------------------------------------------------------ routing
  function nav() {
    const n = document.getElementById("nav");
    n.replaceChildren(el("a", { href: "#/s/0", text: "Features" }));
    if (meta.chain) n.append(el("a", { href: "#/chains", text: "Chains" }));
    if (meta.supernodes) n.append(el("a", { href: "#/supernodes", text: "Supernodes" }));
  }
  function route() {
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    let job;
    if (parts[0] === "f") job = showFeature(+parts[1], +parts[2]);
    else if (parts[0] === "chains") job = showChains();
    else if (parts[0] === "supernodes") job = showSupernodes();
    else job = showIndex(parts[0] === "s" ? +parts[1] : 0);
    Promise.resolve(job).catch((e) => {
      clear();
      main.append(el("p", { class: "error", text: String(e && e.message ? e.message : e) }));
      ready("error");
    });
  }
  load("meta").then((m) => {
    meta = m;
    document.title = m.title;
    document.getElementById("title").textContent = m.title;
    nav();
    window.addEventListener("hashchange", route);
    route();
  });
})();
