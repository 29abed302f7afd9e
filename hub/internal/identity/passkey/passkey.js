// Browser side of the passkey method. Served by the portal from its own origin (CSP script-src 'self');
// it holds no words: every message comes from a data- attribute the portal fills in both languages.
//
// Markup (on a <form>, whose submit it takes over, or on a <button>):
//   data-passkey="register" | "login"
//   data-passkey-begin="/url"      POSTs the enclosing form's fields (urlencoded), answers the options JSON;
//   data-passkey-options="{...}"   or the options JSON itself, rendered into the page
//   data-passkey-finish="/url"     receives the credential JSON; answers a redirect, or {"redirect": "/path"},
//                                  or on failure {"error": "message in both languages"}
//   data-passkey-csrf="token"      sent as X-CSRF-Token (default: the form's "csrf" field)
//   data-passkey-status="id"       element (role="status") that shows messages
//   data-msg-working, data-msg-unsupported, data-msg-cancelled, data-msg-exists, data-msg-failed
(function () {
  "use strict";

  function toBuffer(s) {
    s = String(s).replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) {
      s += "=";
    }
    var bin = atob(s);
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) {
      out[i] = bin.charCodeAt(i);
    }
    return out.buffer;
  }

  function toBase64url(buf) {
    var bytes = new Uint8Array(buf);
    var s = "";
    for (var i = 0; i < bytes.length; i++) {
      s += String.fromCharCode(bytes[i]);
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function decodeDescriptors(list) {
    return (list || []).map(function (d) {
      var out = { type: d.type || "public-key", id: toBuffer(d.id) };
      if (d.transports) {
        out.transports = d.transports;
      }
      return out;
    });
  }

  // The options are go-webauthn's CredentialCreation / CredentialAssertion: {"publicKey": {...}, "mediation"?}.
  function creationOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = toBuffer(pk.challenge);
    pk.user = Object.assign({}, pk.user, { id: toBuffer(pk.user.id) });
    if (pk.excludeCredentials) {
      pk.excludeCredentials = decodeDescriptors(pk.excludeCredentials);
    }
    return { publicKey: pk };
  }

  function requestOptions(o) {
    var pk = Object.assign({}, o.publicKey);
    pk.challenge = toBuffer(pk.challenge);
    if (pk.allowCredentials) {
      pk.allowCredentials = decodeDescriptors(pk.allowCredentials);
    }
    var req = { publicKey: pk };
    if (o.mediation) {
      req.mediation = o.mediation;
    }
    return req;
  }

  // The JSON protocol.ParseCredentialCreationResponseBody / ParseCredentialRequestResponseBody read.
  function credentialJSON(cred) {
    var r = cred.response;
    var out = {
      id: cred.id,
      rawId: toBase64url(cred.rawId),
      type: cred.type,
      clientExtensionResults: {},
      response: { clientDataJSON: toBase64url(r.clientDataJSON) }
    };
    if (cred.authenticatorAttachment) {
      out.authenticatorAttachment = cred.authenticatorAttachment;
    }
    if (r.attestationObject) {
      out.response.attestationObject = toBase64url(r.attestationObject);
      if (typeof r.getTransports === "function") {
        out.response.transports = r.getTransports();
      }
      if (typeof r.getAuthenticatorData === "function") {
        out.response.authenticatorData = toBase64url(r.getAuthenticatorData());
      }
      if (typeof r.getPublicKey === "function") {
        var key = r.getPublicKey();
        if (key) {
          out.response.publicKey = toBase64url(key);
        }
      }
      if (typeof r.getPublicKeyAlgorithm === "function") {
        out.response.publicKeyAlgorithm = r.getPublicKeyAlgorithm();
      }
    } else {
      out.response.authenticatorData = toBase64url(r.authenticatorData);
      out.response.signature = toBase64url(r.signature);
      if (r.userHandle && r.userHandle.byteLength > 0) {
        out.response.userHandle = toBase64url(r.userHandle);
      }
    }
    return out;
  }

  function sameOrigin(u) {
    try {
      var url = new URL(u, window.location.href);
      return url.origin === window.location.origin ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function Ceremony(el) {
    this.el = el;
    this.form = el.tagName === "FORM" ? el : el.form || el.closest("form");
    this.kind = el.getAttribute("data-passkey");
    this.busy = false;
    var id = el.getAttribute("data-passkey-status");
    this.status = id ? document.getElementById(id) : null;
    if (!this.status) {
      this.status = document.createElement("p");
      this.status.setAttribute("role", "status");
      this.status.setAttribute("aria-live", "polite");
      el.insertAdjacentElement("afterend", this.status);
    }
  }

  Ceremony.prototype.say = function (key, fallbackKey) {
    var text = this.el.getAttribute("data-msg-" + key);
    if (text === null && fallbackKey) {
      text = this.el.getAttribute("data-msg-" + fallbackKey);
    }
    this.status.textContent = text || "";
  };

  Ceremony.prototype.controls = function () {
    if (this.el.tagName === "FORM") {
      return Array.prototype.slice.call(this.el.querySelectorAll("button, input[type=submit]"));
    }
    return [this.el];
  };

  Ceremony.prototype.setBusy = function (busy) {
    this.busy = busy;
    var root = this.form || this.el;
    if (busy) {
      root.setAttribute("aria-busy", "true");
    } else {
      root.removeAttribute("aria-busy");
    }
    this.controls().forEach(function (c) {
      c.disabled = busy;
    });
  };

  Ceremony.prototype.headers = function (extra) {
    var h = Object.assign({ Accept: "application/json" }, extra || {});
    var token = this.el.getAttribute("data-passkey-csrf");
    if (token === null && this.form && this.form.elements.namedItem("csrf")) {
      token = this.form.elements.namedItem("csrf").value;
    }
    if (token) {
      h["X-CSRF-Token"] = token;
    }
    return h;
  };

  Ceremony.prototype.options = async function () {
    var inline = this.el.getAttribute("data-passkey-options");
    if (inline) {
      return JSON.parse(inline);
    }
    var res = await fetch(this.el.getAttribute("data-passkey-begin"), {
      method: "POST",
      credentials: "same-origin",
      headers: this.headers({ "Content-Type": "application/x-www-form-urlencoded" }),
      body: this.form ? new URLSearchParams(new FormData(this.form)) : ""
    });
    if (!res.ok) {
      throw await serverError(res);
    }
    return res.json();
  };

  function ServerError(message) {
    this.name = "ServerError";
    this.message = message;
  }

  async function serverError(res) {
    var msg = "";
    try {
      var body = await res.json();
      msg = typeof body.error === "string" ? body.error : "";
    } catch (e) {
      msg = "";
    }
    return new ServerError(msg);
  }

  Ceremony.prototype.run = async function () {
    if (this.busy) {
      return;
    }
    this.setBusy(true);
    this.say("working");
    try {
      var opts = await this.options();
      var cred;
      if (this.kind === "register") {
        cred = await navigator.credentials.create(creationOptions(opts));
      } else {
        cred = await navigator.credentials.get(requestOptions(opts));
      }
      if (!cred) {
        throw new DOMException("", "NotAllowedError");
      }
      var res = await fetch(this.el.getAttribute("data-passkey-finish"), {
        method: "POST",
        credentials: "same-origin",
        headers: this.headers({ "Content-Type": "application/json" }),
        body: JSON.stringify(credentialJSON(cred))
      });
      if (!res.ok) {
        throw await serverError(res);
      }
      var target = null;
      if ((res.headers.get("Content-Type") || "").indexOf("application/json") === 0) {
        var body = await res.json();
        target = body && typeof body.redirect === "string" ? sameOrigin(body.redirect) : null;
      } else if (res.redirected) {
        target = sameOrigin(res.url);
      }
      if (target) {
        window.location.assign(target);
      } else {
        window.location.reload();
      }
    } catch (e) {
      if (e instanceof ServerError && e.message) {
        this.status.textContent = e.message;
      } else if (e && (e.name === "NotAllowedError" || e.name === "AbortError")) {
        this.say("cancelled", "failed");
      } else if (e && e.name === "InvalidStateError") {
        this.say("exists", "failed");
      } else {
        this.say("failed");
      }
      this.setBusy(false);
    }
  };

  function supported() {
    return !!(window.PublicKeyCredential && navigator.credentials && window.fetch && window.URL);
  }

  function activate(el) {
    if (el.getAttribute("data-passkey-ready") === "1") {
      return;
    }
    el.setAttribute("data-passkey-ready", "1");
    var c = new Ceremony(el);
    if (!supported()) {
      c.say("unsupported", "failed");
      c.controls().forEach(function (b) {
        b.disabled = true;
      });
      return;
    }
    var start = function (ev) {
      ev.preventDefault();
      c.run();
    };
    if (el.tagName === "FORM") {
      el.addEventListener("submit", start);
      return;
    }
    el.addEventListener("click", start);
    // An element that is not a button is made one for keyboards and screen readers.
    if (el.tagName !== "BUTTON" && el.tagName !== "INPUT") {
      el.setAttribute("role", "button");
      if (!el.hasAttribute("tabindex")) {
        el.setAttribute("tabindex", "0");
      }
      el.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") {
          start(ev);
        }
      });
    }
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-passkey]"), activate);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
