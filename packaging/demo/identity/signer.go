package main

import (
	"errors"
	"io"
	"strings"

	"github.com/mydatafed/mydata/pkg/cardsigner"
)

// origins is a repeatable flag.
type origins []string

func (o *origins) String() string { return strings.Join(*o, ",") }
func (o *origins) Set(v string) error {
	*o = append(*o, strings.TrimSuffix(v, "/"))
	return nil
}

// runSigner serves the signing component (pkg/cardsigner) for one card. The real component signs with the
// card in the reader, so one process is one inserted card: to "insert" another, stop it and start it with
// that card.
func runSigner(args []string, stderr io.Writer) error {
	fs := newFlags("signer", stderr)
	cert := fs.String("cert", "", "the card's certificate, then its issuing CA (PEM), e.g. cards/A123456789.pem from identity ca")
	key := fs.String("key", "", "the card's private key (PEM, PKCS #8)")
	listen := fs.String("listen", "127.0.0.1:61161", "loopback address the portal's page calls (the method's signer_url is http://<this>/sign)")
	var allowed origins
	fs.Var(&allowed, "origin", "portal origin allowed to ask for signatures, e.g. http://localhost:8080; repeat it for each portal of a hub cluster")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cert == "" || *key == "" {
		return errors.New("--cert and --key: required")
	}
	if len(allowed) == 0 {
		return errors.New("--origin: at least one portal origin is required")
	}
	s, err := cardsigner.New(*cert, *key, allowed...)
	if err != nil {
		return err
	}
	ln, err := listenLoopback("listen", *listen)
	if err != nil {
		return err
	}
	log := newLogger(stderr, "signer")
	ctx, stop := signalContext()
	defer stop()
	card := s.Card().Cert
	log.Info("serving: this card is in the reader", "url", "http://"+ln.Addr().String()+"/sign", "card", card.Subject.CommonName,
		"serial", card.SerialNumber.Text(16), "issuer", card.Issuer.CommonName, "origins", allowed.String())
	return serveHTTP(ctx, log, ln, s)
}
