// Bioreactor dashboard: keeps the server-rendered page live from /events (Server-Sent Events).
// No inline script (the Content-Security-Policy forbids it); data goes into the DOM as text
// only (textContent, never innerHTML), since reactor names and messages come from the broker.
"use strict";
(function () {
  const SYMBOLS = { running: "▶", connected: "▶", done: "■", stopped: "■", lost: "✖",
                    offline: "✖", error: "✖", starting: "…", paused: "⏸", "?": "?" };
  const STALE_AFTER_S = 30;
  const page = document.body.dataset.page;

  function num(v) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    return Math.abs(v) >= 1000 ? Number(v).toPrecision(3) : Number(v).toFixed(2);
  }
  function ageText(s) {
    if (s === null || s === undefined || isNaN(s)) return "no data yet";
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    return (s / 3600).toFixed(1) + " h ago";
  }
  // As many decimals as the tick spacing needs (0.05 h apart: two), so no two ticks read alike.
  function hourTicks(u, splits, axisIdx, space, incr) {
    const decimals = Math.max(0, Math.min(3, Math.ceil(-Math.log10(incr) - 1e-9)));
    return splits.map((x) => x.toFixed(decimals));
  }
  function hours(t) { return t === null || t === undefined ? "–" : (t / 3600).toFixed(2) + " h"; }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function byData(root, attr, name) {
    for (const e of root.querySelectorAll("[" + attr + "]")) if (e.getAttribute(attr) === name) return e;
    return null;
  }

  // --- data age: the server's age at sending plus the time since we received it ----------
  const received = new Map(); // age element -> [age_s at receipt, performance.now() then]
  function setAge(root, ageS) {
    const a = root.querySelector('[data-field="age"]');
    if (!a) return;
    received.set(a, [ageS, performance.now()]);
    tickAge(a);
  }
  function tickAge(a) {
    const r = received.get(a);
    if (!r || r[0] === null || r[0] === undefined) return;
    const s = r[0] + (performance.now() - r[1]) / 1000;
    a.textContent = ageText(s);
    a.dataset.ageS = s.toFixed(1);
    a.dataset.stale = s > STALE_AFTER_S ? "true" : "false";
  }
  for (const a of document.querySelectorAll('[data-field="age"]')) {
    const s = parseFloat(a.dataset.ageS);
    if (!isNaN(s)) received.set(a, [s, performance.now()]);
  }
  setInterval(() => received.forEach((_, a) => tickAge(a)), 1000);

  // --- one reactor's view into its element ---------------------------------------------------
  function setState(root, state) {
    const s = root.querySelector('[data-field="state"]');
    if (!s) return;
    s.dataset.state = state;
    s.replaceChildren(el("span", { class: "state state-" + state }, (SYMBOLS[state] || "•") + " " + state));
  }
  function setReadings(root, list, attr, readings) {
    const dl = root.querySelector('[data-list="' + list + '"]');
    if (!dl) return;
    for (const [name, r] of Object.entries(readings)) {
      let dd = byData(dl, attr, name);
      if (!dd) {
        const div = el("div", { class: "reading" });
        div.append(el("dt", {}, name));
        dd = el("dd", { [attr]: name });
        div.append(dd, el("span", { class: "qlabel" }));
        dl.append(div);
      }
      dd.textContent = num(r.value) + " " + r.unit;
      dd.dataset.quality = r.quality;
      dd.parentElement.className = "reading q-" + r.quality;
      const q = dd.parentElement.querySelector(".qlabel");
      if (q) q.textContent = r.quality === "good" ? "" : r.quality;
    }
  }
  function alarmRow(a, withForm) {
    const li = el("li", { "data-alarm": a.name, "data-priority": a.priority, "data-state": a.state,
                          class: "alarm prio-" + a.priority });
    li.append(el("span", { class: "prio prio-" + a.priority }, a.symbol + " " + a.priority), " ",
              el("span", { class: "astate" }, a.state), " ", el("strong", {}, a.name), " ",
              el("span", { class: "amsg" }, a.message));
    const tpl = document.getElementById("alarm-form");
    if (withForm && tpl) {
      const form = tpl.content.firstElementChild.cloneNode(true);
      form.querySelector('input[name="alarm"]').value = a.name;
      li.append(form);
    }
    return li;
  }
  function setAlarms(root, alarms) {
    const list = root.querySelector('[data-list="alarms"]');
    if (!list) return;
    // keep a row whose form is being filled in: replace only rows whose content changed
    const wanted = new Map(alarms.map((a) => [a.name, a]));
    for (const li of [...list.children]) {
      const a = wanted.get(li.dataset.alarm);
      if (!a) { li.remove(); continue; }
      if (li.dataset.state !== a.state || li.dataset.priority !== a.priority) {
        li.replaceWith(alarmRow(a, page === "reactor"));
      }
      wanted.delete(a.name);
    }
    for (const a of wanted.values()) list.append(alarmRow(a, page === "reactor"));
    if (page === "reactor" && alarms.length === 0) {
      list.replaceChildren(el("li", { class: "none", "data-field": "no-alarms" }, "No alarm needs attention."));
    }
  }
  function apply(root, r) {
    setState(root, r.state);
    setAge(root, r.age_s);
    const phase = root.querySelector('[data-field="phase"]');
    if (phase) phase.textContent = r.recipe && r.recipe.phase ? r.recipe.phase : "–";
    setReadings(root, "key-readings", "data-reading", r.key_readings);
    setReadings(root, "sensors", "data-sensor", r.readings);
    for (const [loop, k] of Object.entries(r.key_readings)) trends.setPv(loop, k.pv);
    setAlarms(root, r.alarms);
    for (const [loop, sp] of Object.entries(r.setpoints)) {
      const s = byData(root, "data-setpoint", loop); if (s) s.textContent = num(sp);
      const m = byData(root, "data-mode", loop); if (m) m.textContent = r.modes[loop] || "?";
      const o = byData(root, "data-output", loop); if (o && loop in r.outputs) o.textContent = num(r.outputs[loop]);
    }
    setNotes(root, "events", r.events);
    setNotes(root, "replies", r.replies);
    if (r.point) trends.addPoint(r.point);
  }
  const shownNotes = new Map();
  function setNotes(root, list, notes) {
    const ul = root.querySelector('[data-list="' + list + '"]');
    if (!ul || !notes) return;
    let seen = shownNotes.get(list);
    if (!seen) { // what the server rendered is shown already
      seen = new Set([...ul.querySelectorAll("[data-key]")].map((li) => li.dataset.key));
    }
    for (const n of notes) {
      const key = (n.t_s === null ? "None" : n.t_s) + "|" + n.label + "|" + n.message;
      if (seen.has(key)) continue;
      seen.add(key);
      const li = el("li", {}, hours(n.t_s) + " ");
      li.append(el("strong", {}, n.label), " " + n.message);
      ul.prepend(li);
    }
    shownNotes.set(list, seen);
  }

  // --- trends (reactor page): history from the historian, then live points ------------------
  const trends = (function () {
    const charts = new Map(); // loop -> {plot, data, pv, mv, band}
    let pvOf = {};
    function build(loop, data, band) {
      const box = byData(document, "data-trend", loop);
      if (!box || typeof uPlot === "undefined") return null;
      const old = charts.get(loop); if (old) old.plot.destroy();
      const width = Math.max(280, box.clientWidth || 600);
      const opts = {
        width: width, height: 220,
        scales: { x: { time: false }, out: {} },
        axes: [{ label: "run time (h)", values: hourTicks },
               { label: loop }, { scale: "out", side: 1, label: "output", grid: { show: false } }],
        series: [{ label: "h" },
                 { label: "measurement", stroke: "#1f5fbf", width: 1.5 },
                 { label: "setpoint", stroke: "#222", dash: [6, 4] },
                 { label: "band low", stroke: "#7a9a7a", dash: [2, 3] },
                 { label: "band high", stroke: "#7a9a7a", dash: [2, 3] },
                 { label: "output", stroke: "#c06c00", scale: "out" }],
      };
      const plot = new uPlot(opts, data, box);
      box.dataset.band = band === null ? "" : String(band); // what the band lines were drawn with
      charts.set(loop, { plot: plot, data: data, band: band });
      return plot;
    }
    function bandOf(sp, band, i) { return sp === null || band === null ? [null, null] : [sp - band, sp + band]; }
    function fromHistory(h) {
      for (const [loop, l] of Object.entries(h.loops)) {
        pvOf[loop] = l.pv;
        const x = h.t_s.map((t) => t / 3600);
        const lo = l.setpoint.map((sp) => bandOf(sp, l.band)[0]);
        const hi = l.setpoint.map((sp) => bandOf(sp, l.band)[1]);
        build(loop, [x, l.measurement, l.setpoint, lo, hi, l.output], l.band);
      }
      estimates(h);
    }
    function fromLive(points, settings) {
      // The band from the loop's retained read-only setting (`<loop>.band`), when published.
      const loops = [...document.querySelectorAll("[data-trend]")].map((e) => e.dataset.trend);
      for (const loop of loops) {
        const pv = pvOf[loop] || loop;
        const setting = settings[loop + ".band"];
        const band = setting && typeof setting.value === "number" ? setting.value : null;
        const rows = points.map((p) => {
          const sp = p.values["sp." + loop] ?? null;
          const b = bandOf(sp, band);
          return [p.t_s / 3600, p.values[pv] ?? null, sp, b[0], b[1], p.values["out." + loop] ?? null];
        });
        const data = [0, 1, 2, 3, 4, 5].map((i) => rows.map((r) => r[i]));
        build(loop, data, band);
      }
    }
    function addPoint(p) {
      for (const [loop, c] of charts) {
        const d = c.data, x = p.t_s / 3600;
        if (d[0].length && x <= d[0][d[0].length - 1]) continue;
        const sp = p.values["sp." + loop] ?? null;
        const b = bandOf(sp, c.band);
        const row = [x, p.values[pvOf[loop] || loop] ?? null, sp, b[0], b[1], p.values["out." + loop] ?? null];
        row.forEach((v, i) => d[i].push(v));
        c.plot.setData(d);
      }
    }
    function estimates(h) {
      const box = document.querySelector('[data-list="estimates"]');
      if (!box || typeof uPlot === "undefined") return;
      box.replaceChildren();
      const all = Object.assign({}, h.estimates || {});
      for (const [name, s] of Object.entries(h.samples || {})) all[name] = { t_s: s.t_s, value: s.value, sd: null };
      for (const [name, e] of Object.entries(all)) {
        const fig = el("figure", { class: "trend", "data-estimate": name });
        fig.append(el("figcaption", {}, name + (e.sd ? " (estimate ± 2 sd)" : " (at-line results)")));
        box.append(fig);
        const x = e.t_s.map((t) => t / 3600);
        const lo = e.sd ? e.value.map((v, i) => v === null || e.sd[i] === null ? null : v - 2 * e.sd[i]) : x.map(() => null);
        const hi = e.sd ? e.value.map((v, i) => v === null || e.sd[i] === null ? null : v + 2 * e.sd[i]) : x.map(() => null);
        new uPlot({ width: Math.max(280, box.clientWidth || 600), height: 160, scales: { x: { time: false } },
                    series: [{ label: "h" },
                             { label: name, stroke: "#6a3d9a", points: { show: !e.sd, size: 5 }, width: e.sd ? 1.5 : 0 },
                             { label: "-2 sd", stroke: "#b9a3d0", dash: [2, 3] },
                             { label: "+2 sd", stroke: "#b9a3d0", dash: [2, 3] }] },
                  [x, e.value, lo, hi], fig);
      }
    }
    function setPv(loop, pv) { if (!(loop in pvOf)) pvOf[loop] = pv; }
    return { fromHistory: fromHistory, fromLive: fromLive, addPoint: addPoint, setPv: setPv };
  })();

  async function loadTrends(root, window) {
    const id = root.dataset.reactor;
    if (root.dataset.hasHistory === "true") {
      const r = await fetch("/api/reactors/" + encodeURIComponent(id) + "/history?window_s=" + window,
                            { headers: { Accept: "application/json" } });
      if (r.ok) { trends.fromHistory(await r.json()); return; }
    }
    const r = await fetch("/api/reactors/" + encodeURIComponent(id) + "?trend=1",
                          { headers: { Accept: "application/json" } });
    if (!r.ok) return;
    const body = await r.json();
    for (const [loop, k] of Object.entries(body.key_readings || {})) trends.setPv(loop, k.pv);
    trends.fromLive(body.trend || [], body.settings || {});
  }

  // --- wiring ----------------------------------------------------------------------------------
  const reactorRoot = page === "reactor" ? document.querySelector("[data-reactor]") : null;
  if (reactorRoot) {
    for (const b of document.querySelectorAll("[data-window]")) {
      b.addEventListener("click", () => {
        for (const o of document.querySelectorAll("[data-window]")) o.setAttribute("aria-pressed", "false");
        b.setAttribute("aria-pressed", "true");
        loadTrends(reactorRoot, b.dataset.window);
      });
    }
    loadTrends(reactorRoot, "1h");
  }
  if (page === "overview" || page === "reactor") {
    const only = reactorRoot ? "?reactor=" + encodeURIComponent(reactorRoot.dataset.reactor) : "";
    const source = new EventSource("/events" + only);
    source.addEventListener("reactor", (ev) => {
      const r = JSON.parse(ev.data);
      const root = byData(document, "data-reactor", r.id);
      if (root) apply(root, r);
      else if (page === "overview") location.reload(); // a new reactor: render it server-side
    });
    source.addEventListener("link", (ev) => {
      const l = document.querySelector('[data-field="link"]');
      if (l) l.textContent = JSON.parse(ev.data).link;
    });
    source.addEventListener("logout", () => { source.close(); location.assign("/login"); });
  }
})();
