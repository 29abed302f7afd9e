package certlogin

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

const (
	// maxCRLBytes bounds a CRL download; a national CA's full CRL runs to megabytes.
	maxCRLBytes  = 64 << 20
	maxOCSPBytes = 64 << 10
	// retryAfterFailure keeps a CRL server that is down from being asked at every login.
	retryAfterFailure = 30 * time.Second
	// defaultCRLLifetime re-reads a CRL without nextUpdate when crl_refresh is 0.
	defaultCRLLifetime = time.Hour
	// ocspSkew tolerates a responder whose clock runs ahead; maxOCSPAge bounds an answer without
	// nextUpdate, since x/crypto/ocsp sends no nonce.
	ocspSkew   = 5 * time.Minute
	maxOCSPAge = time.Hour
)

// crlSource is one configured CRL with its cached copy. lock is a channel so that a login waiting for
// another's download can give up when its context ends.
type crlSource struct {
	loc    string
	remote bool
	lock   chan struct{}

	// guarded by lock
	crl      *x509.RevocationList
	revoked  map[string]time.Time // serial (decimal) → revocation time
	verified map[string]bool      // issuer certificate (raw) → the CRL's signature checks out
	fetched  time.Time
	tried    time.Time
	err      error
}

func newCRLSource(loc string) (*crlSource, error) {
	s := &crlSource{loc: loc, lock: make(chan struct{}, 1)}
	switch {
	case loc == "":
		return nil, errors.New("empty; give a file path or an http(s) URL")
	case isURL(loc):
		if err := checkURL(loc); err != nil {
			return nil, err
		}
		s.remote = true
	case strings.Contains(loc, "://"):
		return nil, fmt.Errorf("%q: only http and https URLs, or file paths", loc)
	}
	return s, nil
}

func (s *crlSource) due(v *Verifier, now time.Time) bool {
	switch {
	case s.crl == nil:
		return true
	case !s.crl.NextUpdate.IsZero() && !now.Before(s.crl.NextUpdate):
		return true
	case v.crlRefresh > 0 && now.Sub(s.fetched) >= v.crlRefresh:
		return true
	case s.crl.NextUpdate.IsZero() && v.crlRefresh == 0 && now.Sub(s.fetched) >= defaultCRLLifetime:
		return true
	}
	return false
}

// crlView is what one login sees of a source: the copy held when it asked.
type crlView struct {
	crl     *x509.RevocationList
	revoked map[string]time.Time
	// signed says whether the issuer the login asked about signed crl.
	signed bool
}

// current returns the cached CRL, re-reading it first when it is due. A failed re-read keeps the old
// copy (the caller decides whether it is still fresh) and returns the error beside it. The issuer's
// signature on the CRL is checked once per CRL and issuer (a national CA's CRL is megabytes to hash);
// issuer may be nil to only refresh.
func (s *crlSource) current(ctx context.Context, v *Verifier, now time.Time, issuer *x509.Certificate) (*crlView, error) {
	select {
	case s.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.lock }()
	if s.due(v, now) && !(s.err != nil && now.Sub(s.tried) < retryAfterFailure) {
		s.refreshLocked(ctx, v, now)
	}
	view := &crlView{crl: s.crl, revoked: s.revoked}
	if s.crl != nil && issuer != nil && bytes.Equal(s.crl.RawIssuer, issuer.RawSubject) {
		key := string(issuer.Raw)
		signed, seen := s.verified[key]
		if !seen {
			signed = s.crl.CheckSignatureFrom(issuer) == nil
			s.verified[key] = signed
		}
		view.signed = signed
	}
	return view, s.err
}

// refresh is for New, before anyone else can hold the source.
func (s *crlSource) refresh(ctx context.Context, v *Verifier, now time.Time) error {
	s.lock <- struct{}{}
	defer func() { <-s.lock }()
	s.refreshLocked(ctx, v, now)
	return s.err
}

func (s *crlSource) refreshLocked(ctx context.Context, v *Verifier, now time.Time) {
	s.tried = now
	data, err := s.read(ctx, v.client)
	if err == nil {
		var crl *x509.RevocationList
		crl, err = parseCRL(data)
		switch {
		case err != nil:
		case s.crl != nil && crl.ThisUpdate.Before(s.crl.ThisUpdate):
			// Someone between us and the CA may replay an old, correctly signed CRL.
			err = fmt.Errorf("issued %s, older than the copy held (%s)",
				crl.ThisUpdate.UTC().Format(time.RFC3339), s.crl.ThisUpdate.UTC().Format(time.RFC3339))
		default:
			s.crl, s.fetched = crl, now
			s.revoked = make(map[string]time.Time, len(crl.RevokedCertificateEntries))
			for _, e := range crl.RevokedCertificateEntries {
				if e.SerialNumber != nil {
					s.revoked[e.SerialNumber.String()] = e.RevocationTime
				}
			}
			s.verified = map[string]bool{}
		}
	}
	if err != nil {
		s.err = fmt.Errorf("%s: %w", s.loc, err)
		return
	}
	s.err = nil
}

func (s *crlSource) read(ctx context.Context, client *http.Client) ([]byte, error) {
	if !s.remote {
		f, err := os.Open(s.loc)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return readBounded(f, maxCRLBytes)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.loc, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	return readBounded(resp.Body, maxCRLBytes)
}

func readBounded(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

func parseCRL(data []byte) (*x509.RevocationList, error) {
	if t := bytes.TrimSpace(data); bytes.HasPrefix(t, []byte("-----BEGIN")) {
		b, _ := pem.Decode(t)
		if b == nil || b.Type != "X509 CRL" {
			return nil, errors.New("not a PEM X509 CRL")
		}
		data = b.Bytes
	}
	return x509.ParseRevocationList(data)
}

// crlStatus looks cert up in every configured CRL its issuer signed. known is true when a fresh one
// was found; a listing in any CRL, fresh or stale, is a revocation.
func (v *Verifier) crlStatus(ctx context.Context, cert, issuer *x509.Certificate, now time.Time) (known bool, err error) {
	var why []error
	for _, src := range v.crls {
		snap, ferr := src.current(ctx, v, now, issuer)
		if snap == nil {
			return false, ferr // context ended
		}
		if snap.crl == nil || !bytes.Equal(snap.crl.RawIssuer, cert.RawIssuer) {
			if ferr != nil {
				why = append(why, ferr)
			}
			continue
		}
		if !snap.signed {
			why = append(why, fmt.Errorf("%s: not signed by %q", src.loc, issuer.Subject))
			continue
		}
		if at, listed := snap.revoked[cert.SerialNumber.String()]; listed {
			return false, fmt.Errorf("%w: listed in %s since %s", ErrRevoked, src.loc, at.UTC().Format(time.RFC3339))
		}
		if snap.crl.NextUpdate.IsZero() || now.Before(snap.crl.NextUpdate) {
			known = true
			continue
		}
		stale := fmt.Errorf("%s: stale since %s", src.loc, snap.crl.NextUpdate.UTC().Format(time.RFC3339))
		if ferr != nil {
			stale = fmt.Errorf("%w, and re-reading it failed: %w", stale, ferr)
		}
		why = append(why, stale)
	}
	if known {
		return true, nil
	}
	if len(why) == 0 {
		why = append(why, fmt.Errorf("no configured CRL is from %q", cert.Issuer))
	}
	return false, errors.Join(why...)
}

// ocspStatus asks the responder cert names. It returns ocsp.Good, ocsp.Revoked or an error.
func (v *Verifier) ocspStatus(ctx context.Context, cert, issuer *x509.Certificate, now time.Time) (int, error) {
	i := slices.IndexFunc(cert.OCSPServer, isURL)
	if i < 0 {
		return 0, errors.New("ocsp: the certificate names no http(s) OCSP responder")
	}
	server := cert.OCSPServer[i]
	reqDER, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return 0, fmt.Errorf("ocsp: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server, bytes.NewReader(reqDER))
	if err != nil {
		return 0, fmt.Errorf("ocsp: %w", err)
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	resp, err := v.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("ocsp: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("ocsp: %s: HTTP %s", server, resp.Status)
	}
	body, err := readBounded(resp.Body, maxOCSPBytes)
	if err != nil {
		return 0, fmt.Errorf("ocsp: %s: %w", server, err)
	}
	r, err := ocsp.ParseResponseForCert(body, cert, issuer)
	if err != nil {
		return 0, fmt.Errorf("ocsp: %s: %w", server, err)
	}
	// x/crypto/ocsp checks that the issuer signed a delegated responder's certificate, but not that
	// the certificate is for OCSP signing or still valid.
	if rc := r.Certificate; rc != nil && !rc.Equal(issuer) {
		if !slices.Contains(rc.ExtKeyUsage, x509.ExtKeyUsageOCSPSigning) {
			return 0, fmt.Errorf("ocsp: %s: responder certificate %q is not for OCSP signing", server, rc.Subject)
		}
		if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
			return 0, fmt.Errorf("ocsp: %s: responder certificate %q is outside its validity", server, rc.Subject)
		}
	}
	switch {
	case r.ThisUpdate.After(now.Add(ocspSkew)):
		return 0, fmt.Errorf("ocsp: %s: answer dated %s, in the future", server, r.ThisUpdate.UTC().Format(time.RFC3339))
	case !r.NextUpdate.IsZero() && now.After(r.NextUpdate):
		return 0, fmt.Errorf("ocsp: %s: answer stale since %s", server, r.NextUpdate.UTC().Format(time.RFC3339))
	case r.NextUpdate.IsZero() && now.Sub(r.ThisUpdate) > maxOCSPAge:
		return 0, fmt.Errorf("ocsp: %s: answer from %s is too old", server, r.ThisUpdate.UTC().Format(time.RFC3339))
	}
	switch r.Status {
	case ocsp.Good, ocsp.Revoked:
		return r.Status, nil
	}
	return 0, fmt.Errorf("ocsp: %s: the responder does not know the certificate", server)
}

// revocation checks the leaf by OCSP (when configured) and CRL, and the issuing CAs by whatever CRL
// from their parents is configured. It returns how the leaf was found good.
func (v *Verifier) revocation(ctx context.Context, chain []*x509.Certificate, now time.Time) (string, error) {
	leaf, issuer := chain[0], chain[1]
	var how []string
	var why []error
	if v.ocsp {
		st, err := v.ocspStatus(ctx, leaf, issuer, now)
		switch {
		case err != nil:
			why = append(why, err)
		case st == ocsp.Revoked:
			return "", fmt.Errorf("%w: by OCSP", ErrRevoked)
		default:
			how = append(how, "ocsp")
		}
	}
	if len(v.crls) > 0 {
		known, err := v.crlStatus(ctx, leaf, issuer, now)
		switch {
		case errors.Is(err, ErrRevoked):
			return "", err
		case known:
			how = append(how, "crl")
		case err != nil:
			why = append(why, err)
		}
		// A revoked issuing CA takes its certificates with it. Its parent's CRL (an ARL) is used when
		// configured; a missing one is not held against the citizen.
		for i := 1; i+1 < len(chain); i++ {
			if _, err := v.crlStatus(ctx, chain[i], chain[i+1], now); errors.Is(err, ErrRevoked) {
				return "", fmt.Errorf("%w: issuing CA %q", err, chain[i].Subject)
			}
		}
	}
	if len(how) > 0 {
		slices.Sort(how)
		return strings.Join(how, "+"), nil
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrRevocationUnknown, err)
	}
	if v.requireStatus {
		return "", fmt.Errorf("%w: %w", ErrRevocationUnknown, errors.Join(why...))
	}
	return "unchecked", nil
}
