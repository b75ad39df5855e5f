// The chat: stream an answer from /v1/chat/completions as plain text, then swap in the server's
// sanitised rendering from /chat/render. Nothing from a document or the model is ever set as HTML
// here: streamed text goes through textContent, and only /chat/render's output becomes markup.
(function () {
  "use strict";

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  // The share page's visitor token (see kb/http/security/visitor.py) travels as a header, never a cookie,
  // so an embedded chat works without third-party cookies and a forged cross-site request cannot carry it.
  const visitorMeta = document.querySelector('meta[name="kb-visitor"]');
  const visitorHeaders = visitorMeta ? { "X-KB-Visitor": visitorMeta.content } : {};

  function postJSON(url, body, accept, signal) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: Object.assign(
        { "Content-Type": "application/json", Accept: accept, "X-CSRF-Token": kb.csrfToken },
        visitorHeaders
      ),
      body: JSON.stringify(body),
      signal,
    });
  }

  function sendJSON(url, method, body) {
    const options = { method, headers: Object.assign({ "Content-Type": "application/json" }, visitorHeaders) };
    if (body !== undefined) options.body = JSON.stringify(body);
    return kb.fetchJSON(url, options);
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (ignored) {
      // not JSON: fall back to the status line
    }
    return response.status + " " + response.statusText;
  }

  // Reads OpenAI's server-sent events; calls onEvent with each parsed `data:` payload. True once [DONE]
  // arrived, false when the connection ended without it (the answer is cut short).
  // Leaving early (an error event, a broken chunk) cancels the request, so the model stops too.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") return true;
            onEvent(JSON.parse(data));
          }
        }
        if (done) return false;
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  function messageItem(role) {
    const item = document.createElement("li");
    item.className = "message " + role;
    return item;
  }

  function placeFragment(container, html) {
    const template = document.createElement("template");
    template.innerHTML = html; // the server's sanitised rendering (see kb/pages/markdown.py)
    container.replaceChildren(template.content);
  }

  class Conversation {
    constructor(root) {
      this.root = root;
      this.list = root.querySelector(".messages");
      this.form = root.querySelector("form.ask");
      this.input = this.form.querySelector("textarea");
      this.button = this.form.querySelector("button[type=submit]");
      this.stopButton = this.form.querySelector("button.stop");
      this.endpoint = root.dataset.endpoint || "/v1/chat/completions";
      this.renderUrl = root.dataset.render || "/chat/render";
      this.controller = null;
      this.stopButton.addEventListener("click", () => {
        if (this.controller) this.controller.abort(); // the server sees the client leave and stops the model
      });
      for (const chip of root.querySelectorAll("button.suggestion")) {
        chip.addEventListener("click", () => {
          this.input.value = chip.textContent;
          this.form.requestSubmit();
        });
      }
      this.store = root.dataset.store === "true";
      this.history = []; // only for a conversation that is not kept on the server (the admin's "try it")
      this.form.addEventListener("submit", (event) => {
        event.preventDefault();
        this.ask();
      });
      this.input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
          event.preventDefault();
          this.form.requestSubmit();
        }
      });
    }

    requestBody(question) {
      const messages = this.store ? [] : this.history.slice();
      messages.push({ role: "user", content: question });
      const body = { model: this.root.dataset.model, messages, stream: true, detail: true };
      if (this.store) body.chatId = this.root.dataset.chatId;
      return body;
    }

    async ask() {
      const question = this.input.value.trim();
      if (!question || this.button.disabled) return;
      this.button.disabled = true;
      const asked = messageItem("user");
      const bubble = document.createElement("div");
      bubble.className = "bubble";
      bubble.textContent = question;
      asked.appendChild(bubble);
      const answer = messageItem("assistant");
      answer.classList.add("streaming");
      const text = document.createElement("div");
      text.className = "answer-body plain";
      text.textContent = this.root.dataset.textWaiting;
      answer.appendChild(text);
      this.list.append(asked, answer);
      answer.scrollIntoView({ block: "end" });
      this.input.value = "";
      this.controller = new AbortController();
      this.stopButton.hidden = false;
      this.partial = { text: "", quotes: [], chatId: null, messageId: null };
      try {
        let finished;
        try {
          finished = await this.stream(question, text, this.controller.signal);
        } catch (error) {
          if (error.name !== "AbortError") throw error;
          finished = Object.assign({}, this.partial, { stopped: true }); // kept on the server as stopped too
        }
        await this.showRendered(answer, finished);
        if (!this.store) {
          this.history.push({ role: "user", content: question }, { role: "assistant", content: finished.text });
        } else if (finished.messageId) {
          this.remember();
        }
      } catch (error) {
        answer.classList.add("failed");
        text.textContent = format(this.root.dataset.textFailed, { message: error.message });
      } finally {
        this.controller = null;
        this.stopButton.hidden = true;
        answer.classList.remove("streaming");
        this.button.disabled = false;
        this.input.focus();
      }
    }

    async stream(question, target, signal) {
      const response = await postJSON(this.endpoint, this.requestBody(question), "text/event-stream", signal);
      if (!response.ok) throw new Error(await errorMessage(response));
      const finished = this.partial;
      let started = false;
      const complete = await readEvents(response, (event) => {
        if (event.error) throw new Error(event.error.message);
        const choice = event.choices && event.choices[0];
        const piece = choice && choice.delta ? choice.delta.content : "";
        if (piece) {
          if (!started) target.textContent = "";
          started = true;
          finished.text += piece;
          target.textContent = finished.text;
        }
        if (event.quotes) finished.quotes = event.quotes;
        if (event.chatId) finished.chatId = event.chatId;
        if (event.responseMessageId) finished.messageId = event.responseMessageId;
      });
      if (!complete) throw new Error(this.root.dataset.textCut);
      return finished;
    }

    async showRendered(item, finished) {
      const response = await postJSON(
        this.renderUrl,
        {
          text: finished.text,
          quotes: finished.quotes,
          chat_id: finished.chatId,
          message_id: finished.messageId,
          stopped: Boolean(finished.stopped),
        },
        "text/html"
      );
      if (!response.ok) throw new Error(await errorMessage(response));
      placeFragment(item, await response.text());
    }

    // After the first kept answer: the address names the conversation, and the sidebar lists it.
    async remember() {
      const chatId = this.root.dataset.chatId;
      const url = new URL(window.location.href);
      if (url.searchParams.get("chat") !== chatId) {
        const opened = new URL(chatLink(this.root, chatId), window.location.href);
        window.history.replaceState(null, "", opened.pathname + opened.search);
      }
      const sidebar = document.querySelector(".chat-history");
      if (!sidebar) return;
      const api = this.root.dataset.chatsApi || "/api/chats";
      const listing = await kb.fetchJSON(api + "?app_id=" + encodeURIComponent(this.root.dataset.appId), {
        headers: visitorHeaders,
      });
      sidebar.replaceChildren(...listing.data.map((chat) => sidebarItem(this.root, chat, chatId)));
    }
  }

  function chatLink(root, chatId) {
    return (root.dataset.chatLink || "/?app=" + encodeURIComponent(root.dataset.appId) + "&chat=") + encodeURIComponent(chatId);
  }

  // One conversation in the sidebar, as chat/_sidebar_item.html renders it.
  function sidebarItem(root, chat, currentId) {
    const template = document.getElementById("sidebar-item");
    const item = template.content.firstElementChild.cloneNode(true);
    item.dataset.chatId = chat.id;
    const link = item.querySelector("a");
    link.href = chatLink(root, chat.id);
    link.textContent = chat.title || chat.id;
    if (chat.id === currentId) link.setAttribute("aria-current", "page");
    return item;
  }

  // Rename (in place) and delete (after a second press) from the sidebar.
  function setUpSidebar(root) {
    const sidebar = document.querySelector(".chat-history");
    if (!sidebar || !root) return;
    const api = root.dataset.chatsApi || "/api/chats";
    sidebar.addEventListener("click", async (event) => {
      const button = event.target.closest("button");
      if (!button) return;
      const item = button.closest("li[data-chat-id]");
      const url = api + "/" + encodeURIComponent(item.dataset.chatId);
      if (button.classList.contains("chat-rename")) {
        const link = item.querySelector("a");
        const input = document.createElement("input");
        input.className = "chat-title-input";
        input.value = link.textContent;
        input.setAttribute("aria-label", button.title);
        link.hidden = true;
        item.insertBefore(input, link);
        input.focus();
        input.addEventListener("keydown", async (key) => {
          if (key.key === "Escape") {
            input.remove();
            link.hidden = false;
          }
          if (key.key !== "Enter" || !input.value.trim()) return;
          key.preventDefault();
          const saved = await sendJSON(url, "PATCH", { title: input.value });
          link.textContent = saved.title;
          input.remove();
          link.hidden = false;
        });
      } else if (button.classList.contains("chat-export")) {
        const response = await fetch(url + "/export", { credentials: "same-origin", headers: visitorHeaders });
        if (!response.ok) return;
        const link = document.createElement("a");
        link.href = URL.createObjectURL(await response.blob());
        link.download = (item.querySelector("a").textContent.trim() || "chat") + ".md";
        link.click();
        URL.revokeObjectURL(link.href);
      } else if (button.classList.contains("chat-delete")) {
        if (button.dataset.armed !== "true") {
          button.dataset.armed = "true";
          button.textContent = button.dataset.confirmText;
          return;
        }
        await sendJSON(url, "DELETE");
        const wasOpen = item.querySelector('a[aria-current="page"]');
        item.remove();
        if (wasOpen) window.location.href = root.dataset.newChat;
      }
    });
  }

  // Citations open their quote in the side panel; the quote's markup was escaped by the server.
  function setUpQuotePanel() {
    const panel = document.getElementById("quote-panel");
    if (!panel) return;
    const body = panel.querySelector(".quote-panel-body");
    const number = panel.querySelector(".quote-panel-number");
    const close = panel.querySelector(".quote-panel-close");
    let opener = null;
    function hide() {
      panel.hidden = true;
      if (opener) opener.focus();
      opener = null;
    }
    document.addEventListener("click", (event) => {
      const cite = event.target.closest("button.cite");
      if (!cite) return;
      const answer = cite.closest(".answer");
      const quote = answer && answer.querySelector('.quotes li[data-quote="' + cite.dataset.quote + '"]');
      if (!quote) return;
      opener = cite;
      number.textContent = "[" + cite.dataset.quote + "]";
      body.replaceChildren(...Array.from(quote.children, (child) => child.cloneNode(true)));
      panel.hidden = false;
      close.focus();
    });
    close.addEventListener("click", hide);
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !panel.hidden) hide();
    });
  }

  // Thumbs up/down on a kept answer, with an optional comment; pressing the pressed thumb again clears it.
  // "Send" saves the comment with the thumb already pressed.
  function setUpFeedback() {
    document.addEventListener("click", async (event) => {
      const button = event.target.closest("button.feedback-button, button.feedback-send");
      if (!button) return;
      const group = button.closest(".feedback");
      const pressed = group.querySelector('button.feedback-button[aria-pressed="true"]');
      let rating = pressed ? pressed.dataset.rating : null;
      if (button.classList.contains("feedback-button")) {
        rating = button.getAttribute("aria-pressed") === "true" ? null : button.dataset.rating;
      }
      const conversation = group.closest(".chat"); // none on the admin's log page
      const api = (conversation && conversation.dataset.chatsApi) || "/api/chats";
      const url = api + "/" + encodeURIComponent(group.dataset.chatId) + "/messages/" + group.dataset.messageId + "/feedback";
      try {
        const comment = group.querySelector("input.feedback-comment");
        const saved = await sendJSON(url, "POST", { rating, comment: comment.value || null });
        for (const each of group.querySelectorAll("button.feedback-button")) {
          each.setAttribute("aria-pressed", String(each.dataset.rating === saved.feedback));
        }
        group.removeAttribute("data-error");
        group.dataset.saved = "true";
      } catch (error) {
        group.dataset.error = conversation ? format(conversation.dataset.textFeedbackFailed, { message: error.message }) : error.message;
      }
    });
  }

  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  document.querySelectorAll("section.chat").forEach((root) => new Conversation(root));
  setUpSidebar(document.querySelector("section.chat[data-store=true]"));
  setUpQuotePanel();
  setUpFeedback();
})();
