// Shared helpers for kb's pages: the CSRF token travels with every state-changing fetch.
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  window.kb = {
    csrfToken: meta ? meta.content : "",
    async fetchJSON(url, options = {}) {
      const headers = Object.assign({ "X-CSRF-Token": this.csrfToken }, options.headers || {});
      const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options, { headers }));
      const body = response.headers.get("content-type", "").includes("application/json") ? await response.json() : null;
      if (!response.ok) {
        const message = body && body.error ? body.error.message : response.statusText;
        throw new Error(message);
      }
      return body;
    },
  };
  document.querySelectorAll("[data-lang]").forEach((link) => {
    link.addEventListener("click", () => { document.cookie = "kb_lang=" + link.dataset.lang + "; path=/; SameSite=Lax"; });
  });
})();
