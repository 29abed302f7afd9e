// The download page: makes a key pair the browser cannot export, asks the hub for one ticket per dataset,
// has the hub relay each data provider's sealed answer, opens it here with HPKE (RFC 9180) on WebCrypto,
// checks the provider's signature, and saves one zip package with a manifest anyone can check later
// (mydata-connector verify). The wire format is docs/protocol.md's: frames of a type byte and a 4-byte
// big-endian length; a header frame in clear, then sealed chunks, then the sealed signed trailer.
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256, Aes256Gcm, zipSync, strToU8 } from "./vendor/download-deps.js";

const FRAME_ERROR = 0x01, FRAME_HEADER = 0x11, FRAME_CHUNK = 0x12, FRAME_TRAILER = 0x13;
const MAX_FRAME = 65552 + 16384;
const enc = new TextEncoder();

const root = document.getElementById("download");
const text = (name) => root.dataset["t" + name.replace(/(^|-)(\w)/g, (_, __, c) => c.toUpperCase())] || "";

function showError(msg) {
  const e = document.getElementById("error");
  e.textContent = msg;
  e.hidden = false;
}

function setStatus(dataset, state, msg) {
  const el = document.getElementById("status-" + dataset);
  if (el) {
    el.textContent = msg;
    el.dataset.state = state;
  }
}

// --- storage: the key pair and tickets stay in this browser (IndexedDB keeps a non-extractable CryptoKey
// as it is), so that a dataset not ready now can be fetched later from the history.
function db() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open("mydata-downloads", 1);
    req.onupgradeneeded = () => req.result.createObjectStore("downloads", { keyPath: "consent_id" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function store(op, value) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction("downloads", op === "get" ? "readonly" : "readwrite");
    const s = tx.objectStore("downloads");
    const req = op === "get" ? s.get(value) : op === "put" ? s.put(value) : s.delete(value);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

// --- encodings
const b64url = (u8) => btoa(String.fromCharCode(...u8)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const fromB64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const toB64 = (u8) => {
  let s = "";
  for (let i = 0; i < u8.length; i += 0x8000) s += String.fromCharCode(...u8.subarray(i, i + 0x8000));
  return btoa(s);
};
const hex = (u8) => Array.from(u8, (b) => b.toString(16).padStart(2, "0")).join("");
function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
function u64(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

// --- DER: just enough to find a certificate's SubjectPublicKeyInfo and to turn an ASN.1 ECDSA signature
// into WebCrypto's r||s.
function tlv(buf, off) {
  const tag = buf[off];
  let len = buf[off + 1], hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i];
    hdr += n;
  }
  return { tag, start: off, body: off + hdr, end: off + hdr + len };
}
function spkiOf(cert) {
  const c = tlv(cert, 0);
  const tbs = tlv(cert, c.body);
  let f = tlv(cert, tbs.body);
  if (f.tag === 0xa0) f = tlv(cert, f.end); // version
  for (let i = 0; i < 5; i++) f = tlv(cert, f.end); // serial, signature, issuer, validity, subject
  return cert.slice(f.start, f.end);
}
function rawSignature(der) {
  const seq = tlv(der, 0);
  const r = tlv(der, seq.body), s = tlv(der, r.end);
  const fix = (x) => {
    let v = der.slice(x.body, x.end);
    while (v.length > 32 && v[0] === 0) v = v.slice(1);
    const out = new Uint8Array(32);
    out.set(v, 32 - v.length);
    return out;
  };
  return concat([fix(r), fix(s)]);
}

// --- frames off a fetch body
async function* frames(body) {
  const reader = body.getReader();
  let buf = new Uint8Array(0);
  for (;;) {
    while (buf.length >= 5) {
      const len = new DataView(buf.buffer, buf.byteOffset + 1, 4).getUint32(0);
      if (len > MAX_FRAME) throw new Error("frame too large");
      if (buf.length < 5 + len) break;
      yield { type: buf[0], payload: buf.slice(5, 5 + len) };
      buf = buf.subarray(5 + len);
    }
    const { done, value } = await reader.read();
    if (done) {
      if (buf.length) throw new Error("truncated frame");
      return;
    }
    buf = buf.length ? concat([buf, value]) : value;
  }
}

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes256Gcm() });

// fetchOne has the hub relay one ticket, and opens and checks what comes back. It returns the file and
// what the package's manifest says of it, or a status without content.
async function fetchOne(item, keyPair) {
  const resp = await fetch("/download/relay", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.relayCsrf },
    body: JSON.stringify({ ticket: item.ticket }),
  });
  if (!resp.ok) {
    let msg = text("failed");
    try {
      msg = (await resp.json()).error || msg;
    } catch (e) {}
    return { status: "error", message: msg };
  }
  // The connector that answered, one of those the ticket names (a dataset may be served by several).
  const dp = resp.headers.get("X-MyData-DP") || item.dp;
  if (!(item.dps || [item.dp]).includes(dp)) return { status: "bad" };
  const it = frames(resp.body);
  const first = await it.next();
  if (first.done || first.value.type !== FRAME_HEADER) return { status: "bad" };
  const headerText = new TextDecoder().decode(first.value.payload);
  const header = JSON.parse(headerText);
  if (header.status !== "ok") return { status: header.status, retryAfter: header.retry_after || 0 };
  // The signature covers the manifest exactly as sent: the header's last member, byte for byte.
  const at = headerText.indexOf('"manifest":');
  const manifestRaw = enc.encode(headerText.slice(at + 11, headerText.length - 1));
  const m = header.manifest;
  if (m.ticket_id !== item.ticket_id || m.dataset !== item.dataset || m.kem !== 0x20) return { status: "bad" };
  const ctx = await suite.createRecipientContext({
    recipientKey: keyPair,
    enc: fromB64(m.enc),
    info: enc.encode("mydata content " + m.ticket_id),
  });
  const chunks = [];
  let size = 0, trailer = null;
  for await (const f of it) {
    if (trailer) return { status: "bad" };
    if (f.type === FRAME_CHUNK) {
      const pt = new Uint8Array(await ctx.open(f.payload, enc.encode("mydata chunk")));
      chunks.push(pt);
      size += pt.length;
    } else if (f.type === FRAME_TRAILER) {
      trailer = JSON.parse(new TextDecoder().decode(await ctx.open(f.payload, enc.encode("mydata final"))));
    } else {
      return { status: "bad" };
    }
  }
  if (!trailer) return { status: "bad" };
  const data = concat(chunks);
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  if (trailer.size !== size || toB64(sum) !== trailer.sha256 || (m.declared_size >= 0 && m.declared_size !== size)) return { status: "bad" };
  // The DP signs SHA-256 of this; WebCrypto's ECDSA hashes what it is given.
  const signed = concat([enc.encode("mydata/1 delivery\0"), u64(manifestRaw.length), manifestRaw, u64(size), sum]);
  const chain = trailer.chain.map(fromB64);
  const key = await crypto.subtle.importKey("spki", spkiOf(chain[0]), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  const good = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, rawSignature(fromB64(trailer.signature)), signed);
  if (!good) return { status: "bad" };
  // The chain must lead to the federation's root and name the agency's connector; the hub checks that
  // (certificates are public), and `mydata-connector verify` checks it again offline.
  const chk = await fetch("/download/signer", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.relayCsrf },
    body: JSON.stringify({ dp, chain: trailer.chain }),
  });
  if (!chk.ok) return { status: "bad" };
  return {
    status: "ok",
    data,
    entry: {
      name: fileName(item),
      dataset: item.dataset,
      content_type: m.content_type,
      size,
      sha256: hex(sum),
      dp,
      ticket_id: item.ticket_id,
      delivery_manifest: toB64(manifestRaw),
      signature: trailer.signature,
      chain: trailer.chain,
    },
  };
}

const extensions = { "application/json": ".json", "text/csv": ".csv", "application/pdf": ".pdf", "application/xml": ".xml" };
const fileName = (item) => item.dataset + (extensions[item.content_type] || ".bin");

// run fetches every ticket not yet fetched, and saves what arrived as one package.
async function run(rec) {
  const files = {}, entries = [];
  for (const item of rec.items) {
    if (item.done) continue;
    setStatus(item.dataset, "fetching", text("fetching"));
    let r;
    try {
      r = await fetchOne(item, rec.key);
    } catch (e) {
      r = { status: "bad" };
    }
    switch (r.status) {
      case "ok":
        files[r.entry.name] = r.data;
        entries.push(r.entry);
        item.done = true;
        setStatus(item.dataset, "ok", text("ok"));
        break;
      case "not_ready":
        setStatus(item.dataset, "not_ready", text("not-ready").replace("{n}", String(Math.max(1, Math.ceil(r.retryAfter / 60)))));
        break;
      case "no_record":
        item.done = true;
        setStatus(item.dataset, "no_record", text("no-record"));
        break;
      case "refused":
      case "unavailable":
      case "failed":
        setStatus(item.dataset, r.status, text(r.status));
        break;
      case "error":
        setStatus(item.dataset, "failed", r.message);
        break;
      default:
        setStatus(item.dataset, "bad", text("bad"));
    }
  }
  if (rec.items.every((i) => i.done)) {
    await store("delete", rec.consent_id);
  } else {
    await store("put", rec);
  }
  if (entries.length) {
    const manifest = { format: "mydata-package/1", consent_id: rec.consent_id, created_at: new Date().toISOString(), files: entries };
    files["manifest.json"] = strToU8(JSON.stringify(manifest, null, 2));
    const zip = zipSync(files, { level: 0 });
    const name = "mydata-" + rec.consent_id + ".zip";
    const url = URL.createObjectURL(new Blob([zip], { type: "application/zip" }));
    const a = document.getElementById("save");
    a.href = url;
    a.download = name;
    document.getElementById("saved").hidden = false;
    a.click();
    const note = document.createElement("p");
    note.id = "saved-note";
    note.setAttribute("role", "status");
    note.textContent = text("saved").replace("{file}", name);
    document.getElementById("saved").after(note);
  }
}

async function start() {
  const button = document.getElementById("start");
  button.disabled = true;
  let keyPair;
  try {
    keyPair = await crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
  } catch (e) {
    showError(text("unsupported"));
    return;
  }
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", keyPair.publicKey));
  const datasets = root.dataset.datasets.split(",");
  const resp = await fetch("/download/start", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": root.dataset.csrf },
    body: JSON.stringify({ pending: root.dataset.pending, datasets, public_key: b64url(pub) }),
  });
  const body = await resp.json();
  if (!resp.ok) {
    showError(body.error || text("failed"));
    return;
  }
  // The download is made: there is nothing left to cancel or to start again.
  button.closest(".buttons").hidden = true;
  for (const u of body.unavailable || []) setStatus(u.dataset, "unavailable", u.reason);
  const rec = { consent_id: body.consent_id, key: keyPair, items: body.items, created_at: Date.now() };
  try {
    await store("put", rec);
  } catch (e) {
    // Without storage (a private window, say) the download still works now; only a later fetch cannot.
  }
  await run(rec);
}

async function resume() {
  const button = document.getElementById("start");
  let rec;
  try {
    rec = await store("get", root.dataset.consent);
  } catch (e) {}
  if (!rec) {
    button.disabled = true;
    showError(text("nokey"));
    return;
  }
  button.disabled = true;
  await run(rec);
  button.disabled = rec.items.every((i) => i.done);
}

// The button stays disabled until this script is ready: without it the page can do nothing.
const button = document.getElementById("start");
button.addEventListener("click", () => (root.dataset.consent ? resume() : start()));
if (root.dataset.consent) {
  // A download's own page can fetch only in the browser that holds its key: say so at once elsewhere.
  store("get", root.dataset.consent).then(
    (rec) => (rec ? (button.disabled = false) : showError(text("nokey"))),
    () => showError(text("nokey")),
  );
} else {
  button.disabled = false;
}
