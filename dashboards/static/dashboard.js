// The dashboard's live pages: poll the JSON state named by <body data-api> every data-poll-ms and,
// when its version changes, swap in the new HTML fragments and figure URLs (no reload).
// Served as a file so the pages run under a Content-Security-Policy of script-src 'self'.
(() => {
  const body = document.body;
  const pollMs = Number(body.dataset.pollMs);
  let version = body.dataset.version;

  function apply(state) {
    for (const [id, html] of Object.entries(state.html || {})) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = html;
    }
    for (const [id, url] of Object.entries(state.img || {})) {
      let el = document.getElementById(id);
      if (!el) {
        el = document.createElement("img");
        el.id = id; el.className = "figure"; el.alt = id;
        document.getElementById("figures").appendChild(el);
      }
      const next = new Image();  // swap once loaded: no blank figure in between
      next.onload = () => { el.src = url; };
      next.src = url;
    }
  }

  async function poll() {
    try {
      const response = await fetch(body.dataset.api, {cache: "no-store"});
      if (response.ok) {
        const state = await response.json();
        if (state.version !== version) { version = state.version; body.dataset.version = version; apply(state); }
        document.getElementById("polled").textContent = new Date().toLocaleTimeString();
      }
    } catch (error) { /* the server may be restarting: try again */ }
    setTimeout(poll, pollMs);
  }

  setTimeout(poll, pollMs);
})();
