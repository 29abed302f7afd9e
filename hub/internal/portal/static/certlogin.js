// Certificate login: the page asks the signing component on the citizen's computer to sign the hub's
// challenge with the card, then posts the SignedData it returns. No words here: the page's data-
// attributes carry the messages in the citizen's language.
(function () {
  "use strict";
  var form = document.getElementById("method-form");
  if (!form || !form.getAttribute("data-signer")) {
    return;
  }
  var status = document.getElementById("cert-status");
  form.addEventListener("submit", async function (ev) {
    if (form.elements.namedItem("signed_data").value) {
      return;
    }
    ev.preventDefault();
    if (!form.reportValidity()) {
      return;
    }
    status.textContent = form.getAttribute("data-msg-working");
    try {
      var res = await fetch(form.getAttribute("data-signer"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ challenge: btoa(form.getAttribute("data-challenge")) })
      });
      if (!res.ok) {
        throw new Error("signer answered " + res.status);
      }
      var out = await res.json();
      form.elements.namedItem("signed_data").value = out.signed_data;
      // The form's own submit, not a control named "submit" that would shadow it.
      HTMLFormElement.prototype.submit.call(form);
    } catch (e) {
      status.textContent = form.getAttribute("data-msg-nosigner");
    }
  });
})();
