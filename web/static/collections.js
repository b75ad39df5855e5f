// The documents page: uploads with a progress bar each, and a table that follows processing live.
// Text from the server is only ever set with textContent, never parsed as HTML.
(function () {
  "use strict";

  const POLL_MS = 1500;
  const FINAL = new Set(["ready", "error"]);

  const table = document.querySelector("[data-collections]");
  const uploadBox = document.querySelector("[data-upload]");
  if (!table || !uploadBox) return;

  const labels = JSON.parse(table.dataset.labels);
  const tbody = table.tBodies[0];
  const rowTemplate = document.getElementById("collection-row");
  const emptyNote = document.querySelector("[data-empty]");
  const totalNote = document.querySelector("[data-total]");
  const pollError = document.querySelector("[data-poll-error]");

  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, key) => (key in values ? String(values[key]) : whole));
  }

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  // The same figures as Jinja's filesizeformat on the server-rendered rows.
  function humanSize(bytes) {
    if (bytes < 1000) return bytes === 1 ? "1 Byte" : bytes + " Bytes";
    const units = ["kB", "MB", "GB", "TB"];
    let value = bytes / 1000;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return value.toFixed(1) + " " + units[unit];
  }

  function sourceText(item) {
    const kind = labels.source[item.source_type] || labels.source.file;
    return item.source_type === "file" && item.size_bytes ? kind + ", " + humanSize(item.size_bytes) : kind;
  }

  // ---- the live table -------------------------------------------------------------------

  function newRow(item) {
    const row = rowTemplate.content.firstElementChild.cloneNode(true);
    const id = String(item.id);
    row.dataset.id = id;
    field(row, "name").href = fill(table.dataset.chunksUrl, { id });
    field(row, "retry").action = fill(table.dataset.retryUrl, { id });
    field(row, "download").href = "/api/collections/" + encodeURIComponent(id) + "/file";
    row.querySelector("details.confirm form").action = fill(table.dataset.deleteUrl, { id });
    return row;
  }

  function update(row, item) {
    const final = FINAL.has(item.status);
    row.dataset.status = item.status;
    field(row, "name").textContent = item.name;
    field(row, "source").textContent = sourceText(item);
    field(row, "download").hidden = item.source_type !== "file";
    const status = field(row, "status");
    status.textContent = labels.status[item.status] || item.status;
    status.className = "status status-" + item.status;
    field(row, "meter").hidden = final;
    field(row, "progress").value = item.progress;
    field(row, "percent").textContent = item.progress + "%";
    field(row, "chunks").textContent = String(item.chunk_count);

    const error = field(row, "error");
    error.hidden = !item.error;
    if (error.dataset.source !== (item.error || "")) {
      // the server's rendering translated the reason; keep it until the reason itself changes
      error.dataset.source = item.error || "";
      error.textContent = item.error || "";
    }
    error.className = item.status === "error" ? "error-message" : "note";

    const qa = item.stats && item.stats.qa;
    const qaNote = field(row, "qa");
    qaNote.hidden = !qa;
    qaNote.textContent = qa
      ? fill(labels.qa, { pairs: qa.qa_pairs, chunks: qa.source_chunks, missing: qa.chunks_without_pairs })
      : "";

    const warnings = field(row, "warnings");
    warnings.replaceChildren(
      ...(item.warnings || []).map((text) => {
        const li = document.createElement("li");
        li.textContent = text;
        return li;
      })
    );
    // Retry only where it can help: an unreadable file (password, no text) fails the same way again.
    field(row, "retry").hidden = item.status !== "error" || (item.stats && item.stats.retryable === false);
  }

  function render(page) {
    const existing = new Map([...tbody.rows].map((row) => [row.dataset.id, row]));
    page.items.forEach((item) => {
      const row = existing.get(String(item.id)) || newRow(item);
      existing.delete(String(item.id));
      update(row, item);
      tbody.appendChild(row); // keeps the server's order (newest first); an open <details> stays open
    });
    existing.forEach((row) => row.remove());
    followUploads(page.items);
    emptyNote.hidden = page.items.length > 0;
    totalNote.textContent = fill(labels.total, { count: page.total });
  }

  // An upload's line says what became of its document once processing ends, not "processing" forever.
  function followUploads(items) {
    for (const entry of document.querySelectorAll('[data-uploads] [data-state="queued"][data-collection-id]')) {
      const item = items.find((each) => String(each.id) === entry.dataset.collectionId);
      if (!item || !FINAL.has(item.status)) continue;
      if (item.status === "ready") setState(entry, uploadBox.dataset.msgReady, "ready");
      else setState(entry, uploadBox.dataset.msgFailed + ": " + (item.error || ""), "failed");
    }
  }

  let timer = null;
  let uploading = 0;

  function schedule() {
    if (timer === null) timer = window.setTimeout(refresh, POLL_MS);
  }

  async function refresh() {
    timer = null;
    let page;
    try {
      page = await kb.fetchJSON(table.dataset.listUrl, { headers: { Accept: "application/json" } });
    } catch (error) {
      pollError.textContent = labels.stale + " (" + error.message + ")";
      pollError.hidden = false;
      return;
    }
    pollError.hidden = true;
    render(page);
    if (uploading > 0 || page.items.some((item) => !FINAL.has(item.status))) schedule();
  }

  if (table.dataset.busy === "true") schedule();

  // ---- uploads --------------------------------------------------------------------------

  const list = uploadBox.querySelector("[data-uploads]");
  const itemTemplate = document.getElementById("upload-item");
  const modeSelect = document.getElementById("upload-mode");
  const fileInput = document.getElementById("upload-files");
  const dropzone = uploadBox.querySelector("[data-dropzone]");
  const messages = uploadBox.dataset;
  const waiting = [];
  let sending = false;

  function setState(entry, text, kind) {
    const state = field(entry, "state");
    state.textContent = text;
    entry.dataset.state = kind;
  }

  // One XHR per file (fetch reports no upload progress); the API answers with one outcome per file.
  function send(file, entry) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      const bar = field(entry, "progress");
      xhr.open("POST", uploadBox.dataset.upload);
      xhr.setRequestHeader("X-CSRF-Token", kb.csrfToken);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (!event.lengthComputable) return;
        const percent = Math.round((100 * event.loaded) / event.total);
        bar.value = percent;
        setState(entry, messages.msgUploading + " " + percent + "%", "uploading");
      });
      xhr.addEventListener("load", () => {
        const body = xhr.response || {};
        const outcome = (body.items && body.items[0]) || {};
        bar.value = 100;
        if (xhr.status < 300 && outcome.duplicate) {
          setState(entry, messages.msgDuplicate, "duplicate");
        } else if (xhr.status < 300) {
          setState(entry, messages.msgQueued, "queued");
          entry.dataset.collectionId = String(outcome.id); // followed by the table's polling until it is final
        } else {
          const reason = (outcome.error && outcome.error.message) || (body.error && body.error.message) || xhr.statusText;
          setState(entry, messages.msgRefused + ": " + reason, "refused");
        }
        resolve();
      });
      xhr.addEventListener("error", () => {
        setState(entry, messages.msgNetwork, "refused");
        resolve();
      });
      const form = new FormData();
      form.append("file", file, file.name);
      form.append("mode", modeSelect.value);
      xhr.send(form);
    });
  }

  async function sendAll() {
    if (sending) return;
    sending = true;
    while (waiting.length > 0) {
      const { file, entry } = waiting.shift();
      await send(file, entry);
      uploading -= 1;
      if (timer !== null) window.clearTimeout(timer);
      timer = null;
      await refresh();
    }
    sending = false;
  }

  function addFiles(files) {
    [...files].forEach((file) => {
      const entry = itemTemplate.content.firstElementChild.cloneNode(true);
      field(entry, "name").textContent = file.name;
      setState(entry, messages.msgWaiting, "waiting");
      list.prepend(entry);
      waiting.push({ file, entry });
      uploading += 1;
    });
    sendAll();
  }

  fileInput.addEventListener("change", () => {
    addFiles(fileInput.files);
    fileInput.value = "";
  });
  ["dragenter", "dragover"].forEach((type) =>
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    })
  );
  ["dragleave", "drop"].forEach((type) =>
    dropzone.addEventListener(type, () => dropzone.classList.remove("dragging"))
  );
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) addFiles(event.dataTransfer.files);
  });
})();
