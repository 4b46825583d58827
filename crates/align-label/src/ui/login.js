// Login: the token arrives in the URL fragment (#token=...), which is never sent to the server
// or in a Referer; it is exchanged for an HttpOnly session cookie and removed from the address bar.
"use strict";

function tokenFrom(text) {
  const m = /token=([0-9a-f]{64})/.exec(text) || /^\s*([0-9a-f]{64})\s*$/.exec(text);
  return m ? m[1] : null;
}

async function signIn(token) {
  const err = document.getElementById("login-error");
  try {
    const who = await api("/api/session", { method: "POST", json: { token } });
    history.replaceState(null, "", "/login");
    window.location.href = who.role === "admin" ? "/admin" : "/annotate";
  } catch (e) {
    err.textContent = e.message;
    err.hidden = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const fromHash = tokenFrom(window.location.hash);
  if (fromHash) signIn(fromHash);
  document.getElementById("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = tokenFrom(document.getElementById("token").value);
    if (t) signIn(t);
    else {
      const err = document.getElementById("login-error");
      err.textContent = "That is not a login link or token.";
      err.hidden = false;
    }
  });
});
