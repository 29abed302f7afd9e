package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/mydatafed/mydata/connector/internal/agent"
	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/pkg/telemetry"
)

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "/etc/mydata/connector.yaml", "configuration file")
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(os.Stderr, cfg.Log)
	tuneGC()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func version(w io.Writer) error { return telemetry.PrintVersion(w, "mydata-connector") }

// tuneGC trades memory for CPU unless the operator chose with GOGC or GOMEMLIMIT: sealing and opening
// 64 KiB chunks makes garbage at the transfer rate, and collecting it took 10-13 % of a connector's CPU
// (docs/benchmarks.md). A soft memory limit below the packaged unit's MemoryMax (512 MiB) makes the
// collector work harder again before memory runs short.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(384 << 20)
	}
}
