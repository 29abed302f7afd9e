package main

import (
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mydatafed/mydata/hub/internal/server"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/pemfile"
)

func caCmd(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "fingerprint" {
		return errors.New("usage: mydata-hub ca fingerprint --config FILE")
	}
	fs := flag.NewFlagSet("ca fingerprint", flag.ContinueOnError)
	cfg, err := loadConfig(fs, args[1:])
	if err != nil {
		return err
	}
	_, _, bundle := server.OperatorFiles(cfg)
	certs, err := pemfile.ReadCertificates(bundle)
	if err != nil {
		return fmt.Errorf("read the hub's bundle (has the hub started once?): %w", err)
	}
	_, err = fmt.Fprintln(out, jointoken.FormatFingerprint(sha256.Sum256(certs[0].Raw)))
	return err
}
