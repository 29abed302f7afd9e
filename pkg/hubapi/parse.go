package hubapi

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/jointoken"
)

// ParsedEnroll is an enrollment request that passed every check that needs no state.
type ParsedEnroll struct {
	Token     jointoken.Token
	Org       string
	Connector string
	CSR       *x509.CertificateRequest
}

// ParseEnroll decodes and checks an enrollment request body: it comes from a party not yet authenticated, so
// every field is checked before the hub looks anything up.
func ParseEnroll(body []byte) (*ParsedEnroll, error) {
	var req EnrollRequest
	if err := DecodeBytes(body, MaxBody, &req); err != nil {
		return nil, err
	}
	tok, err := jointoken.Parse(req.Token)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if err := fedid.ValidName(req.Org); err != nil {
		return nil, fmt.Errorf("org: %w", err)
	}
	if err := fedid.ValidName(req.Connector); err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	return &ParsedEnroll{Token: tok, Org: req.Org, Connector: req.Connector, CSR: csr}, nil
}

// ParseCSR parses a DER CSR and checks its signature.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, errors.New("csr: missing")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: signature: %w", err)
	}
	return csr, nil
}
