// Camera scanning for the counter page, where the browser has BarcodeDetector: the scan button stays
// hidden otherwise, and typing or a keyboard-wedge scanner (which types the code and presses Enter) work
// without this file.
(() => {
  "use strict";
  const button = document.getElementById("scan");
  const field = document.getElementById("code");
  const form = document.getElementById("code-form");
  const video = document.getElementById("scan-video");
  const status = document.getElementById("scan-status");
  if (!button || !field || !form || !video || !("BarcodeDetector" in window) || !navigator.mediaDevices) {
    return;
  }
  button.hidden = false;

  // A QR code may carry the code itself or a URL with it (?code=… or as the last path segment).
  const codeOf = (raw) => {
    try {
      const u = new URL(raw);
      return u.searchParams.get("code") || u.pathname.split("/").filter(Boolean).pop() || raw;
    } catch (e) {
      return raw;
    }
  };

  let stream = null;
  const stop = () => {
    if (stream) {
      stream.getTracks().forEach((t) => t.stop());
      stream = null;
    }
    video.srcObject = null;
    video.hidden = true;
  };

  button.addEventListener("click", async () => {
    if (stream) {
      stop();
      status.textContent = "";
      return;
    }
    let detector;
    try {
      detector = new BarcodeDetector({ formats: ["qr_code", "code_128", "code_39"] });
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (e) {
      stop();
      status.textContent = button.dataset.msgNocamera;
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    status.textContent = button.dataset.msgLooking;
    await video.play().catch(() => {});
    const look = async () => {
      if (!stream) {
        return;
      }
      try {
        const found = await detector.detect(video);
        if (found.length > 0 && found[0].rawValue) {
          field.value = codeOf(found[0].rawValue);
          stop();
          status.textContent = "";
          form.requestSubmit();
          return;
        }
      } catch (e) {
        // a frame that could not be read: try the next
      }
      setTimeout(look, 250);
    };
    look();
  });
  window.addEventListener("pagehide", stop);
})();
