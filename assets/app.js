// alertcall dashboard: plain JavaScript, no dependencies. Everything it shows comes from
// /api/v1 (the same API machines use); /api/v1/events says when something changed.
"use strict";

const state = { me: null, view: "board", alertId: null, phonesOpen: {} };

// ---- small helpers ---------------------------------------------------------------------

/** Builds an element; text is always set as text, never parsed as HTML. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.method && options.method !== "GET" && state.me && state.me.csrf_token) {
    headers["X-CSRF-Token"] = state.me.csrf_token;
  }
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    credentials: "same-origin",
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    window.location.href = "/login";
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

const pad = (n) => String(n).padStart(2, "0");
/** Exact local time with milliseconds, for timelines. */
function exact(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}
function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}
const percent = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
function isoFromInput(value) {
  return value ? new Date(value).toISOString() : "";
}
function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}
// What the escalation words on badges mean, shown on hover.
const BADGE_HELP = {
  stale: "Not called: already older than ALERTCALL_MAX_ALERT_AGE when alertcall first saw it.",
  failed: "Not called: no escalation policy matched this alert.",
  "not paged": "alertcall has not taken this alert in (yet): only active alerts of severity critical are called.",
  exhausted: "Every step was called and nobody pressed 1; the last step is called again.",
  due: "A call is about to be placed (or is retried after a provider error).",
  waiting: "Calls went out; waiting for someone to press 1 before the next step.",
};
function badge(text, kind, title) {
  return el("span", { class: `badge ${String(kind || text).replace(/\s+/g, "-")}`, title: title || BADGE_HELP[text] }, text);
}
// A call's own outcome, in the server's words (outcome_label): its "failed" is not a page's.
const CALL_HELP = {
  failed: "The provider could not place or connect this call (the alert's timeline says why).",
  acknowledged: "Pressed 1 (or 4), or said yes: the alert was acknowledged on this call.",
  declined: "Pressed 3 or said they cannot respond; the escalation moved on.",
  "picked up": "Picked up, but did not acknowledge (yet).",
  cancelled: "Hung up by alertcall because someone else acknowledged.",
};
const callBadge = (c) => badge(c.outcome_label, `call-${c.outcome}`, CALL_HELP[c.outcome_label]);
// Skipped (stale) alerts and those no policy matches (failed) are on no step of any policy.
const onStep = (a) => a.escalation && !["stale", "failed"].includes(a.escalation.state);
// A call's step (and round); the fallback contact's calls are on no step of any policy.
function callStep(c) {
  return c.step < 0 ? "fallback contact" : `${c.step + 1}${c.round ? ` (round ${c.round + 1})` : ""}`;
}

// A red banner per alert that reaches nobody: the reason, what happens next, the fix.
function unreachedBanner(a) {
  const u = a.unreached;
  return el("div", { class: "banner unreached", role: "alert", "data-alert": a.id, "data-reason": u.reason },
    el("a", { href: `#/alert/${encodeURIComponent(a.id)}` }, `NOBODY IS BEING REACHED${a.room ? ` (${a.room})` : ""}: `),
    u.message,
    el("div", { class: "banner-next" }, "Next: ", u.next),
    el("div", { class: "banner-fix" }, "Fix: ", u.fix),
  );
}

// What keeps alertcall from reaching people, beyond any one alert (GET /api/v1/health): a
// provider that cannot place calls, a database refusing writes, texts that cannot be
// acknowledged by a reply.
function systemNotices(h) {
  const notices = [];
  for (const p of h.providers.filter((p) => p.status !== "ok")) {
    notices.push(["critical", `${p.name} cannot place calls${p.detail ? `: ${p.detail}` : ""}. Nobody can be phoned until it can; see /readyz and the log.`]);
  }
  if (h.database !== "ok") {
    notices.push(["critical", "The database does not answer: new alerts cannot be taken in until it is back."]);
  }
  if (h.database_writes === "failing") {
    notices.push(["critical", "The database refuses writes (a full disk, an I/O error): acknowledgements and calls are retried until it accepts them. Free space or fix the disk."]);
  }
  if (h.sms_reply_ack === "off") {
    notices.push(["warning", "A reply of 1 to a text does not acknowledge yet: set the Vonage SMS Inbound URL that `alertcall check` prints (or VONAGE_SIGNATURE_SECRET). Nurses acknowledge by answering the call or on this board."]);
  }
  return notices.map(([level, text]) => el("div", { class: `notice ${level}`, role: level === "critical" ? "alert" : "status" }, text));
}

// ---- the alert board ----------------------------------------------------------------------

// Where an HL7 alarm came from: the device via the sending application (their first HL7
// component each; the whole values in the tooltip). Empty for alerts the hospital app wrote.
function sourceText(s) {
  if (!s) return "";
  const first = (v) => v.split("^")[0] || v;
  return s.device ? `${first(s.device)} via ${first(s.application)}` : first(s.application);
}

function sourceTitle(s) {
  return s ? `device: ${s.device || "not sent"}; sending application: ${s.application}` : null;
}

async function loadBoard() {
  const [alerts, health] = await Promise.all([api("/api/v1/alerts"), api("/api/v1/health")]);
  document.getElementById("system-notices").replaceChildren(...systemNotices(health));
  const tbody = document.querySelector("#alerts tbody");
  fill(
    tbody,
    alerts.map((a) => {
      const calling = a.calling.length
        ? a.calling.map((c) => `${c.person_name || c.person || c.to} (${c.outcome_label})`).join(", ")
        : "";
      const step = onStep(a)
        ? `${a.escalation.unit || ""} step ${a.escalation.step + 1}${a.escalation.round ? `, round ${a.escalation.round + 1}` : ""}`
        : "";
      return el(
        "tr",
        { class: `sev-${a.severity} status-${a.live_status.replace(/\s+/g, "-")}`, "data-alert": a.id },
        el("td", {}, badge(a.severity)),
        el("td", {}, a.room || ""),
        el("td", {}, a.patient || ""),
        el("td", {}, el("a", { href: `#/alert/${encodeURIComponent(a.id)}` }, a.title || a.message || a.alert_type || a.id)),
        el("td", { class: "source-col", title: sourceTitle(a.source) }, sourceText(a.source)),
        el("td", { class: "age", "data-since": a.triggered_at }, duration(a.age_seconds)),
        el("td", {}, step),
        el("td", { class: "calling" }, calling),
        el("td", {}, badge(a.skipped || a.live_status, a.live_status, a.unreached && a.unreached.message)),
        el("td", { class: "admin-only" }, el("button", { class: "small", onclick: () => act(a.id, "acknowledge") }, "Acknowledge")),
      );
    }),
  );
  // The Source column only when an alert on the board came through HL7.
  document.getElementById("alerts").classList.toggle("with-source", alerts.some((a) => a.source));
  document.getElementById("no-alerts").hidden = alerts.length > 0;
  const skipped = alerts.filter((a) => a.skipped).length;
  const resolveSkipped = document.getElementById("resolve-skipped");
  resolveSkipped.hidden = skipped === 0;
  resolveSkipped.textContent = `Resolve ${skipped} skipped alert${skipped === 1 ? "" : "s"}`;
  document.getElementById("unreached-banners").replaceChildren(
    ...alerts.filter((a) => a.unreached).map(unreachedBanner),
  );
}

function tickAges() {
  for (const cell of document.querySelectorAll("td.age[data-since]")) {
    cell.textContent = duration((Date.now() - new Date(cell.dataset.since).getTime()) / 1000);
  }
}

async function act(id, action) {
  const error = document.getElementById("action-error");
  error.textContent = "";
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", body: {} });
  } catch (e) {
    error.textContent = e.message;
    if (state.view === "board") alert(e.message);
  }
  refresh();
}

async function raise(event) {
  event.preventDefault();
  const form = event.target;
  const error = document.getElementById("raise-error");
  error.textContent = "";
  const body = { message: form.message.value, severity: form.severity.value };
  if (form.room.value.trim()) body.room = form.room.value.trim();
  try {
    await api("/api/v1/alerts", { method: "POST", body });
  } catch (e) {
    error.textContent = e.message;
  }
  refresh();
}

// ---- virtual phones (simulator) -------------------------------------------------------------

async function loadPhones() {
  if (!state.me.simulator) return;
  const calls = await api("/api/sim/calls");
  const live = calls.filter((c) => c.state !== "ended");
  const list = document.getElementById("phone-list");
  // Every change anywhere redraws the phones: keep what is being typed in a say box.
  const typing = new Map();
  for (const input of list.querySelectorAll(".phone form.say input")) {
    const call = input.closest(".phone").dataset.call;
    typing.set(call, { value: input.value, focused: input === document.activeElement });
  }
  list.replaceChildren(
    ...live.map((c) => {
      const keys = ["1", "2", "3", "4", "5", "9"].map((k) =>
        el("button", { class: "key", disabled: !c.awaiting_key, "data-key": k, onclick: () => phone(c.id, "press", { keys: k }) }, k),
      );
      return el(
        "div",
        { class: `phone ${c.state}`, "data-call": c.id },
        el("div", { class: "phone-head" }, el("strong", {}, c.to), " ", badge(c.state)),
        el("div", { class: "heard" }, ...c.heard.map((line) => el("p", {}, line))),
        // Answering, pressing and saying take the admin role (the server checks it too).
        c.state === "ringing"
          ? el("div", { class: "row admin-only" },
              el("button", { class: "answer", onclick: () => phone(c.id, "answer") }, "Answer"),
              el("button", { class: "secondary", onclick: () => phone(c.id, "hangup") }, "Decline"))
          : el("div", { class: "admin-only" },
              el("div", { class: "keypad" }, keys),
              el("form", { class: "say", onsubmit: (e) => { e.preventDefault(); phone(c.id, "say", { text: e.target.text.value }); } },
                el("input", { name: "text", placeholder: "say… e.g. on my way", disabled: !c.awaiting_key }),
                el("button", { type: "submit", disabled: !c.awaiting_key }, "Say")),
              el("button", { class: "secondary", onclick: () => phone(c.id, "hangup") }, "Hang up")),
      );
    }),
  );
  for (const [call, { value, focused }] of typing) {
    const input = list.querySelector(`.phone[data-call="${CSS.escape(call)}"] form.say input`);
    if (!input) continue;
    input.value = value;
    if (focused) input.focus();
  }
  document.getElementById("no-phones").hidden = live.length > 0;
}

/** Cutover day: resolves every alert alertcall skipped as too old when it first saw it. */
async function resolveSkipped() {
  try {
    await api("/api/v1/alerts/resolve-skipped", { method: "POST", body: {} });
  } catch (e) {
    alert(e.message);
  }
  refresh();
}

async function phone(id, action, body) {
  try {
    await api(`/api/sim/calls/${encodeURIComponent(id)}/${action}`, { method: "POST", body: body || {} });
  } catch (e) {
    alert(e.message);
  }
  refresh();
}

// ---- one alert --------------------------------------------------------------------------------

async function loadAlert(id) {
  const detail = await api(`/api/v1/alerts/${encodeURIComponent(id)}`);
  const a = detail.alert;
  document.getElementById("alert-head").replaceChildren(
    a.unreached ? unreachedBanner(a) : "",
    el("h2", { "data-alert": a.id }, badge(a.severity), " ", a.title || a.message || a.id, " ", badge(a.skipped || a.live_status, a.live_status, a.unreached && a.unreached.message)),
    el("dl", { class: "facts" },
      el("dt", {}, "Room"), el("dd", {}, a.room || "–"),
      el("dt", {}, "Patient"), el("dd", {}, a.patient || "–"),
      el("dt", {}, "Message"), el("dd", {}, a.message || "–"),
      ...(a.source
        ? [el("dt", {}, "Source"), el("dd", { id: "alarm-source", title: sourceTitle(a.source) }, sourceText(a.source))]
        : []),
      el("dt", {}, "Triggered"), el("dd", {}, exact(a.triggered_at)),
      el("dt", {}, "Unit / step"), el("dd", { id: "unit-step" },
        onStep(a) ? `${a.escalation.unit || "–"} · step ${a.escalation.step + 1} · ` : "",
        badge(a.escalation ? a.escalation.state : "not paged")),
      el("dt", {}, "Acknowledged by"), el("dd", { id: "acked-by" }, a.acknowledged_by || "–"),
      el("dt", {}, "Time to acknowledge"), el("dd", { id: "time-to-ack" }, duration(detail.time_to_acknowledge_seconds)),
    ),
  );
  document.getElementById("ack-btn").disabled = a.status !== "active";
  document.getElementById("resolve-btn").disabled = a.status === "resolved";
  fill(
    document.querySelector("#alert-calls tbody"),
    detail.calls.map((c) =>
      el("tr", {},
        el("td", {}, exact(c.created_at)),
        el("td", {}, callStep(c)),
        el("td", {}, c.person_name || c.person || ""),
        el("td", {}, c.to),
        el("td", {}, callBadge(c)),
        el("td", {}, exact(c.answered_at)),
        el("td", {}, exact(c.ended_at)),
      ),
    ),
  );
  // The sentences for people; the raw entry behind "details" for IT.
  document.getElementById("timeline").replaceChildren(
    ...detail.timeline.map((t) =>
      el("li", { class: `event ${t.kind.replace(/\./g, "-")}` },
        el("span", { class: "sentence" }, t.text),
        el("details", { class: "raw" },
          el("summary", {}, "details"),
          el("time", { datetime: t.at }, exact(t.at)),
          " ",
          el("strong", {}, t.kind),
          " ",
          el("span", { class: "muted" }, t.source),
          Object.keys(t.detail || {}).length ? el("code", {}, JSON.stringify(t.detail)) : null,
        ),
      ),
    ),
  );
}

// ---- on call, history, analytics -----------------------------------------------------------

async function loadOnCall() {
  const rows = await api("/api/v1/oncall");
  fill(
    document.querySelector("#oncall tbody"),
    rows.map((r) =>
      el("tr", {},
        el("td", {}, r.schedule), el("td", {}, r.shift), el("td", {}, `${r.name} (${r.person})`),
        el("td", {}, r.from), el("td", {}, r.until), el("td", {}, r.next_handover || "–"),
      ),
    ),
  );
  document.getElementById("no-oncall").hidden = rows.length > 0;
}

async function loadHistory() {
  const form = document.getElementById("history-filter");
  const params = new URLSearchParams();
  for (const name of ["from", "to"]) if (form[name].value) params.set(name, isoFromInput(form[name].value));
  for (const name of ["unit", "nurse", "outcome"]) if (form[name].value.trim()) params.set(name, form[name].value.trim());
  const calls = await api(`/api/v1/calls?${params}`);
  fill(
    document.querySelector("#history tbody"),
    calls.map((c) =>
      el("tr", {},
        el("td", {}, exact(c.created_at)),
        el("td", {}, el("a", { href: `#/alert/${encodeURIComponent(c.alert_id)}` }, c.alert_id.slice(0, 8))),
        el("td", {}, c.person_name || c.person || ""), el("td", {}, c.to),
        el("td", {}, callStep(c)), el("td", {}, callBadge(c)),
        el("td", {}, exact(c.answered_at)), el("td", {}, exact(c.ended_at)),
      ),
    ),
  );
  document.getElementById("no-history").hidden = calls.length > 0;
}

const SEVERITY_COLOURS = { critical: "#c62828", high: "#ef6c00", medium: "#f9a825", low: "#2e7d32" };

/** Bar chart of alerts per hour, stacked by severity. */
function hoursChart(perHour, from, to) {
  const hours = [];
  const start = new Date(from);
  start.setMinutes(0, 0, 0);
  for (let t = start.getTime(); t < new Date(to).getTime(); t += 3600e3) hours.push(t);
  const bySlot = new Map(hours.map((h) => [h, {}]));
  for (const row of perHour) {
    const slot = bySlot.get(new Date(row.hour).getTime());
    if (slot) slot[row.severity] = (slot[row.severity] || 0) + row.count;
  }
  const max = Math.max(1, ...[...bySlot.values()].map((s) => Object.values(s).reduce((a, b) => a + b, 0)));
  const width = 640, height = 180, left = 30, bottom = 20;
  const bar = (width - left) / Math.max(1, hours.length);
  const bars = [];
  hours.forEach((h, i) => {
    let y = height - bottom;
    for (const [severity, count] of Object.entries(bySlot.get(h))) {
      const barHeight = (count / max) * (height - bottom - 10);
      y -= barHeight;
      bars.push(svg("rect", { x: left + i * bar + 1, y, width: Math.max(1, bar - 2), height: barHeight, fill: SEVERITY_COLOURS[severity] || "#607d8b", class: "bar" },
        svg("title", {}, `${new Date(h).toLocaleString()} · ${severity}: ${count}`)));
    }
  });
  const labels = [];
  const every = Math.max(1, Math.ceil(hours.length / 8));
  hours.forEach((h, i) => {
    if (i % every === 0) labels.push(svg("text", { x: left + i * bar, y: height - 4, class: "axis" }, `${pad(new Date(h).getHours())}:00`));
  });
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Alerts per hour", class: "chart-svg", id: "hours-svg" },
    svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis-line" }),
    svg("text", { x: 0, y: 12, class: "axis" }, String(max)),
    bars, labels);
}

/** Horizontal bars of time-to-acknowledge p50 and p90 per unit. */
function unitsChart(perUnit) {
  const rows = perUnit.filter((u) => u.time_to_acknowledge.count > 0);
  const max = Math.max(1, ...rows.map((u) => u.time_to_acknowledge.p90_seconds || 0));
  const width = 640, rowHeight = 34, left = 110;
  const height = Math.max(40, rows.length * rowHeight + 10);
  const scale = (s) => ((s || 0) / max) * (width - left - 60);
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Time to acknowledge by unit", class: "chart-svg", id: "units-svg" },
    rows.length === 0 ? svg("text", { x: 10, y: 25, class: "axis" }, "No acknowledged alerts in this range") : null,
    rows.map((u, i) => {
      const y = 5 + i * rowHeight;
      const t = u.time_to_acknowledge;
      return svg("g", {},
        svg("text", { x: 0, y: y + 18, class: "axis" }, u.unit || "(none)"),
        svg("rect", { x: left, y, width: Math.max(1, scale(t.p90_seconds)), height: 12, class: "p90" }),
        svg("rect", { x: left, y: y + 13, width: Math.max(1, scale(t.p50_seconds)), height: 12, class: "p50" }),
        svg("text", { x: left + scale(t.p90_seconds) + 4, y: y + 11, class: "axis" }, `p90 ${duration(t.p90_seconds)}`),
        svg("text", { x: left + scale(t.p50_seconds) + 4, y: y + 24, class: "axis" }, `p50 ${duration(t.p50_seconds)}`));
    }));
}

async function loadAnalytics() {
  const form = document.getElementById("analytics-range");
  const params = new URLSearchParams();
  for (const name of ["from", "to"]) if (form[name].value) params.set(name, isoFromInput(form[name].value));
  // A preset ("last 24 h") runs up to the moment of asking: no `to`, `from` that long ago.
  if (!form.from.value && !form.to.value && form.dataset.hours) {
    params.set("from", new Date(Date.now() - Number(form.dataset.hours) * 3600e3).toISOString());
  }
  const a = await api(`/api/v1/analytics?${params}`);
  document.getElementById("range-label").textContent = `${exact(a.from)} – ${exact(a.to)}`;
  const kpi = (label, value, id) => el("div", { class: "kpi", id }, el("span", { class: "value" }, value), el("span", { class: "label" }, label));
  const t = a.time_to_acknowledge;
  document.getElementById("kpis").replaceChildren(
    kpi("alerts", a.alerts, "kpi-alerts"),
    kpi("paged", a.alerts_paged, "kpi-paged"),
    kpi("calls made", a.calls, "kpi-calls"),
    kpi("answer rate (pressed 1)", percent(a.answer_rate), "kpi-answer-rate"),
    kpi("acknowledged", `${a.acknowledged} (${percent(a.acknowledgement_rate)})`, "kpi-acknowledged"),
    kpi("time to ack p50 / p90 / max", `${duration(t.p50_seconds)} / ${duration(t.p90_seconds)} / ${duration(t.max_seconds)}`, "kpi-tta"),
    kpi("escalated", a.escalated, "kpi-escalated"),
    kpi("exhausted", a.exhausted, "kpi-exhausted"),
  );
  document.getElementById("chart-hours").replaceChildren(hoursChart(a.per_hour, a.from, a.to));
  document.getElementById("chart-units").replaceChildren(unitsChart(a.per_unit));
  fill(
    document.querySelector("#per-nurse tbody"),
    a.per_nurse.map((n) =>
      el("tr", {},
        el("td", {}, `${n.name} (${n.person})`), el("td", {}, n.calls), el("td", {}, n.answered),
        el("td", { class: "outcomes" }, n.outcomes.map((o) => `${o.calls} ${o.label}`).join(" · ")),
        el("td", {}, percent(n.answer_rate)), el("td", {}, duration(n.time_to_answer.p50_seconds)),
        el("td", {}, duration(n.time_to_answer.p90_seconds)), el("td", {}, duration(n.time_to_answer.max_seconds)),
      ),
    ),
  );
  fill(
    document.querySelector("#per-unit tbody"),
    a.per_unit.map((u) =>
      el("tr", {},
        el("td", {}, u.unit || "(none)"), el("td", {}, u.alerts), el("td", {}, u.acknowledged),
        el("td", {}, u.escalated), el("td", {}, u.exhausted),
        el("td", {}, duration(u.time_to_acknowledge.p50_seconds)), el("td", {}, duration(u.time_to_acknowledge.p90_seconds)),
        el("td", {}, duration(u.time_to_acknowledge.max_seconds)),
      ),
    ),
  );
}

// ---- routing and live updates -------------------------------------------------------------------

function route() {
  const hash = window.location.hash || "#/";
  const alertMatch = hash.match(/^#\/alert\/(.+)$/);
  state.view = alertMatch ? "alert" : { "#/oncall": "oncall", "#/history": "history", "#/analytics": "analytics" }[hash] || "board";
  state.alertId = alertMatch ? decodeURIComponent(alertMatch[1]) : null;
  delete document.body.dataset.loaded;
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${state.view}`;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === state.view);
  refresh();
}

let refreshing = null;
let again = false;
/** Reloads what the current view shows; calls during a reload coalesce into one more. */
async function refresh() {
  if (refreshing) {
    again = true;
    return refreshing;
  }
  const view = state.view;
  refreshing = (async () => {
    try {
      if (view === "board") await Promise.all([loadBoard(), loadPhones()]);
      else if (view === "alert") await Promise.all([loadAlert(state.alertId), loadPhones()]);
      else if (view === "oncall") await loadOnCall();
      else if (view === "history") await loadHistory();
      else if (view === "analytics") await loadAnalytics();
      // Tells tests (and nothing else) which view finished loading.
      if (view === state.view) document.body.dataset.loaded = view;
    } catch (e) {
      console.error(e);
    }
  })();
  await refreshing;
  refreshing = null;
  if (again) {
    again = false;
    refresh();
  }
}

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/v1/events");
  source.addEventListener("open", () => {
    live.textContent = "live";
    live.className = "live on";
  });
  source.addEventListener("change", () => {
    if (state.view === "board" || state.view === "alert") refresh();
  });
  source.addEventListener("error", () => {
    live.textContent = "reconnecting";
    live.className = "live off";
  });
}

async function start() {
  state.me = await api("/api/v1/me");
  document.getElementById("who").textContent = `${state.me.name} (${state.me.role})`;
  document.getElementById("hospital").textContent = state.me.hospital_name;
  document.body.classList.toggle("is-admin", state.me.role === "admin");
  document.getElementById("phones").hidden = !state.me.simulator;
  document.getElementById("raise").addEventListener("submit", raise);
  document.getElementById("ack-btn").addEventListener("click", () => act(state.alertId, "acknowledge"));
  document.getElementById("resolve-btn").addEventListener("click", () => act(state.alertId, "resolve"));
  document.getElementById("resolve-skipped").addEventListener("click", resolveSkipped);
  document.getElementById("logout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": state.me.csrf_token || "" }, credentials: "same-origin" });
    window.location.href = "/login";
  });
  document.getElementById("history-filter").addEventListener("submit", (e) => { e.preventDefault(); loadHistory(); });
  const range = document.getElementById("analytics-range");
  range.addEventListener("submit", (e) => { e.preventDefault(); loadAnalytics(); });
  const preset = (hours) => {
    range.dataset.hours = hours;
    range.from.value = "";
    range.to.value = "";
  };
  for (const button of range.querySelectorAll("[data-preset]")) {
    button.addEventListener("click", () => { preset(Number(button.dataset.preset)); loadAnalytics(); });
  }
  preset(24);
  window.addEventListener("hashchange", route);
  setInterval(tickAges, 1000);
  listen();
  route();
}

document.addEventListener("DOMContentLoaded", start);
