package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/hub/internal/join"
	"github.com/mydatafed/mydata/hub/internal/server"
	"github.com/mydatafed/mydata/pkg/gctune"
	"github.com/mydatafed/mydata/pkg/telemetry"
)

func loadConfig(fs *flag.FlagSet, args []string) (config.Config, error) {
	path := fs.String("config", "/etc/mydata/hub.yaml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return config.Config{}, err
	}
	return config.Load(*path)
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	path := fs.String("config", "/etc/mydata/hub.yaml", "configuration file")
	joinURLs := fs.String("join", "", "join the cluster through this member's API URL (several: comma-separated); overrides raft.join")
	token := fs.String("token", "", "node join token (from mydata-hub admin cluster join-token); overrides raft.join_token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadWith(*path, func(c *config.Config) {
		if *joinURLs != "" {
			c.Raft.Join = join.URLs(*joinURLs)
		}
		if *token != "" {
			c.Raft.JoinToken = *token
		}
	})
	if err != nil {
		return err
	}
	// Every file and directory the hub writes is private to its user, whatever the umask it was started
	// with: raft's WAL and snapshots, SQLite's files and keys alike.
	syscall.Umask(0o077)
	// 768 MiB: below the packaged unit's MemoryMax (1 GiB).
	gctune.Set(400, 768<<20)
	log := telemetry.NewLogger(os.Stderr, cfg.Log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	s, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func version(w io.Writer) error { return telemetry.PrintVersion(w, "mydata-hub") }
