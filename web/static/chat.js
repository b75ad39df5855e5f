// The chat: stream an answer from /v1/chat/completions as plain text, then swap in the server's
// sanitised rendering from /chat/render. Nothing from a document or the model is ever set as HTML
// here: streamed text goes through textContent, and only /chat/render's output becomes markup.
(function () {
  "use strict";

  function format(template, values) {
    return template.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
  }

  function postJSON(url, body, accept) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: accept, "X-CSRF-Token": kb.csrfToken },
      body: JSON.stringify(body),
    });
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
      try {
        const finished = await this.stream(question, text);
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
        answer.classList.remove("streaming");
        this.button.disabled = false;
        this.input.focus();
      }
    }

    async stream(question, target) {
      const response = await postJSON("/v1/chat/completions", this.requestBody(question), "text/event-stream");
      if (!response.ok) throw new Error(await errorMessage(response));
      const finished = { text: "", quotes: [], chatId: null, messageId: null };
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
        "/chat/render",
        { text: finished.text, quotes: finished.quotes, chat_id: finished.chatId, message_id: finished.messageId },
        "text/html"
      );
      if (!response.ok) throw new Error(await errorMessage(response));
      placeFragment(item, await response.text());
    }

    // After the first kept answer: the address names the conversation, and the sidebar lists it.
    async remember() {
      const appId = this.root.dataset.appId;
      const chatId = this.root.dataset.chatId;
      const url = new URL(window.location.href);
      if (url.searchParams.get("chat") !== chatId) {
        url.searchParams.set("app", appId);
        url.searchParams.set("chat", chatId);
        window.history.replaceState(null, "", url.pathname + url.search);
      }
      const sidebar = document.querySelector(".chat-history");
      if (!sidebar) return;
      const listing = await kb.fetchJSON("/api/chats?app_id=" + encodeURIComponent(appId));
      const items = listing.data.map((chat) => {
        const item = document.createElement("li");
        const link = document.createElement("a");
        link.href = "/?app=" + encodeURIComponent(appId) + "&chat=" + encodeURIComponent(chat.id);
        link.textContent = chat.title || chat.id;
        if (chat.id === chatId) link.setAttribute("aria-current", "page");
        item.appendChild(link);
        return item;
      });
      sidebar.replaceChildren(...items);
    }
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

  // Thumbs up/down on a kept answer; pressing the pressed one again clears it.
  function setUpFeedback() {
    document.addEventListener("click", async (event) => {
      const button = event.target.closest("button.feedback-button");
      if (!button) return;
      const group = button.closest(".feedback");
      const rating = button.getAttribute("aria-pressed") === "true" ? null : button.dataset.rating;
      const url =
        "/api/chats/" + encodeURIComponent(group.dataset.chatId) + "/messages/" + group.dataset.messageId + "/feedback";
      try {
        const saved = await kb.fetchJSON(url, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ rating }),
        });
        for (const each of group.querySelectorAll("button.feedback-button")) {
          each.setAttribute("aria-pressed", String(each.dataset.rating === saved.feedback));
        }
        group.removeAttribute("data-error");
      } catch (error) {
        const conversation = group.closest(".chat");
        group.dataset.error = format(conversation.dataset.textFeedbackFailed, { message: error.message });
      }
    });
  }

  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  document.querySelectorAll("section.chat").forEach((root) => new Conversation(root));
  setUpQuotePanel();
  setUpFeedback();
})();
