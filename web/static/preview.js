// The chunk preview on a dataset's documents page: the server cuts the chosen file under the chosen settings
// and answers with the first chunks and their sizes; nothing is stored. Text is set with textContent only.
(function () {
  "use strict";
  const box = document.querySelector("[data-preview]");
  if (!box) return;
  const form = box.querySelector("[data-preview-form]");
  const summary = box.querySelector("[data-preview-summary]");
  const list = box.querySelector("[data-preview-list]");

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = new FormData(form);
    const body = new FormData();
    body.append("file", fields.get("file"));
    if (fields.get("max_tokens")) body.append("max_tokens", fields.get("max_tokens"));
    if (fields.get("overlap_percent")) body.append("overlap", String(Number(fields.get("overlap_percent")) / 100));
    body.append("separators", fields.get("separators") || "");
    list.replaceChildren();
    summary.hidden = false;
    try {
      const preview = await kb.fetchJSON(box.dataset.preview, { method: "POST", body });
      summary.textContent = fill(box.dataset.msgTotal, { total: preview.total, shown: preview.chunks.length });
      list.replaceChildren(
        ...preview.chunks.map((chunk) => {
          const item = document.createElement("li");
          const meta = document.createElement("div");
          meta.className = "muted small";
          meta.textContent = chunk.tokens + " tokens · " + chunk.characters + " chars" + (chunk.page ? " · p. " + chunk.page : "");
          const text = document.createElement("div");
          text.className = "chunk-text";
          text.textContent = chunk.text;
          item.append(meta, text);
          return item;
        })
      );
    } catch (error) {
      summary.textContent = fill(box.dataset.msgFailed, { message: error.message });
    }
  });
})();
