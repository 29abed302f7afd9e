package federationtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// largeExchange posts a code to the SP's POST /v1/exchanges for a dataset too large to be answered inline,
// checks that the answer gives a content URL and no content, calls onSpilled (with the spill files then
// in the SP's data directory), and reads the content at the URL to its end. It returns the size read and
// its SHA-256, which must be what the answer said.
func largeExchange(tb testing.TB, f *benchFed, subject string, onSpilled func(files []string, contentURL string)) (int64, string, error) {
	code, p := f.approve(tb, subject)
	return largeExchangeCode(tb, f, code, p, onSpilled)
}

// largeExchangeCode is largeExchange with the citizen's code already in hand.
func largeExchangeCode(tb testing.TB, f *benchFed, code string, p PKCE, onSpilled func(files []string, contentURL string)) (int64, string, error) {
	body, _ := json.Marshal(map[string]string{"code": code, "code_verifier": p.Verifier, "redirect_uri": benchRedirect})
	client := &http.Client{Timeout: 10 * time.Minute}
	resp, err := client.Post("http://"+f.sp.API+"/v1/exchanges", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, "", fmt.Errorf("exchange: %s: %v %.300s", resp.Status, err, raw)
	}
	var res ExchangeResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return 0, "", err
	}
	if len(res.Datasets) != 1 {
		return 0, "", fmt.Errorf("exchange answered %.300s", raw)
	}
	d := res.Datasets[0]
	if d.Status != "delivered" || d.Content != nil || d.ContentURL == "" {
		return 0, "", fmt.Errorf("a large dataset answered as status %q, %d bytes inline, content URL %q: %.300s", d.Status, len(d.Content), d.ContentURL, raw)
	}
	if onSpilled != nil {
		files, _ := filepath.Glob(filepath.Join(f.sp.DataDir(), "spill", "spill-*"))
		onSpilled(files, d.ContentURL)
	}
	resp, err = client.Get("http://" + f.sp.API + d.ContentURL)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, "", fmt.Errorf("content: %s: %s", resp.Status, b)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, resp.Body, make([]byte, copyBuf))
	if err != nil {
		return n, "", fmt.Errorf("content after %d bytes: %w", n, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if n != d.Size || sum != d.SHA256 || resp.Header.Get("X-Mydata-SHA256") != d.SHA256 {
		return n, sum, fmt.Errorf("content: %d bytes with digest %s, the exchange said %d bytes with %s", n, sum, d.Size, d.SHA256)
	}
	return n, sum, nil
}

// TestLargeExchangeSpills posts the code of a 16 MiB dataset (sixteen times the spill threshold: what spills
// spills the same way at any size; BenchmarkLargeExchangeRSS runs 1 GiB) to POST /v1/exchanges: the SP answers with a
// content URL instead of the content, keeps the content meanwhile in one spill file that holds none of
// the plaintext, serves it whole at the URL, then removes the file, and the URL answers 410.
func TestLargeExchangeSpills(t *testing.T) {
	t.Parallel()
	const size = 16 << 20
	subject := benchSubjects(t, 1)[0]
	dir := t.TempDir()
	path := filepath.Join(dir, subject+".json")
	writeBulkFile(t, path, size)
	plain, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := startBenchFed(t, dir)
	var spillFile, contentURL string
	n, sum, err := largeExchange(t, f, subject, func(files []string, url string) {
		contentURL = url
		if len(files) != 1 {
			t.Fatalf("spill files while the result waits: %v, want one", files)
		}
		spillFile = files[0]
		raw, err := os.ReadFile(spillFile)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(raw)) < size {
			t.Fatalf("the spill file holds %d bytes, less than the content", len(raw))
		}
		for _, off := range []int{0, 1 << 20, size/2 + 12345, size - 64} {
			if bytes.Contains(raw, plain[off:off+32]) {
				t.Fatalf("the spill file holds plaintext (the 32 bytes at %d)", off)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := fileSHA256(t, path); n != size || sum != want {
		t.Fatalf("read %d bytes with digest %s, want %d with %s", n, sum, size, want)
	}
	if _, err := os.Stat(spillFile); !os.IsNotExist(err) {
		t.Fatalf("the spill file is still there after the content was read: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(f.sp.DataDir(), "spill", "*")); len(left) != 0 {
		t.Fatalf("files left in the spill directory: %v", left)
	}
	resp, err := http.Get("http://" + f.sp.API + contentURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Fatalf("the content URL read a second time: %s, want 410 Gone", resp.Status)
	}
}
