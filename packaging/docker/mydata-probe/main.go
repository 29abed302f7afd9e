// Command mydata-probe is the container health check of the MyData images: it GETs one plain-HTTP URL
// (a process's telemetry /healthz or /readyz) and exits 0 on a 200 answer, 1 otherwise.
//
// The images have no shell, curl or wget (distroless-like: the binary, glibc and CA certificates), so the
// HEALTHCHECK needs a program of its own; this one is static (CGO_ENABLED=0) and uses no TLS, only what a
// loopback probe of the telemetry listener needs.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

const usage = `usage: mydata-probe URL
  GET URL (http:// only, e.g. http://127.0.0.1:9444/healthz); exit 0 on 200, 1 otherwise.
`

func main() {
	if len(os.Args) != 2 || os.Args[1] == "-h" || os.Args[1] == "--help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if err := probe(os.Args[1], 5*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "mydata-probe:", err)
		os.Exit(1)
	}
}

func probe(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if req.URL.Scheme != "http" {
		return fmt.Errorf("%s: only http:// URLs are probed", url)
	}
	// No proxy from the environment: the probe is always of this container's own listener.
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return nil
}
