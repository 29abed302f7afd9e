package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/mydatafed/mydata/connector/internal/config"
	"github.com/mydatafed/mydata/connector/internal/identity"
	"github.com/mydatafed/mydata/pkg/datapackage"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const verifyUsage = `usage: mydata-connector verify [--config FILE | --bundle PEM --trust-domain TD] PACKAGE.zip
  checks a package a citizen downloaded from the MyData portal, offline: every file's SHA-256 against the
  package's manifest, and the data provider's signature and certificate chain against the federation's trust
  bundle (this connector's, with --config; or a PEM file of the federation's root, from the hub's /v1/bundle)`

// verifyCmd checks a citizen's download package. Exit status 1 when it does not check out.
func verifyCmd(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	path := fs.String("config", "", "a connector's configuration: its trust domain and stored bundle are used")
	bundlePath := fs.String("bundle", "", "PEM file with the federation's root certificate(s)")
	tdName := fs.String("trust-domain", "", "the federation's trust domain (with --bundle)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New(verifyUsage)
	}
	var td spiffeid.TrustDomain
	switch {
	case *bundlePath != "" && *tdName != "":
		var err error
		if td, err = spiffeid.TrustDomainFromString(*tdName); err != nil {
			return fmt.Errorf("--trust-domain: %w", err)
		}
	case *path != "" && *bundlePath == "":
		cfg, err := config.Load(*path)
		if err != nil {
			return err
		}
		td = cfg.TD()
		_, *bundlePath = identity.Paths(cfg.IdentityDir())
	default:
		return errors.New(verifyUsage)
	}
	roots, err := pemfile.ReadCertificates(*bundlePath)
	if err != nil {
		return fmt.Errorf("trust bundle %s: %w", *bundlePath, err)
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	files, err := datapackage.Verify(f, st.Size(), td, x509bundle.FromX509Authorities(td, roots))
	if err != nil {
		fmt.Fprintf(out, "%s: REFUSED: %v\n", fs.Arg(0), err)
		return errors.New("the package does not check out")
	}
	for _, c := range files {
		fmt.Fprintf(out, "  %s  %s  %d bytes  sha256 %s  signed by %s\n", c.Name, c.Dataset, c.Size, c.SHA256, c.Signer)
	}
	_, err = fmt.Fprintf(out, "%s: OK, %d files, each signed by its data provider under trust domain %s\n", fs.Arg(0), len(files), td.Name())
	return err
}
