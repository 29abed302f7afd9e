package federationtest

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mydatafed/mydata/pkg/seal"
)

// TestDownloadCrypto checks the download page's vendored HPKE (@hpke/core, in
// hub/internal/portal/static/vendor) in Chromium: DeriveKeyPair on RFC 9180's test vector for the suite the
// page uses (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; the vector file Go's crypto/hpke is tested
// with) gives the vector's keys, and a chunked stream sealed by Go's crypto/hpke as the data providers seal
// (pkg/seal) opens in the browser, chunk by chunk, with the final chunk's AAD, and not with the AADs swapped.
func TestDownloadCrypto(t *testing.T) {
	skipWithoutChromium(t)
	t.Parallel()
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "src", "crypto", "hpke", "testdata", "rfc9180.json"))
	if err != nil {
		t.Fatalf("RFC 9180 vectors not found with the Go installation: %v", err)
	}
	var rawVectors []map[string]any
	if err := json.Unmarshal(raw, &rawVectors); err != nil {
		t.Fatal(err)
	}
	var vec map[string]any
	for _, v := range rawVectors {
		if v["mode"] == 0.0 && v["kem_id"] == 32.0 && v["kdf_id"] == 1.0 && v["aead_id"] == 2.0 {
			vec = v
		}
	}
	if vec == nil {
		t.Fatal("no vector for DHKEM(X25519), HKDF-SHA256, AES-256-GCM in rfc9180.json")
	}
	static := http.FileServer(http.Dir(filepath.Join(repoRoot(t), "hub", "internal", "portal", "static")))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, `<!doctype html><title>hpke</title>`)
			return
		}
		static.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	b := StartBrowser(t)
	tab := b.NewTab().For(t)
	tab.Navigate(srv.URL + "/")

	// The RFC's key derivation.
	var keys struct{ PK, SK string }
	tab.Eval(fmt.Sprintf(`(async () => {
		const m = await import("/vendor/download-deps.js");
		const suite = new m.CipherSuite({kem: new m.DhkemX25519HkdfSha256(), kdf: new m.HkdfSha256(), aead: new m.Aes256Gcm()});
		const hex = (s) => Uint8Array.from(s.match(/../g), (h) => parseInt(h, 16));
		const toHex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");
		const kp = await suite.kem.deriveKeyPair(hex(%q));
		return {PK: toHex(await suite.kem.serializePublicKey(kp.publicKey)), SK: toHex(await suite.kem.serializePrivateKey(kp.privateKey))};
	})()`, vec["ikmR"]), &keys)
	if keys.PK != vec["pkRm"] || keys.SK != vec["skRm"] {
		t.Fatalf("DeriveKeyPair: pk %s sk %s, want the RFC vector's %s %s", keys.PK, keys.SK, vec["pkRm"], vec["skRm"])
	}

	// A stream sealed by Go, as a DP seals it, to the vector's key.
	pkRm, _ := hex.DecodeString(vec["pkRm"].(string))
	pub, err := seal.ParsePublicKey(seal.KEMX25519, pkRm)
	if err != nil {
		t.Fatal(err)
	}
	info := []byte("mydata content t-1")
	enc, sender, err := seal.NewSender(pub, info)
	if err != nil {
		t.Fatal(err)
	}
	var chunks []string
	var want strings.Builder
	for i, part := range []string{"first chunk 第一", strings.Repeat("x", seal.ChunkSize), "last"} {
		ct, err := sender.Seal([]byte(part), i == 2)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, base64.StdEncoding.EncodeToString(ct))
		want.WriteString(part)
	}
	open := func(finalAAD, chunkAAD string) (string, error) {
		var got string
		err := tab.evalErr(fmt.Sprintf(`(async () => {
			const m = await import("/vendor/download-deps.js");
			const suite = new m.CipherSuite({kem: new m.DhkemX25519HkdfSha256(), kdf: new m.HkdfSha256(), aead: new m.Aes256Gcm()});
			const hex = (s) => Uint8Array.from(s.match(/../g), (h) => parseInt(h, 16));
			const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
			const e = new TextEncoder();
			const sk = await suite.kem.importKey("raw", hex(%q), false);
			const pk = await suite.kem.importKey("raw", hex(%q), true);
			const ctx = await suite.createRecipientContext({recipientKey: {privateKey: sk, publicKey: pk}, enc: b64(%q), info: e.encode(%q)});
			const cts = %s;
			let out = "";
			for (let i = 0; i < cts.length; i++) {
				out += new TextDecoder().decode(await ctx.open(b64(cts[i]), e.encode(i === cts.length - 1 ? %q : %q)));
			}
			return out;
		})()`, vec["skRm"], vec["pkRm"], base64.StdEncoding.EncodeToString(enc), info, jsonList(chunks), finalAAD, chunkAAD), &got)
		return got, err
	}
	got, err := open("mydata final", "mydata chunk")
	if err != nil || got != want.String() {
		t.Fatalf("the browser opens %d bytes (%v), want the %d Go sealed", len(got), err, want.Len())
	}
	if _, err := open("mydata chunk", "mydata chunk"); err == nil {
		t.Fatal("the browser opened the final chunk under a content chunk's AAD")
	}
}

func jsonList(s []string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
