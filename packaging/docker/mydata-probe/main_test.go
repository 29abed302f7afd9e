package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			http.Error(w, "not ready: no raft leader", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	tests := []struct {
		name, url, wantErr string
	}{
		{"healthy", srv.URL + "/healthz", ""},
		{"not ready", srv.URL + "/readyz", "503 Service Unavailable: not ready: no raft leader"},
		{"https refused", strings.Replace(srv.URL, "http:", "https:", 1) + "/healthz", "only http://"},
		{"nothing listens", "http://127.0.0.1:1/healthz", "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := probe(tt.url, 2*time.Second)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("probe: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("probe error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
