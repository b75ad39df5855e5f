// Confirmation by typing: a form's submit button stays disabled until the field holds the expected text.
// The server checks the same text; this only saves a round trip.
(function () {
  "use strict";
  document.querySelectorAll("input[data-must-equal]").forEach((input) => {
    const button = input.form.querySelector("button[type=submit]");
    const check = () => {
      button.disabled = input.value.trim() !== input.dataset.mustEqual;
    };
    input.addEventListener("input", check);
    check();
  });
})();
