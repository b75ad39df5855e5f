// The chat bubble another site puts on its pages:
//   <script src="https://kb.example/static/embed.js" data-share="https://kb.example/s/TOKEN" defer></script>
// It asks kb for the link's settings (a CORS request: only the sites the link lists may read them), then
// shows a round button that opens the share page in an iframe (framing is limited the same way, by CSP).
(function () {
  "use strict";
  const script = document.currentScript;
  if (!script || !script.dataset.share) return;
  const share = new URL(script.dataset.share, script.src);
  const token = share.pathname.split("/").filter(Boolean).pop();
  const settingsUrl = new URL("/api/share/" + encodeURIComponent(token) + "/embed.json", share.origin);

  function build(settings) {
    const frame = document.createElement("iframe");
    frame.src = new URL(settings.url, share.origin).href;
    frame.title = settings.name;
    frame.className = "kb-chat-frame";
    Object.assign(frame.style, {
      position: "fixed", right: "20px", bottom: "88px", width: "380px", height: "560px", maxHeight: "80vh",
      border: "1px solid #d0d7e2", borderRadius: "12px", boxShadow: "0 8px 30px rgba(0,0,0,.18)",
      background: "#fff", display: "none", zIndex: "2147483000",
    });
    const button = document.createElement("button");
    button.type = "button";
    button.className = "kb-chat-bubble";
    button.setAttribute("aria-label", settings.name);
    button.setAttribute("aria-expanded", "false");
    button.textContent = "💬";
    Object.assign(button.style, {
      position: "fixed", right: "20px", bottom: "20px", width: "56px", height: "56px", borderRadius: "50%",
      border: "0", background: "#2f6fed", color: "#fff", fontSize: "26px", cursor: "pointer",
      boxShadow: "0 4px 14px rgba(0,0,0,.25)", zIndex: "2147483000",
    });
    button.addEventListener("click", () => {
      const open = frame.style.display === "none";
      frame.style.display = open ? "block" : "none";
      button.setAttribute("aria-expanded", String(open));
    });
    document.body.append(frame, button);
  }

  fetch(settingsUrl, { credentials: "omit" })
    .then((response) => (response.ok ? response.json() : null))
    .then((settings) => settings && build(settings))
    .catch(() => {}); // an unlisted site: the browser refused the answer, and no bubble appears
})();
