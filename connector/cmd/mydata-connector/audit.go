package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mydatafed/mydata/connector/internal/agent"
	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/pkg/audit"
)

const auditUsage = `usage: mydata-connector audit verify --config FILE
       mydata-connector audit export --config FILE [--since TIME] [--out FILE]
  verify  checks the hash chain: any edited, removed, reordered or inserted row is reported (exit status 1)
  export  writes the entries as JSON lines; TIME is RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)`

func auditCmd(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(auditUsage)
	}
	fs := flag.NewFlagSet("audit "+args[0], flag.ContinueOnError)
	path := configFlag(fs)
	since := fs.String("since", "", "export entries at or after this time")
	dst := fs.String("out", "", "export to this file (default: standard output)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	dbPath, _ := agent.AuditPaths(cfg)
	if _, err := os.Stat(dbPath); err != nil {
		return fmt.Errorf("no audit log at %s: %w", dbPath, err)
	}
	l, err := audit.Open(audit.Config{Path: dbPath, Retention: cfg.Audit.Retention})
	if err != nil {
		return err
	}
	defer l.Close()
	ctx := context.Background()
	switch args[0] {
	case "verify":
		rep, err := l.Verify(ctx)
		if err != nil {
			return err
		}
		if !rep.OK {
			fmt.Fprintf(out, "audit log %s: TAMPERED: %d rows, first bad row %d: %s\n", dbPath, rep.Rows, rep.FirstBadSeq, rep.Problem)
			return errors.New("audit log does not verify")
		}
		_, err = fmt.Fprintf(out, "audit log %s: OK, %d rows, chain intact\n", dbPath, rep.Rows)
		return err
	case "export":
		var t time.Time
		if *since != "" {
			if t, err = time.Parse(time.RFC3339, *since); err != nil {
				if t, err = time.Parse(time.DateOnly, *since); err != nil {
					return fmt.Errorf("--since: %q is neither RFC 3339 nor a date", *since)
				}
			}
		}
		w := out
		if *dst != "" {
			f, err := os.OpenFile(*dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		n, err := l.Export(ctx, t, w)
		if err != nil {
			return err
		}
		if *dst != "" {
			fmt.Fprintf(out, "exported %d entries to %s\n", n, *dst)
		}
		return nil
	}
	return errors.New(auditUsage)
}
