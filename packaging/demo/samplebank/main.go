// Command samplebank is the demo's sample service provider web application: 示範銀行 Demo Bank's online
// credit-card application (線上信用卡申辦). It is what a bank writes on its side of the online service mode,
// and needs nothing of the federation but HTTP:
//
//  1. the applicant types a national ID and name and presses "Apply with MyData";
//  2. the app makes a PKCE verifier and a state, keeps them in a server-side session, asks its own MyData
//     connector for a login_hint that binds the request to that national ID, and sends the browser to the
//     hub's /oauth/authorize;
//  3. the citizen logs in and agrees on the hub, which sends the browser back to /callback with a code;
//  4. the app checks the state, hands code and verifier to its connector's local API, which fetches each
//     dataset from the agencies, and shows what arrived: delivered data as tables, "no record", pending
//     datasets that it keeps refreshing, failures with their reason.
//
// Usage:
//
//	samplebank [--listen 127.0.0.1:8000] [--hub-portal URL] [--connector-api URL] [--client-id ID]
//	           [--redirect-uri URL] [--datasets a,b,c] [--bind-citizen=true] [--connector-token-file F]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "samplebank:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("samplebank", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8000", "address to serve the bank's web application on")
	var cfg Config
	fs.StringVar(&cfg.HubPortal, "hub-portal", "http://127.0.0.1:8080", "base URL of the MyData hub's citizen portal")
	fs.StringVar(&cfg.ConnectorAPI, "connector-api", "http://127.0.0.1:8442", "base URL of the bank's own MyData connector's local API")
	fs.StringVar(&cfg.ClientID, "client-id", "demobank.card", "the service's client_id, as the hub operator registered it")
	fs.StringVar(&cfg.RedirectURI, "redirect-uri", "http://127.0.0.1:8000/callback", "this app's /callback URL, exactly as registered for the service")
	datasets := fs.String("datasets", "moi.household,fia.income,fia.property", "datasets to ask for (the OAuth scope), comma separated")
	fs.BoolVar(&cfg.BindCitizen, "bind-citizen", true, "bind the request to the national ID typed on the form (login_hint), so that no one else can consent")
	tokenFile := fs.String("connector-token-file", "", "file holding the bearer token of the connector's local API (exchange.bearer_token_file), if it has one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, d := range strings.Split(*datasets, ",") {
		if d = strings.TrimSpace(d); d != "" {
			cfg.Datasets = append(cfg.Datasets, d)
		}
	}
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("--connector-token-file: %w", err)
		}
		cfg.ConnectorToken = strings.TrimSpace(string(b))
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	bank, err := New(cfg)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	srv := &http.Server{
		Handler:           bank,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// The callback waits for the connector, which waits for every agency's first answer.
		WriteTimeout: 2 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn),
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	cfg.Log.Info("serving", "url", "http://"+ln.Addr().String(), "hub_portal", cfg.HubPortal, "connector_api", cfg.ConnectorAPI, "client_id", cfg.ClientID)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	cfg.Log.Info("stopped")
	return nil
}
