package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/api"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/oplog"
)

const reportUsage = `  report transfers --from YYYY-MM-DD [--to YYYY-MM-DD] [--format csv|json]
                                                       transfers per month, service and dataset, with
                                                       outcomes and failure rate (failed+refused / all)
  report review --org O --year Y [--format csv|json]   an SP's yearly internal-review material: each
                                                       transfer to its services, when, what, for whom (the
                                                       subject's keyed hash) and the outcome
  report changes --from YYYY-MM-DD [--to YYYY-MM-DD] [--format csv|json]
                                                       the changes made in the period, from the operator log
`

// report runs `admin report SUB`: CSV by default, JSON with --format json (or --json).
func (a *adminCtx) report(ctx context.Context, sub string, args []string) error {
	fs := flag.NewFlagSet("report "+sub, flag.ContinueOnError)
	format := fs.String("format", "csv", "csv or json")
	from := fs.String("from", "", "first day, YYYY-MM-DD (Taipei)")
	to := fs.String("to", "", "the day after the last (default: tomorrow)")
	org := fs.String("org", "", "the SP's organisation (review)")
	year := fs.String("year", "", "the calendar year (review)")
	q := url.Values{}
	var path string
	var required []string
	switch sub {
	case "transfers":
		path, required = api.PathReportTransfers, []string{"from"}
	case "changes":
		path, required = api.PathReportChanges, []string{"from"}
	case "review":
		path, required = api.PathReportReview, []string{"org", "year"}
	default:
		return fmt.Errorf("admin report: unknown command %q", sub)
	}
	if err := parseFlags(fs, args, required...); err != nil {
		return err
	}
	if *format != "csv" && *format != "json" {
		return fmt.Errorf("%s: --format must be csv or json, not %q", fs.Name(), *format)
	}
	for k, v := range map[string]string{"from": *from, "to": *to, "org": *org, "year": *year} {
		if v != "" {
			q.Set(k, v)
		}
	}
	path += "?" + q.Encode()
	asJSON := *format == "json" || a.json
	out := func(v any, header []string, row func(i int) []string, n int) error {
		if asJSON {
			enc := json.NewEncoder(a.out)
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		}
		w := csv.NewWriter(a.out)
		_ = w.Write(header)
		for i := range n {
			_ = w.Write(row(i))
		}
		w.Flush()
		return w.Error()
	}
	switch sub {
	case "transfers":
		var rows []fsm.TransferRow
		if err := a.client.Do(ctx, http.MethodGet, path, nil, &rows); err != nil {
			return err
		}
		return out(rows, []string{"month", "service", "dataset", "transfers", "delivered", "no_record", "pending", "refused", "failed", "failure_rate"}, func(i int) []string {
			r := rows[i]
			return []string{r.Month, r.Service, r.Dataset, itoa(r.Transfers), itoa(r.Delivered), itoa(r.NoRecord), itoa(r.Pending), itoa(r.Refused), itoa(r.Failed),
				strconv.FormatFloat(r.FailureRate, 'f', 4, 64)}
		}, len(rows))
	case "review":
		var rows []fsm.ReviewRow
		if err := a.client.Do(ctx, http.MethodGet, path, nil, &rows); err != nil {
			return err
		}
		return out(rows, []string{"at", "service", "dataset", "consent_id", "ticket_id", "subject_hash", "outcome", "bytes"}, func(i int) []string {
			r := rows[i]
			return []string{r.At.UTC().Format(time.RFC3339), r.Service, r.Dataset, r.Consent, r.Ticket, r.Subject, r.Outcome, strconv.FormatInt(r.Bytes, 10)}
		}, len(rows))
	}
	var entries []oplog.Entry
	if err := a.client.Do(ctx, http.MethodGet, path, nil, &entries); err != nil {
		return err
	}
	return out(entries, []string{"seq", "at", "actor", "roles", "op", "params", "before", "after"}, func(i int) []string {
		e := entries[i]
		params, _ := json.Marshal(e.Params)
		return []string{strconv.FormatInt(e.Seq, 10), e.At.UTC().Format(time.RFC3339), e.Actor, strings.Join(e.Roles, " "), e.Op, string(params), e.Before, e.After}
	}, len(entries))
}

func itoa(n int) string { return strconv.Itoa(n) }
