package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
)

func TestServer(t *testing.T) {
	var ready atomic.Bool
	s, err := Listen("127.0.0.1:0", NewRegistry("test"), func() error {
		if !ready.Load() {
			return errors.New("no directory yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "no directory yet") {
		t.Fatalf("readyz %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("readyz after ready %d", code)
	}
	if _, body := get("/metrics"); !strings.Contains(body, `mydata_build_info{component="test"`) {
		t.Fatalf("metrics lack build info: %s", body[:200])
	}
}

func TestLogConfigValidate(t *testing.T) {
	for _, c := range []LogConfig{{"text", "info"}, {"json", "debug"}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	for _, c := range []LogConfig{{"xml", "info"}, {"json", "loud"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
