package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/mydatafed/mydata/hub/internal/backup"
	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// backupCmd asks the running hub for a backup and writes it to --out with mode 0600: it holds the CA key.
func backupCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	op := addOperatorFlags(fs)
	dst := fs.String("out", "", "file to write the backup to (required; must not exist)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dst == "" {
		return errors.New("backup: --out is required")
	}
	client, err := op.client()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := client.Download(ctx, hubapi.PathBackup, f); err != nil {
		f.Close()
		os.Remove(*dst)
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := backup.Check(*dst); err != nil {
		os.Remove(*dst)
		return fmt.Errorf("backup: the file written does not read back whole, removed it: %w", err)
	}
	fi, _ := os.Stat(*dst)
	_, err = fmt.Fprintf(out, "wrote backup %s (%d bytes)\n", *dst, fi.Size())
	return err
}

// restoreCmd unpacks a backup onto a fresh node, offline.
func restoreCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	path := fs.String("config", "/etc/mydata/hub.yaml", "configuration of the fresh node")
	src := fs.String("in", "", "backup file (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *src == "" {
		return errors.New("restore: --in is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	// What restore writes (the CA, the cluster key, the seeded raft snapshot) is private, as serve's is.
	syscall.Umask(0o077)
	f, err := os.Open(*src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	m, err := backup.Restore(f, cfg)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	_, err = fmt.Fprintf(out, "restored the backup of node %s (trust domain %s, index %d, taken %s) into %s; start the node with serve\n",
		m.Node, m.TrustDomain, m.Index, m.CreatedAt.Format(time.RFC3339), cfg.DataDir)
	return err
}
