// conn ui: every page is this script reading the JSON API (/api, see /api/openapi.json).
// Data is only ever put into the page as text (textContent, attributes), never as HTML.
"use strict";

const AUTH = document.querySelector('meta[name="conn-auth"]').content;
const CSRF = document.querySelector('meta[name="conn-csrf"]').content;

function keepToken() {
  // With a token the URL carries it after '#', which no server or Referer ever sees.
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("conn-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return Boolean(m);
}
keepToken();
window.addEventListener("hashchange", () => { if (keepToken()) route(); });

function headers(post) {
  const h = { "Accept": "application/json" };
  const token = sessionStorage.getItem("conn-token");
  if (AUTH === "token" && token) h["Authorization"] = "Bearer " + token;
  if (post) {
    h["Content-Type"] = "application/json";
    if (AUTH === "csrf") h["X-Conn-CSRF"] = CSRF;
  }
  return h;
}

async function api(path, body) {
  const post = body !== undefined;
  const r = await fetch("/api/" + path, {
    method: post ? "POST" : "GET", headers: headers(post), credentials: "same-origin",
    body: post ? JSON.stringify(body) : undefined,
  });
  const data = await r.json();
  if (!r.ok) {
    const msg = (data.error && data.error.message) || r.statusText;
    throw new Error(msg);
  }
  return data;
}

// h("tag", {attr: value, onclick: fn}, child, ...): children are nodes or text.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;
const fmt = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en"));
function when(t) {
  if (t === null || t === undefined) return "";
  const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
const badge = (s) => h("span", { class: "status " + s, "data-testid": "status" }, s);
const card = (label, n, id) => h("div", { class: "card", "data-testid": id || null },
  h("div", { class: "n" }, typeof n === "number" ? fmt(n) : n), h("div", { class: "l" }, label));

function table(cols, rows, attrs) {
  return h("table", attrs || {},
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { class: c.num ? "num" : null }, c.t)))),
    h("tbody", {}, rows));
}

const main = () => document.getElementById("main");
function show(...nodes) {
  main().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
}
function fail(e) { show(h("p", { class: "error", role: "alert" }, "Error: " + e.message)); }

// Rows sent (and rejected) by each recent run, oldest first: one bar pair per run.
function chart(series, w = 180, hgt = 36) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", w); svg.setAttribute("height", hgt);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "rows sent per run: " + series.map((s) => s.sent).join(", "));
  const max = Math.max(1, ...series.map((s) => s.sent + s.rejected));
  const bw = w / Math.max(series.length, 10);
  series.forEach((s, i) => {
    const sentH = (s.sent / max) * (hgt - 2), rejH = (s.rejected / max) * (hgt - 2);
    for (const [cls, y, hh] of [["sent", hgt - sentH, sentH], ["rej", hgt - sentH - rejH, rejH]]) {
      if (hh <= 0) continue;
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("class", cls); r.setAttribute("x", i * bw + 1);
      r.setAttribute("y", y); r.setAttribute("width", Math.max(bw - 2, 1));
      r.setAttribute("height", hh);
      const t = document.createElementNS(NS, "title");
      t.textContent = `${when(s.started_at)}: ${s.sent} sent, ${s.rejected} rejected`;
      r.append(t);
      svg.append(r);
    }
  });
  return svg;
}

function syncStatus(s) {
  if (s.running) return "running";
  if (s.paused) return "paused";
  return s.last_run ? s.last_run.status : "never run";
}

async function act(name, action, btn) {
  btn.disabled = true;
  try {
    const body = action === "pause" ? { reason: "paused from conn ui" } : {};
    await api(`syncs/${enc(name)}/${action}`, body);
    if (action === "run" || action === "retry") await waitForRun(name);
  } catch (e) {
    alert(e.message);
  }
  route();
}

async function waitForRun(name) {
  for (let i = 0; i < 600; i++) {
    const s = await api(`syncs/${enc(name)}`);
    if (!s.running) return;
    await new Promise((r) => setTimeout(r, 300));
  }
}

function actionButtons(s, extra) {
  return h("div", { class: "actions" },
    h("button", { class: "primary", "data-testid": "run-now", disabled: s.running,
                  onclick: (e) => act(s.name, "run", e.target) }, s.running ? "Running…" : "Run now"),
    s.paused
      ? h("button", { "data-testid": "resume", onclick: (e) => act(s.name, "resume", e.target) }, "Resume")
      : h("button", { "data-testid": "pause", onclick: (e) => act(s.name, "pause", e.target) }, "Pause"),
    h("a", { href: `/syncs/${enc(s.name)}/preview`, "data-testid": "preview-link" },
      h("button", {}, "Preview next run")),
    extra || null);
}

// --- pages -------------------------------------------------------------------------------

async function syncsPage() {
  const data = await api("syncs");
  document.title = "conn: syncs";
  const rows = data.syncs.map((s) => h("tr", { "data-sync": s.name },
    h("td", {}, h("a", { href: `/syncs/${enc(s.name)}` }, s.name)),
    h("td", {}, `${s.source} → ${s.destination}.${s.object}`),
    h("td", {}, s.mode),
    h("td", {}, s.schedule ? s.schedule.describe : h("span", { class: "muted" }, "by hand")),
    h("td", {}, badge(syncStatus(s))),
    h("td", { class: "when" }, s.last_run ? h("a", { href: `/runs/${enc(s.last_run.run_id)}` }, when(s.last_run.started_at)) : ""),
    h("td", { class: "num" }, s.last_run ? fmt(s.last_run.sent) : ""),
    h("td", { class: "num" }, s.last_run ? fmt(s.last_run.rejected) : ""),
    h("td", {}, chart(s.series)),
    h("td", {}, actionButtons(s))));
  show(h("h1", {}, "Syncs"), h("p", { class: "muted" }, data.project),
    table([{ t: "sync" }, { t: "from → to" }, { t: "mode" }, { t: "schedule" }, { t: "status" },
           { t: "last run" }, { t: "sent", num: 1 }, { t: "rejected", num: 1 },
           { t: "rows sent per run" }, { t: "" }], rows, { "data-testid": "syncs" }));
}

// The vendor exchange that rejected a row (secrets masked, texts cut by the server):
// "POST /path -> HTTP 400", opening onto the row's part of the request and the answer.
function excerpt(ex) {
  if (!ex) return "";
  return h("details", { "data-testid": "excerpt" },
    h("summary", {}, `${ex.method} ${ex.path} \u2192 HTTP ${ex.status}`),
    h("div", { class: "muted" }, "request (this row)"), h("pre", { "data-testid": "excerpt-request" }, ex.request || ""),
    h("div", { class: "muted" }, "response"), h("pre", { "data-testid": "excerpt-response" }, ex.response || ""));
}

function rejectedTable(rows) {
  return table([{ t: "key" }, { t: "reason (vendor's message)" }, { t: "exchange" }, { t: "op" },
                { t: "run" }, { t: "since" }, { t: "tries", num: 1 }],
    rows.map((r) => h("tr", { "data-key": r.key === null ? "" : String(r.key) },
      h("td", {}, r.key === null ? "(none)" : String(r.key)),
      h("td", {}, h("code", {}, r.reason)),
      h("td", {}, excerpt(r.excerpt)),
      h("td", {}, r.op || ""),
      h("td", {}, r.run_id ? h("a", { href: `/runs/${enc(r.run_id)}` }, r.run_id) : ""),
      h("td", { class: "when" }, when(r.since || r.at)),
      h("td", { class: "num" }, fmt(r.attempts)))), { "data-testid": "rejected" });
}

function rejectedSearch(sync) {
  const out = h("div", {});
  const input = h("input", { type: "search", placeholder: "search rejected rows by key",
                             "data-testid": "key-search", "aria-label": "key" });
  async function load() {
    try {
      const q = input.value ? `&key=${enc(input.value)}` : "";
      const data = await api(`syncs/${enc(sync)}/rejected?limit=200${q}`);
      out.replaceChildren(data.rejected.length ? rejectedTable(data.rejected)
        : h("p", { class: "muted", "data-testid": "no-rejected" }, "No rejected rows" + (input.value ? " with that key." : ".")));
    } catch (e) { out.replaceChildren(h("p", { class: "error" }, e.message)); }
  }
  input.addEventListener("input", load);
  load();
  return h("div", {}, h("form", { onsubmit: (e) => { e.preventDefault(); load(); } }, input), out);
}

function runsTable(runs) {
  return table([{ t: "run" }, { t: "status" }, { t: "started" }, { t: "read", num: 1 },
                { t: "withheld", num: 1 }, { t: "ins", num: 1 }, { t: "upd", num: 1 },
                { t: "del", num: 1 }, { t: "rejected", num: 1 }, { t: "seconds", num: 1 }],
    runs.map((r) => { const rep = r.report || {}; return h("tr", { "data-run": r.run_id },
      h("td", {}, h("a", { href: `/runs/${enc(r.run_id)}` }, r.run_id)),
      h("td", {}, badge(r.status)), h("td", { class: "when" }, when(r.started_at)),
      h("td", { class: "num" }, fmt(r.rows_read)), h("td", { class: "num" }, fmt(rep.consent_denied)),
      h("td", { class: "num" }, fmt(r.inserted)), h("td", { class: "num" }, fmt(r.updated)),
      h("td", { class: "num" }, fmt(r.deleted)), h("td", { class: "num" }, fmt(r.rejected)),
      h("td", { class: "num" }, r.seconds)); }), { "data-testid": "runs" });
}

async function syncPage(name) {
  const s = await api(`syncs/${enc(name)}`);
  document.title = `conn: ${name}`;
  const retry = s.rejected_rows ? h("button", { "data-testid": "retry",
    onclick: (e) => act(name, "retry", e.target) }, `Retry ${fmt(s.rejected_rows)} rejected row(s)`) : null;
  show(h("h1", {}, name, " ", badge(syncStatus(s))),
    h("p", { class: "muted" }, `${s.source} → ${s.destination}.${s.object}, mode ${s.mode}` +
      (s.schedule ? `, ${s.schedule.describe}` : ", run by hand")),
    s.paused ? h("p", { class: "notice", "data-testid": "paused-notice" },
      `Paused since ${s.paused.since}` + (s.paused.reason ? ` (${s.paused.reason})` : "") +
      ": conn sync and conn serve skip it.") : null,
    actionButtons(s, retry),
    h("h2", {}, "Rows sent per run"), chart(s.series, 600, 80),
    h("h2", {}, "Recent runs"), s.runs.length ? runsTable(s.runs) : h("p", { class: "muted" }, "No runs yet."),
    h("h2", {}, "Rejected rows"), rejectedSearch(name));
}

async function runPage(id) {
  const r = await api(`runs/${enc(id)}`);
  document.title = `conn: run ${id}`;
  const c = r.counts;
  const funnel = r.consent_funnel;
  const max = Math.max(1, funnel.rows || 0);
  const purposes = funnel.purposes.map((p) => h("tr", {},
    h("td", {}, p.purpose), h("td", { class: "num" }, fmt(p.rows)), h("td", { class: "num" }, fmt(p.passed)),
    h("td", {}, Object.entries(p.withheld).map(([k, v]) => `${k}: ${fmt(v)}`).join(", ")),
    h("td", {}, Object.entries(p.legal_bases).map(([k, v]) => `${k}: ${fmt(v)}`).join(", ")),
    h("td", { class: "barcell" }, h("div", { class: "bar", title: `${p.passed} of ${p.rows}`,
      "data-width": Math.round((100 * p.passed) / max) }))));
  const reasons = Object.entries(r.rejection_reasons).map(([k, v]) =>
    h("tr", {}, h("td", {}, h("code", {}, k)), h("td", { class: "num" }, fmt(v))));
  const search = h("input", { type: "search", placeholder: "search this run's rejected rows by key",
                              "data-testid": "key-search", "aria-label": "key" });
  const rejectedBox = h("div", {});
  const renderRejected = () => {
    const q = search.value.toLowerCase();
    const rows = r.rejected_rows.filter((x) => String(x.key).toLowerCase().includes(q));
    rejectedBox.replaceChildren(rows.length ? rejectedTable(rows)
      : h("p", { class: "muted", "data-testid": "no-rejected" }, "No rejected rows" + (q ? " with that key." : " left from this run.")));
  };
  search.addEventListener("input", renderRejected);
  renderRejected();
  show(h("h1", {}, `Run ${r.run_id} `, badge(r.status)),
    h("p", { class: "muted" }, h("a", { href: `/syncs/${enc(r.sync)}` }, r.sync),
      ` · ${r.source} → ${r.destination}.${r.object} · ${r.mode} · started ${when(r.started_at)} · ${r.seconds} s`),
    r.error ? h("p", { class: "error", "data-testid": "run-error" }, r.error) : null,
    h("h2", {}, "Rows"),
    h("div", { class: "cards" }, card("read", c.read, "read"), card("withheld by consent", c.consent_denied),
      card("inserted ✓", c.succeeded.insert, "inserted"), card("updated ✓", c.succeeded.update),
      card("deleted ✓", c.succeeded.delete), card("unchanged", c.unchanged),
      card("rejected", c.rejected, "rejected-count"), card("pending", c.pending)),
    Object.keys(c.rejected_by_operation).length ? h("p", { class: "muted" }, "rejected by operation: " +
      Object.entries(c.rejected_by_operation).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")) : null,
    h("h2", {}, "Consent funnel"),
    h("p", { class: "muted" }, `${fmt(funnel.rows)} rows read, ${fmt(funnel.passed)} passed every purpose`),
    purposes.length ? table([{ t: "purpose" }, { t: "rows", num: 1 }, { t: "passed", num: 1 },
      { t: "withheld" }, { t: "legal bases" }, { t: "" }], purposes, { "data-testid": "funnel" }) : null,
    h("h2", {}, "Rejection reasons"),
    reasons.length ? table([{ t: "reason" }, { t: "rows", num: 1 }], reasons) : h("p", { class: "muted" }, "None."),
    h("h2", {}, "Rejected rows"), h("form", { onsubmit: (e) => e.preventDefault() }, search), rejectedBox);
  for (const b of document.querySelectorAll(".bar[data-width]")) b.style.width = b.dataset.width + "%";
}

async function previewPage(name) {
  show(h("h1", {}, `Preview: ${name}`), h("p", { class: "muted" }, "Planning the next run (nothing is sent)…"));
  const p = await api(`syncs/${enc(name)}/preview?rows=10`);
  document.title = `conn: preview ${name}`;
  const c = p.counts;
  show(h("h1", {}, `Preview: ${name} `, badge(p.status)),
    h("p", { class: "muted" }, "What the next run would send, after consent and field policies. Nothing was sent or stored."),
    p.error ? h("p", { class: "error" }, p.error) : null,
    h("div", { class: "cards", "data-testid": "preview-counts" }, card("read", c.read),
      card("withheld by consent", c.consent_denied), card("would insert", c.insert, "would-insert"),
      card("would update", c.update), card("would delete", c.delete), card("unchanged", c.unchanged),
      card("would be rejected", c.rejected)),
    h("h2", {}, `First ${p.requests.length} request(s)`),
    h("pre", { "data-testid": "requests" }, JSON.stringify(p.requests, null, 2)),
    h("p", {}, h("a", { href: `/syncs/${enc(name)}` }, "← back to " + name)));
}

function personForm(value) {
  const input = h("input", { type: "text", name: "subject", value: value || "",
    placeholder: "a customer id or other key", "data-testid": "subject", "aria-label": "subject" });
  return h("form", { onsubmit: (e) => { e.preventDefault(); if (input.value) location.href = `/people/${enc(input.value)}`; } },
    input, " ", h("button", { class: "primary", type: "submit" }, "Explain"));
}

async function personPage(subject) {
  document.title = "conn: people";
  if (!subject) { show(h("h1", {}, "People"), h("p", { class: "muted" }, "Which syncs would send a person's data, where, which fields, and which consent record or legal basis allows or blocks each (conn explain)."), personForm()); return; }
  show(h("h1", {}, `Person ${subject}`), personForm(subject), h("p", { class: "muted" }, "Reading…"));
  const x = await api(`people/${enc(subject)}`);
  const blocks = x.syncs.map((s) => {
    let verdict = s.error ? `cannot check: ${s.error}` : s.config_errors ? "not runnable" :
      !s.found ? "not in the synced rows" : s.would_send ? "would send" : "withheld";
    const consent = Object.entries(s.consent || {}).map(([p, c]) => h("tr", {},
      h("td", {}, p), h("td", {}, c.allowed ? "allowed" : "blocked"), h("td", {}, c.legal_basis || ""),
      h("td", {}, c.decision), h("td", {}, (c.evidence || []).map((ev) => Object.entries(ev).map(([k, v]) => `${k}=${v}`).join(", ")).join("; "))));
    const fields = Object.entries(s.fields || {}).map(([f, v]) => h("tr", {},
      h("td", {}, f), h("td", {}, (v.from || []).join(", ") || "(constant)"),
      h("td", {}, v.policy ? `${v.policy.action || "allow"}${v.policy.kind ? " (" + v.policy.kind + ")" : ""}` : "allow")));
    const delivered = (s.delivered || []).map((d) => h("li", {}, `${s.object} ${d.match_value} acknowledged ${d.acknowledged_at} (run ${d.run_id})`));
    return h("section", { "data-testid": "person-sync" },
      h("h2", {}, `${s.sync} → ${s.destination}.${s.object}: `, h("span", { "data-testid": "verdict" }, verdict)),
      consent.length ? table([{ t: "purpose" }, { t: "verdict" }, { t: "legal basis" }, { t: "decision" }, { t: "evidence" }], consent) : null,
      fields.length && s.found ? table([{ t: "field" }, { t: "from" }, { t: "policy" }], fields) : null,
      (s.rejected || []).length ? h("p", { class: "error" }, "rejected: " + s.rejected.join("; ")) : null,
      delivered.length ? h("ul", {}, delivered) : null);
  });
  // Profiles (identity resolution): the identities stitched together and the merges.
  const profiles = (x.profiles || []).map((p) => h("section", { "data-testid": "profile" },
    h("h2", {}, `Profile ${p.profile_id} (profiles.${p.set})`),
    h("p", {}, (p.identities || []).map((i) => `${i.type}=${i.value}`).join(", ")),
    (p.history || []).length ? h("ul", {}, p.history.map((e) =>
      h("li", {}, `${e.kind}: ${e.old_id} → ${e.new_id} (${e.changed_at})`))) : null,
    (p.syncs || []).length ? h("p", {}, "Read by: " + p.syncs.map((s) =>
      `${s.sync} (${s.would_send ? "would send" : "withheld"})`).join(", ")) : null));
  show(h("h1", {}, `Person ${x.subject}`), personForm(subject),
    h("p", {}, "Sent by: ", h("strong", { "data-testid": "sent-by" }, x.sent_by.join(", ") || "no sync")),
    blocks, profiles);
}

// --- profiles, triggers, experiments -----------------------------------------------------

function kv(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`).join(", ");
}

function profileForm(value) {
  const input = h("input", { type: "text", name: "key", value: value || "",
    placeholder: "a profile id (p_…) or an identifier", "data-testid": "profile-key", "aria-label": "profile" });
  return h("form", { onsubmit: (e) => { e.preventDefault(); if (input.value) location.href = `/profiles/${enc(input.value)}`; } },
    input, " ", h("button", { class: "primary", type: "submit" }, "Show"));
}

async function profilesPage() {
  document.title = "conn: profiles";
  const data = await api("profiles");
  const sets = data.sets.map((s) => h("section", { "data-testid": "profile-set", "data-set": s.set },
    h("h2", {}, `profiles.${s.set}`),
    h("div", { class: "cards" }, card("records", s.records, "set-records"), card("profiles", s.profiles, "set-profiles"),
      card("last build", when(s.built_at) || "never")),
    h("h3", {}, "Profile sizes (records per profile)"),
    table([{ t: "size" }, { t: "profiles", num: 1 }], s.sizes.map((b) => h("tr", {},
      h("td", {}, b.size), h("td", { class: "num" }, fmt(b.profiles)))), { "data-testid": "sizes" }),
    h("h3", {}, "Largest profiles"),
    s.largest.length ? table([{ t: "profile" }, { t: "records", num: 1 }], s.largest.map((p) => h("tr", {},
      h("td", {}, h("a", { href: `/profiles/${enc(p.profile_id)}?set=${enc(s.set)}` }, p.profile_id)),
      h("td", { class: "num" }, fmt(p.records)))), { "data-testid": "largest" }) : h("p", { class: "muted" }, "None."),
    h("h3", {}, "Identifiers at their limit"),
    s.at_limit.length ? table([{ t: "type" }, { t: "limit", num: 1 }, { t: "profiles", num: 1 }], s.at_limit.map((x) => h("tr", {},
      h("td", {}, x.type), h("td", { class: "num" }, fmt(x.limit)), h("td", { class: "num" }, fmt(x.profiles)))), { "data-testid": "at-limit" })
      : h("p", { class: "muted" }, "None."),
    h("h3", {}, "Suspected junk values (never join profiles)"),
    s.junk.length ? table([{ t: "type" }, { t: "value" }, { t: "records", num: 1 }], s.junk.map((j) => h("tr", {},
      h("td", {}, j.type), h("td", {}, h("code", {}, j.value)), h("td", { class: "num" }, fmt(j.records)))), { "data-testid": "junk" })
      : h("p", { class: "muted" }, "None.")));
  show(h("h1", {}, "Profiles"),
    h("p", { class: "muted" }, "Identity resolution: the profile sets of the last build (conn profiles stats)."),
    profileForm(), sets);
}

async function profilePage(key) {
  document.title = `conn: profile ${key}`;
  const set = new URLSearchParams(location.search).get("set");
  const data = await api(`profiles/${enc(key)}` + (set ? `?set=${enc(set)}` : ""));
  const blocks = data.profiles.map((p) => h("section", { "data-testid": "profile", "data-profile": p.profile_id },
    h("h2", {}, `Profile ${p.profile_id} (profiles.${p.set})`),
    h("p", { "data-testid": "sources" }, "Sources (edges): ",
      [...new Set(p.identities.flatMap((i) => i.edges))].sort().join(", ")),
    h("h3", {}, "Identities"),
    table([{ t: "type" }, { t: "value" }, { t: "records", num: 1 }], p.identities.map((i) =>
      h("tr", {}, h("td", {}, i.type), h("td", {}, String(i.value)), h("td", { class: "num" }, fmt(i.records)))),
      { "data-testid": "identities" }),
    h("h3", {}, "Golden record"),
    table([{ t: "field" }, { t: "value" }], Object.entries(p.golden).map(([k, v]) => h("tr", {},
      h("td", {}, k), h("td", {}, v === null ? "" : Array.isArray(v) ? v.join(", ") : String(v)))), { "data-testid": "golden" }),
    h("h3", {}, "Merges and splits"),
    p.history.length ? table([{ t: "when" }, { t: "kind" }, { t: "old id" }, { t: "new id" }, { t: "edge / cause" }],
      p.history.map((e) => h("tr", {}, h("td", { class: "when" }, when(e.changed_at)), h("td", {}, e.kind),
        h("td", {}, e.old_id || ""), h("td", {}, e.new_id || ""), h("td", {}, e.cause || ""))), { "data-testid": "merges" })
      : h("p", { class: "muted", "data-testid": "no-merges" }, "No merge or split recorded.")));
  show(h("h1", {}, `Profile ${key}`), profileForm(key), blocks,
    h("p", {}, h("a", { href: "/profiles" }, "← all profile sets")));
}

function triggerSection(t) {
  const syncs = t.syncs.map((s) => h("section", { "data-testid": "trigger-sync", "data-sync": s.sync },
    h("h3", {}, h("a", { href: `/syncs/${enc(s.sync)}` }, s.sync), ` → ${s.destination}.${s.object}`),
    h("div", { class: "cards" }, card("events fired", s.events_fired, "fired"), card("delivered", s.events_delivered, "delivered"),
      card("rejected", s.events_rejected), card("keys watched", s.keys), card("armed", s.armed), card("keys fired", s.keys_fired)),
    h("p", { class: "muted" }, `${fmt(s.runs)} run(s)` + (s.last_fired_at ? `; last fired ${when(s.last_fired_at)}` : "; never fired")),
    s.recent.length ? table([{ t: "key" }, { t: "last fired" }, { t: "events", num: 1 }, { t: "last value" }],
      s.recent.map((r) => h("tr", { "data-key": r.key }, h("td", {}, r.key), h("td", { class: "when" }, when(r.fired_at)),
        h("td", { class: "num" }, fmt(r.events)), h("td", {}, r.value === null ? "" : r.value))), { "data-testid": "firings" })
      : h("p", { class: "muted" }, "No firing yet.")));
  return h("section", { "data-testid": "trigger", "data-trigger": t.name },
    h("h2", {}, h("a", { href: `/triggers/${enc(t.name)}` }, t.name)),
    h("p", {}, h("code", { "data-testid": "definition" }, kv(t.definition))),
    syncs.length ? syncs : h("p", { class: "muted" }, "No sync sends this trigger's events."));
}

async function triggersPage(name) {
  document.title = name ? `conn: trigger ${name}` : "conn: triggers";
  const data = await api(name ? `triggers/${enc(name)}?recent=100` : "triggers");
  show(h("h1", {}, name ? `Trigger ${name}` : "Triggers"),
    h("p", { class: "muted" }, "Events on a value's transitions (conn triggers): fired = sent or rejected by the destination, delivered = acknowledged."),
    data.triggers.length ? data.triggers.map(triggerSection) : h("p", { class: "muted" }, "No triggers in conn.yml."),
    name ? h("p", {}, h("a", { href: "/triggers" }, "← all triggers")) : null);
}

async function experimentsPage() {
  document.title = "conn: experiments";
  const data = await api("experiments");
  show(h("h1", {}, "Experiments"),
    h("p", { class: "muted" }, "Holdout experiments (conn experiments list)."),
    data.experiments.length ? table([{ t: "experiment" }, { t: "sync" }, { t: "held out", num: 1 }, { t: "status" },
      { t: "started" }, { t: "treatment", num: 1 }, { t: "holdout", num: 1 }],
    data.experiments.map((e) => h("tr", { "data-experiment": e.name },
      h("td", {}, h("a", { href: `/experiments/${enc(e.name)}` }, e.name)), h("td", {}, e.sync),
      h("td", { class: "num" }, `${e.percent} %`), h("td", {}, badge(e.status)), h("td", { class: "when" }, when(e.started_at)),
      h("td", { class: "num" }, fmt(e.treatment)), h("td", { class: "num" }, fmt(e.holdout)))), { "data-testid": "experiments" })
      : h("p", { class: "muted" }, "No experiments yet: give a sync a 'holdout:' and run it."));
}

const pct = (v, signed) => (v === null || v === undefined ? "n/a" : (signed && v > 0 ? "+" : "") + (v * 100).toFixed(2) + " %");
const ci = (c) => (c ? `[${pct(c[0], true)}, ${pct(c[1], true)}]` : "n/a");

async function experimentPage(name) {
  document.title = `conn: experiment ${name}`;
  const params = new URLSearchParams(location.search);
  const outcome = h("input", { type: "text", name: "outcome", value: params.get("outcome") || "", size: 60,
    placeholder: "a stream (e.g. orders) or a query (SELECT customer_id FROM …)", "data-testid": "outcome", "aria-label": "outcome" });
  const key = h("input", { type: "text", name: "key", value: params.get("key") || "",
    placeholder: "key column(s), comma-separated (default: the sync's primary key)", "aria-label": "key" });
  const form = h("form", { onsubmit: (e) => { e.preventDefault(); if (!outcome.value) return;
    const q = new URLSearchParams({ outcome: outcome.value }); if (key.value) q.set("key", key.value);
    location.href = `/experiments/${enc(name)}?${q}`; } }, outcome, " ", key, " ", h("button", { class: "primary", type: "submit" }, "Report"));
  const head = [h("h1", {}, `Experiment ${name}`), form];
  if (!params.get("outcome")) {
    show(head, h("p", { class: "muted" }, "Name the outcome: a member converted if its key appears in it (conn experiments report --outcome)."));
    return;
  }
  show(head, h("p", { class: "muted" }, "Reading the outcome…"));
  const q = new URLSearchParams({ outcome: params.get("outcome") });
  for (const k of ["key", "source", "alpha"]) if (params.get(k)) q.set(k, params.get(k));
  const r = await api(`experiments/${enc(name)}/report?${q}`);
  const conf = `${r.confidence * 100} %`;
  const verdict = r.p_value === null ? "no comparison: an arm has no members"
    : r.significant ? `significant at ${r.alpha}` : `not significant at ${r.alpha}`;
  show(head, h("p", { class: "muted" }, `sync ${r.sync}, ${r.percent} % held out, ${r.status}; outcome from ${r.outcome.source}`),
    table([{ t: "arm" }, { t: "members", num: 1 }, { t: "converted", num: 1 }, { t: "rate", num: 1 }],
      ["treatment", "holdout"].map((a) => h("tr", { "data-arm": a }, h("td", {}, a), h("td", { class: "num" }, fmt(r[a].members)),
        h("td", { class: "num" }, fmt(r[a].converted)), h("td", { class: "num", "data-testid": `rate-${a}` }, pct(r[a].rate)))),
      { "data-testid": "arms" }),
    h("div", { class: "cards" },
      card(`absolute uplift (${conf} CI ${ci(r.absolute_ci)})`, pct(r.absolute, true), "absolute"),
      card(`relative uplift (${conf} CI ${ci(r.relative_ci)})`, pct(r.relative, true), "relative"),
      card(r.method || "p-value", r.p_value === null ? "n/a" : r.p_value.toPrecision(4), "p-value")),
    h("p", {}, h("strong", { "data-testid": "verdict" }, verdict)),
    h("p", {}, h("a", { href: "/experiments" }, "← all experiments")));
}

function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  let page;
  if (parts.length === 0) page = syncsPage();
  else if (parts[0] === "syncs" && parts.length === 2) page = syncPage(parts[1]);
  else if (parts[0] === "syncs" && parts[2] === "preview") page = previewPage(parts[1]);
  else if (parts[0] === "runs" && parts.length === 2) page = runPage(parts[1]);
  else if (parts[0] === "people") page = personPage(parts[1]);
  else if (parts[0] === "profiles" && parts.length === 1) page = profilesPage();
  else if (parts[0] === "profiles" && parts.length === 2) page = profilePage(parts[1]);
  else if (parts[0] === "triggers" && parts.length <= 2) page = triggersPage(parts[1]);
  else if (parts[0] === "experiments" && parts.length === 1) page = experimentsPage();
  else if (parts[0] === "experiments" && parts.length === 2) page = experimentPage(parts[1]);
  else page = Promise.reject(new Error("no such page"));
  page.then(() => document.body.setAttribute("data-loaded", "1"), fail)
      .finally(() => document.body.setAttribute("data-ready", "1"));
}

route();
