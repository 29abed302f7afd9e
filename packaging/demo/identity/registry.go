package main

import (
	"errors"
	"io"

	"github.com/mydatafed/mydata/pkg/docregistry"
)

// runRegistry serves the sample two-documents registry (pkg/docregistry) on loopback.
func runRegistry(args []string, stderr io.Writer) error {
	fs := newFlags("registry", stderr)
	records := fs.String("records", "", "the citizens' documents, a JSON array or a CSV file (e.g. pkg/docregistry/testdata/sample-registry.json)")
	tokenFile := fs.String("token-file", "", "file with the bearer token the hub must send (identity.two_docs.token_file); empty: none wanted")
	listen := fs.String("listen", "127.0.0.1:8090", "loopback address to serve on (identity.two_docs.url is http://<this>/)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *records == "" {
		return errors.New("--records: required")
	}
	reg, err := docregistry.Open(*records, *tokenFile)
	if err != nil {
		return err
	}
	ln, err := listenLoopback("listen", *listen)
	if err != nil {
		return err
	}
	log := newLogger(stderr, "registry")
	ctx, stop := signalContext()
	defer stop()
	// Nothing of a check is logged, as a real registry must not; only that it runs.
	log.Info("serving", "url", "http://"+ln.Addr().String()+"/", "records", reg.Len(), "token", *tokenFile != "")
	return serveHTTP(ctx, log, ln, reg)
}
