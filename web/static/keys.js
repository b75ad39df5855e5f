// The copy button next to a new API key: the clipboard where the browser allows it (HTTPS or
// localhost), else the key is selected so that Ctrl+C copies it.
(function () {
  "use strict";
  for (const button of document.querySelectorAll("button[data-copy-from]")) {
    const field = document.getElementById(button.dataset.copyFrom);
    const status = button.closest("section").querySelector(".copy-status");
    button.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(field.value);
        status.textContent = button.dataset.textCopied;
      } catch (refused) {
        field.focus();
        field.select();
        status.textContent = button.dataset.textSelect;
      }
    });
  }
})();
