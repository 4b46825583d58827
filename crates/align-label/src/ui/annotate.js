// The annotation page: one comparison at a time from the annotator's queue.
"use strict";

const state = {
  projects: [],
  project: null,   // id
  task: null,      // {assignment, prompt, a, b}
  choice: null,    // "A" | "B" | "tie" | "both_bad"
  strength: null,  // "slightly" | "clearly"
  axes: { helpful: null, honest: null, harmless: null },
  shownAt: 0,
  busy: false,
};

const $ = (id) => document.getElementById(id);

function setProgress(p) {
  const frac = p.total > 0 ? p.done / p.total : 0;
  $("progress-fill").style.width = (frac * 100).toFixed(1) + "%";
  $("progress-text").textContent = `${p.done} / ${p.total} done`;
}

function renderMessages(box, messages) {
  box.replaceChildren();
  for (const m of messages) {
    box.append(el("div", { class: "msg " + m.role },
      el("div", { class: "role" }, m.role),
      el("div", { class: "content" }, m.content)));
  }
}

function resetForm() {
  state.choice = null;
  state.strength = null;
  state.axes = { helpful: null, honest: null, harmless: null };
  $("comment").value = "";
  paint();
}

/** Reflects the current selections on the buttons. */
function paint() {
  for (const b of document.querySelectorAll(".choice")) {
    b.classList.toggle("selected", b.dataset.choice === state.choice);
    b.setAttribute("aria-checked", b.dataset.choice === state.choice);
  }
  for (const b of document.querySelectorAll(".strength")) {
    const on = b.dataset.strength === state.strength;
    b.classList.toggle("selected", on);
    b.disabled = !(state.choice === "A" || state.choice === "B");
  }
  for (const row of document.querySelectorAll(".axis")) {
    for (const b of row.querySelectorAll("button")) {
      b.classList.toggle("selected", state.axes[row.dataset.axis] === b.dataset.v);
    }
  }
  $("card-a").classList.toggle("winner", state.choice === "A");
  $("card-b").classList.toggle("winner", state.choice === "B");
  $("card-a").classList.toggle("loser", state.choice === "B" || state.choice === "both_bad");
  $("card-b").classList.toggle("loser", state.choice === "A" || state.choice === "both_bad");
  $("submit").disabled = !state.choice || state.busy;
}

async function loadNext() {
  const data = await api(`/api/projects/${state.project}/next`);
  setProgress(data.progress);
  state.task = data.task;
  if (!data.task) {
    $("work").hidden = true;
    $("empty").hidden = false;
    return;
  }
  $("empty").hidden = true;
  $("work").hidden = false;
  renderMessages($("prompt"), data.task.prompt);
  $("text-a").textContent = data.task.a;
  $("text-b").textContent = data.task.b;
  state.shownAt = performance.now();
  resetForm();
  window.scrollTo(0, 0);
}

async function submit() {
  if (!state.task || !state.choice || state.busy) return;
  state.busy = true;
  paint();
  const body = {
    assignment: state.task.assignment,
    choice: state.choice,
    strength: state.choice === "A" || state.choice === "B" ? state.strength : null,
    axes: state.axes,
    comment: $("comment").value,
    ms: Math.round(performance.now() - state.shownAt),
  };
  try {
    await api("/api/labels", { method: "POST", json: body });
    // Leave the comment box, so the next comparison's shortcuts work at once.
    if (document.activeElement) document.activeElement.blur();
    toast("Saved");
    await loadNext();
  } catch (e) {
    toast("Not saved: " + e.message, "error");
  } finally {
    state.busy = false;
    paint();
  }
}

function choose(c) {
  state.choice = c;
  if (!(c === "A" || c === "B")) state.strength = null;
  paint();
}

function cycleAxis(axis) {
  const order = [null, "A", "tie", "B"];
  state.axes[axis] = order[(order.indexOf(state.axes[axis]) + 1) % order.length];
  paint();
}

function toggleGuidelines(show) {
  $("guidelines").hidden = show === undefined ? !$("guidelines").hidden : !show;
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const typing = ev.target && (ev.target.tagName === "TEXTAREA" || ev.target.tagName === "INPUT");
  if (typing) {
    if (ev.key === "Escape") ev.target.blur();
    else if (ev.key === "Enter" && !ev.shiftKey && ev.target.id === "comment") { ev.preventDefault(); submit(); }
    return;
  }
  const k = ev.key.toLowerCase();
  const map = { "1": "A", "2": "B", "3": "tie", "4": "both_bad", "a": "A", "b": "B", "t": "tie", "x": "both_bad" };
  if (k in map && !$("work").hidden) { choose(map[k]); ev.preventDefault(); }
  else if (k === "s" && !$("strength-slightly").disabled) { state.strength = state.strength === "slightly" ? null : "slightly"; paint(); }
  else if (k === "c" && !$("strength-clearly").disabled) { state.strength = state.strength === "clearly" ? null : "clearly"; paint(); }
  else if (k === "h") cycleAxis("helpful");
  else if (k === "o") cycleAxis("honest");
  else if (k === "r") cycleAxis("harmless");
  else if (k === "/") { $("comment").focus(); ev.preventDefault(); }
  else if (k === "g") toggleGuidelines();
  else if (k === "escape") toggleGuidelines(false);
  else if (k === "enter") { ev.preventDefault(); submit(); }
}

function selectProject(id) {
  state.project = id;
  const p = state.projects.find((x) => x.id === id);
  $("guidelines-text").textContent = p ? p.guidelines : "";
  return loadNext();
}

async function init() {
  const me = await api("/api/me");
  $("who").textContent = me.name;
  state.projects = me.projects;
  const sel = $("project");
  sel.replaceChildren(...me.projects.map((p) => el("option", { value: p.id }, p.name)));
  if (!me.projects.length) {
    $("empty").hidden = false;
    $("empty-text").textContent = "You are not in any project yet. Ask your admin to add you to one.";
    return;
  }
  // Start on the first project that still has work for this annotator.
  const open = me.projects.find((p) => p.progress.done < p.progress.total) || me.projects[0];
  sel.value = open.id;
  sel.addEventListener("change", () => selectProject(Number(sel.value)));
  await selectProject(open.id);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll(".choice")) b.addEventListener("click", () => choose(b.dataset.choice));
  for (const b of document.querySelectorAll(".strength")) {
    b.addEventListener("click", () => { state.strength = state.strength === b.dataset.strength ? null : b.dataset.strength; paint(); });
  }
  for (const row of document.querySelectorAll(".axis")) {
    for (const b of row.querySelectorAll("button")) {
      b.addEventListener("click", () => {
        const axis = row.dataset.axis;
        state.axes[axis] = state.axes[axis] === b.dataset.v ? null : b.dataset.v;
        paint();
      });
    }
  }
  $("submit").addEventListener("click", submit);
  $("guidelines-btn").addEventListener("click", () => toggleGuidelines());
  $("guidelines-close").addEventListener("click", () => toggleGuidelines(false));
  $("logout").addEventListener("click", logout);
  document.addEventListener("keydown", onKey);
  init().catch((e) => toast(e.message, "error"));
});
