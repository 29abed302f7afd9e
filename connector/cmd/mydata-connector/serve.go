package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mydatafed/mydata/connector/internal/agent"
	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/pkg/gctune"
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
	// At once, before anything slow: SIGHUP's default action would end the process. One pending signal is
	// enough, since a reload reads the file as it is then.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(os.Stderr, cfg.Log)
	// 384 MiB: below the packaged unit's MemoryMax (512 MiB).
	gctune.Set(400, 384<<20)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a, err := agent.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	a.ReloadOn(hup, func() (config.Config, error) { return config.Load(*path) })
	return a.Run(ctx)
}

func version(w io.Writer) error { return telemetry.PrintVersion(w, "mydata-connector") }
