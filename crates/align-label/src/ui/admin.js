// The admin page: projects and their completion, agreement, annotator quality, accounts.
"use strict";

const $ = (id) => document.getElementById(id);
let overview = null;
let current = null; // project id shown in the detail card

function bar(frac, label) {
  const fill = el("div", { class: "fill" });
  fill.style.width = (Math.max(0, Math.min(1, frac)) * 100).toFixed(1) + "%";
  return el("div", { class: "progress inline" }, el("div", { class: "bar" }, fill), el("span", { class: "muted" }, label));
}

/** A κ/α value with a colour class by the usual Landis & Koch bands. */
function kappaClass(k) {
  if (k === null || k === undefined) return "k-none";
  if (k < 0.2) return "k-poor";
  if (k < 0.4) return "k-fair";
  if (k < 0.6) return "k-moderate";
  if (k < 0.8) return "k-good";
  return "k-great";
}

function ago(t) {
  if (!t) return "–";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return "just now";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function renderProjects() {
  const body = $("projects-table").querySelector("tbody");
  body.replaceChildren();
  for (const p of overview.projects) {
    const target = p.labels + p.labels_needed;
    const frac = target > 0 ? p.labels / target : 0;
    const dl = (agg) => el("a", { class: "btn small", href: `/api/admin/projects/${p.id}/export?aggregate=${agg}`, download: "" }, agg);
    body.append(el("tr", { class: p.id === current ? "active" : "", onclick: () => showProject(p.id) },
      el("td", {}, el("b", {}, p.name), el("div", { class: "muted" }, `${p.members} annotator${p.members === 1 ? "" : "s"}`)),
      el("td", { class: "num" }, p.overlap),
      el("td", { class: "num" }, p.items),
      el("td", { class: "num" }, p.comparisons),
      el("td", { class: "num" }, p.gold),
      el("td", { class: "num" }, p.labels),
      el("td", {}, bar(frac, pct(frac))),
      el("td", { class: "nowrap", onclick: (e) => e.stopPropagation() }, dl("majority"), " ", dl("soft"))));
  }
  if (!overview.projects.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No projects yet: create one below or with `align label project create`.")));
  for (const sel of [$("detail-project"), $("add-project")]) {
    const keep = sel.value;
    sel.replaceChildren(...(sel.id === "add-project" ? [el("option", { value: "" }, "no project")] : []),
      ...overview.projects.map((p) => el("option", { value: p.id }, p.name)));
    if (keep) sel.value = keep;
  }
}

function renderAccounts() {
  const body = $("accounts-table").querySelector("tbody");
  body.replaceChildren();
  for (const a of overview.annotators) {
    const rotate = el("button", { class: "btn small ghost", type: "button", title: "Issue a new login link; the old one stops working",
      onclick: () => newToken(a.name) }, "new link");
    body.append(el("tr", {},
      el("td", {}, el("b", {}, a.name)),
      el("td", {}, el("span", { class: "pill " + a.role }, a.role)),
      el("td", { class: "muted" }, a.projects.join(", ") || "–"),
      el("td", { class: "num" }, a.labels),
      el("td", { class: "muted" }, ago(a.last_label)),
      el("td", {}, rotate)));
  }
}

function showLink(name, path) {
  $("new-link").hidden = false;
  $("new-link-name").textContent = name;
  $("new-link-url").textContent = window.location.origin + path;
}

async function newToken(name) {
  if (!confirm(`Issue a new login link for ${name}? The current one stops working.`)) return;
  const r = await api(`/api/admin/annotators/${encodeURIComponent(name)}/token`, { method: "POST" });
  showLink(r.annotator.name, r.login_path);
}

async function showProject(id) {
  current = id;
  $("detail-project").value = id;
  const d = await api(`/api/admin/projects/${id}/report`);
  const r = d.report;
  $("detail").hidden = false;
  $("detail-title").textContent = d.project.name;
  $("t-labels").textContent = r.annotators.reduce((s, a) => s + a.votes, 0);
  $("t-multi").textContent = r.multiply_labelled;
  $("t-fleiss").textContent = fmt(r.fleiss_kappa);
  $("t-fleiss").className = "tile-value " + kappaClass(r.fleiss_kappa);
  $("t-fleiss-note").textContent = r.fleiss_items ? `${r.fleiss_items} pairs with ${r.fleiss_raters} votes each` : "needs pairs with ≥ 2 votes";
  $("t-alpha").textContent = fmt(r.krippendorff_alpha);
  $("t-alpha").className = "tile-value " + kappaClass(r.krippendorff_alpha);

  // Accounts not yet in this project, for the "add to project" form.
  const inProject = new Set(d.progress.map((p) => p.name));
  const outside = overview.annotators.filter((a) => a.role === "annotator" && !inProject.has(a.name));
  $("member-form").hidden = outside.length === 0;
  $("member-name").replaceChildren(...outside.map((a) => el("option", { value: a.name }, a.name)));

  const quality = new Map(r.annotators.map((a) => [a.name, a]));
  const body = $("quality-table").querySelector("tbody");
  body.replaceChildren();
  const rows = d.progress.slice().sort((x, y) => {
    const qx = quality.get(x.name), qy = quality.get(y.name);
    return ((qy && qy.disagree_rate) || -1) - ((qx && qx.disagree_rate) || -1);
  });
  for (const p of rows) {
    const q = quality.get(p.name) || {};
    const frac = p.progress.total ? p.progress.done / p.progress.total : 0;
    const dis = q.disagree_rate;
    body.append(el("tr", {},
      el("td", {}, el("b", {}, p.name)),
      el("td", {}, bar(frac, `${p.progress.done} / ${p.progress.total}`)),
      el("td", { class: "num" }, fmt(p.median_seconds, 1)),
      el("td", { class: "num " + (dis >= 0.4 ? "warn" : "") }, dis === null || dis === undefined ? "–" : `${pct(dis)} (${q.majority_n})`),
      el("td", { class: "num " + (q.gold_accuracy !== null && q.gold_accuracy < 0.7 ? "warn" : "") },
        q.gold_n ? `${pct(q.gold_accuracy)} (${q.gold_correct}/${q.gold_n})` : "–")));
  }

  // Pairwise Cohen's kappa as a matrix.
  const names = [...new Set(r.pairs.flatMap((p) => [p.a, p.b]))].sort();
  const cell = new Map(r.pairs.map((p) => [p.a + "\u0000" + p.b, p]));
  const get = (a, b) => cell.get(a + "\u0000" + b) || cell.get(b + "\u0000" + a);
  const m = $("kappa-matrix");
  m.replaceChildren();
  if (names.length < 2) {
    m.append(el("p", { class: "muted" }, "Appears once two annotators have labelled the same pairs."));
  } else {
    const table = el("table", { class: "table matrix-table" },
      el("thead", {}, el("tr", {}, el("th", {}), ...names.map((n) => el("th", { class: "num" }, n)))));
    const tb = el("tbody");
    for (const a of names) {
      tb.append(el("tr", {}, el("th", {}, a), ...names.map((b) => {
        if (a === b) return el("td", { class: "num diag" }, "");
        const p = get(a, b);
        if (!p) return el("td", { class: "num k-none" }, "–");
        return el("td", { class: "num " + kappaClass(p.kappa), title: `agreement ${pct(p.agreement)} over ${p.n} pairs` },
          fmt(p.kappa), el("span", { class: "n" }, ` (${p.n})`));
      })));
    }
    table.append(tb);
    m.append(table);
  }
  renderProjects();
}

async function refresh() {
  overview = await api("/api/admin/overview");
  renderProjects();
  renderAccounts();
  if (current === null && overview.projects.length) current = overview.projects[0].id;
  if (current !== null) await showProject(current);
}

document.addEventListener("DOMContentLoaded", () => {
  $("logout").addEventListener("click", logout);
  $("detail-project").addEventListener("change", () => showProject(Number($("detail-project").value)));
  $("member-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api(`/api/admin/projects/${current}/members`, { method: "POST", json: { name: $("member-name").value } });
      await refresh();
    } catch (e) { toast(e.message, "error"); }
  });
  $("add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const project = $("add-project").value;
      const r = await api("/api/admin/annotators", { method: "POST", json: {
        name: $("add-name").value, admin: $("add-admin").checked, projects: project ? [Number(project)] : [] } });
      showLink(r.annotator.name, r.login_path);
      $("add-name").value = "";
      await refresh();
    } catch (e) { toast(e.message, "error"); }
  });
  $("project-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("/api/admin/projects", { method: "POST", json: {
        name: $("p-name").value, overlap: Number($("p-overlap").value) || 3, guidelines: $("p-guidelines").value } });
      let msg = `Created ${r.project.name}.`;
      const f = $("p-file").files[0];
      if (f) {
        const n = await api(`/api/admin/projects/${r.project.id}/import`, { method: "POST", body: await f.text() });
        msg += ` Imported ${n.items} prompts → ${n.comparisons} pairs.`;
      }
      $("project-msg").textContent = msg;
      current = r.project.id;
      await refresh();
    } catch (e) { toast(e.message, "error"); }
  });
  api("/api/me").then((me) => { $("who").textContent = me.name; });
  refresh().catch((e) => toast(e.message, "error"));
});
