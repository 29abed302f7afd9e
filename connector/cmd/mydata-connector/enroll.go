package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/identity"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/telemetry"
)

func enroll(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	path := configFlag(fs)
	var hubs hubURLsFlag
	fs.Var(&hubs, "hub", "hub API URL; several, comma-separated or with --hub again, are tried in turn (default: hub.url from the config)")
	token := fs.String("token", "", "single-use join token from the operator (required)")
	hubCA := fs.String("hub-ca", "", "SHA-256 fingerprint of the hub's root CA (default: hub.ca_fingerprint, else the token's)")
	force := fs.Bool("force", false, "enroll even though data_dir already holds an identity; it is replaced only once the hub has issued the new one (stop the connector first)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *token == "" {
		return errors.New("enroll: --token is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if cfg.Identity.Source != config.SourceLocal {
		return fmt.Errorf("enroll: identity.source is %q; only a local identity enrolls with a token", cfg.Identity.Source)
	}
	tok, err := jointoken.Parse(*token)
	if err != nil {
		return err
	}
	req := identity.EnrollRequest{Dir: cfg.IdentityDir(), HubURLs: cfg.Hub.URLs, Token: tok, Org: cfg.Org, Name: cfg.Name, ID: cfg.ID(),
		Log: telemetry.NewLogger(os.Stderr, cfg.Log).With(telemetry.KeyComponent, "hub"), Force: *force}
	if len(hubs) > 0 {
		if err := config.CheckHubURLs("--hub", hubs); err != nil {
			return err
		}
		req.HubURLs = hubs
	}
	pin := cfg.Hub.CAFingerprint
	if *hubCA != "" {
		pin = *hubCA
	}
	if pin != "" {
		if req.Pin, err = jointoken.ParseFingerprint(pin); err != nil {
			return fmt.Errorf("--hub-ca: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svid, err := identity.Enroll(ctx, req)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, enrolledFormat, svid.ID, svid.Certificates[0].NotAfter.Format(time.RFC3339), cfg.IdentityDir())
	return err
}

// enrolledFormat is what enroll prints: the SPIFFE ID, the SVID's expiry and the identity directory. The
// operator guide shows it (a test holds the guide to it).
const enrolledFormat = "enrolled %s; SVID valid until %s, stored in %s\n"

// hubURLsFlag is --hub: one URL, a comma-separated list, or the flag given again for each.
type hubURLsFlag []string

func (h *hubURLsFlag) String() string { return strings.Join(*h, ",") }

func (h *hubURLsFlag) Set(v string) error {
	for _, u := range strings.Split(v, ",") {
		*h = append(*h, strings.TrimSpace(u))
	}
	return nil
}
