// Package telemetry sets up what every process of the federation exposes to its operators: structured logs,
// Prometheus metrics with build information, and the /healthz and /readyz probes.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Log attribute keys used across the project, so that a query over the logs finds every occurrence.
const (
	KeyComponent = "component"
	KeyError     = "err"
	KeyPeer      = "peer"
	KeySPIFFEID  = "spiffe_id"
	KeyAddr      = "addr"
)

// Version is set at link time (-ldflags "-X .../telemetry.Version=...").
var Version = "dev"

// LogConfig chooses the log format and level.
type LogConfig struct {
	// Format is "text" or "json".
	Format string `yaml:"format"`
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

// Validate reports a bad value with its key.
func (c LogConfig) Validate() error {
	switch c.Format {
	case "text", "json":
	default:
		return fmt.Errorf("log.format: %q is neither text nor json", c.Format)
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Level)
	}
	return nil
}

// NewLogger makes the process's logger.
func NewLogger(w io.Writer, c LogConfig) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: l}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// NewRegistry makes a registry holding the Go and process collectors and mydata_build_info.
func NewRegistry(component string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "mydata_build_info",
		Help:        "Build information of this process; always 1.",
		ConstLabels: prometheus.Labels{"component": component, "version": Version, "goversion": goVersion},
	})
	info.Set(1)
	reg.MustRegister(info)
	return reg
}

// Server serves /metrics, /healthz and /readyz on its own listener, apart from the service ports, so that
// scraping needs no client certificate.
type Server struct {
	ln    net.Listener
	srv   *http.Server
	ready func() error
}

// Listen binds addr. ready reports why the process is not ready, or nil.
func Listen(addr string, g prometheus.Gatherer, ready func() error) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry listen %s: %w", addr, err)
	}
	s := &Server{ln: ln, ready: ready}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// PrintVersion writes "<binary> <version> (<go version>)", what each binary's version command prints.
func PrintVersion(w io.Writer, binary string) error {
	goVersion := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	_, err := fmt.Fprintf(w, "%s %s (%s)\n", binary, Version, goVersion)
	return err
}
