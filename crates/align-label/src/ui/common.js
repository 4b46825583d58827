// Shared helpers of the pages. Stored text is only ever put into the page with textContent
// or text nodes, never parsed as HTML, so responses that contain markup are shown as text and never run.
"use strict";

/** Calls the API; resolves to the parsed JSON, or throws an Error with the server's message. */
async function api(path, opts = {}) {
  const init = { method: opts.method || "GET", credentials: "same-origin", headers: {} };
  if (opts.json !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(opts.json);
  } else if (opts.body !== undefined) {
    init.headers["content-type"] = "text/plain; charset=utf-8";
    init.body = opts.body;
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    window.location.href = "/login";
    throw new Error("not signed in");
  }
  const type = res.headers.get("content-type") || "";
  const data = type.includes("application/json") ? await res.json() : await res.text();
  if (!res.ok) {
    throw new Error((data && data.error) || (typeof data === "string" && data) || res.statusText);
  }
  return data;
}

/** Builds an element: el("td", {class: "num"}, "text", child, ...). Strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** Shows a short message at the bottom of the page. */
function toast(msg, kind = "info") {
  const t = document.getElementById("toast");
  if (!t) return;
  t.textContent = msg;
  t.className = "toast " + kind;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, kind === "error" ? 6000 : 1800);
}

function fmt(x, digits = 2) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function pct(x) {
  return x === null || x === undefined ? "–" : Math.round(x * 100) + "%";
}

async function logout() {
  await fetch("/api/logout", { method: "POST", credentials: "same-origin" });
  window.location.href = "/login";
}
