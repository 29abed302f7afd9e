package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/api"
	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/oplog"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/jointoken"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Files of an enrolled operator's credential directory.
const (
	credCert   = "operator.crt"
	credKey    = "operator.key"
	credBundle = "bundle.crt"
	credHub    = "hub.url"
)

const operatorUsage = `Usage: mydata-hub operator enroll --hub URL --token T --name N --dir DIR [--hub-ca FINGERPRINT]

Enrolls an operator that a federation administrator added (admin operator add) with the join token they
made (admin operator join-token): makes a key here, receives a short-lived SVID, and writes the credential
to DIR (mode 0700). Use it with 'mydata-hub admin --credentials DIR ...'; it renews itself there when it
has used half its life.
`

// operatorCmd is `mydata-hub operator`.
func operatorCmd(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] != "enroll" {
		fmt.Fprint(out, operatorUsage)
		return errors.New("operator: give a command")
	}
	fs := flag.NewFlagSet("operator enroll", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), operatorUsage) }
	hub := fs.String("hub", "", "hub API URL")
	token := fs.String("token", "", "the operator's join token")
	name := fs.String("name", "", "the operator's name, as added")
	dir := fs.String("dir", "", "directory to keep the credential in")
	hubCA := fs.String("hub-ca", "", "the root CA fingerprint to pin (default: the token's)")
	if err := parseFlags(fs, args[1:], "hub", "token", "name", "dir"); err != nil {
		return err
	}
	tok, err := jointoken.Parse(*token)
	if err != nil {
		return err
	}
	pin := tok.CAFingerprint
	if *hubCA != "" {
		if pin, err = jointoken.ParseFingerprint(*hubCA); err != nil {
			return err
		}
		if pin != tok.CAFingerprint {
			return fmt.Errorf("the join token was made by a hub with CA %s, not the pinned %s",
				jointoken.FormatFingerprint(tok.CAFingerprint), jointoken.FormatFingerprint(pin))
		}
	}
	if _, err := os.Stat(filepath.Join(*dir, credCert)); err == nil {
		return fmt.Errorf("%s already holds an operator credential; choose another --dir", *dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := hubapi.NewClient(*hub, hubapi.PinnedTLSConfig(pin))
	defer client.CloseIdle()
	var pemBundle bytes.Buffer
	if err := client.Download(ctx, hubapi.PathBundle, &pemBundle); err != nil {
		return fmt.Errorf("read the hub's bundle: %w", err)
	}
	roots, err := pemfile.ParseCertificates(pemBundle.Bytes())
	if err != nil || len(roots) == 0 || sha256.Sum256(roots[0].Raw) != pin || len(roots[0].URIs) != 1 {
		return fmt.Errorf("the hub's bundle is not the pinned CA %s", jointoken.FormatFingerprint(pin))
	}
	td, err := spiffeid.TrustDomainFromURI(roots[0].URIs[0])
	if err != nil {
		return err
	}
	id, err := fedid.Operator(td, *name)
	if err != nil {
		return err
	}
	svid, bundle, err := requestSVID(ctx, client, id, func(csr []byte) (string, any) {
		return api.PathOperatorEnroll, api.OperatorEnrollRequest{Token: *token, Name: *name, CSR: csr}
	})
	if err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	if !containsCert(bundle, roots[0]) {
		return fmt.Errorf("the hub's answer does not hold the pinned CA %s", jointoken.FormatFingerprint(pin))
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if err := saveCredential(*dir, svid, bundle); err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(filepath.Join(*dir, credHub), []byte(*hub+"\n"), 0o600); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "enrolled as %s until %s; use: mydata-hub admin --credentials %s ...\n",
		svid.ID, svid.Certificates[0].NotAfter.Format(time.RFC3339), *dir)
	return err
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// requestSVID makes a key and a CSR for id, posts what body makes of the CSR, and checks the answer is an
// SVID for id and this key.
func requestSVID(ctx context.Context, client *hubapi.Client, id spiffeid.ID, body func(csr []byte) (string, any)) (*x509svid.SVID, []*x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		return nil, nil, err
	}
	path, in := body(csr)
	var resp hubapi.SVIDResponse
	if err := client.Do(ctx, http.MethodPost, path, in, &resp); err != nil {
		return nil, nil, err
	}
	var chain, bundle []*x509.Certificate
	for _, der := range resp.Chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, err
		}
		chain = append(chain, c)
	}
	for _, der := range resp.Bundle {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, err
		}
		bundle = append(bundle, c)
	}
	if len(chain) == 0 || len(bundle) == 0 {
		return nil, nil, errors.New("the hub's answer lacks the SVID or the bundle")
	}
	got, err := x509svid.IDFromCert(chain[0])
	if err != nil || got != id || !key.PublicKey.Equal(chain[0].PublicKey) {
		return nil, nil, fmt.Errorf("the hub issued a certificate for another ID or key (%v)", got)
	}
	return &x509svid.SVID{ID: id, Certificates: chain, PrivateKey: key}, bundle, nil
}

func saveCredential(dir string, svid *x509svid.SVID, bundle []*x509.Certificate) error {
	keyPEM, err := pemfile.EncodeKey(svid.PrivateKey)
	if err != nil {
		return err
	}
	// The key first: a certificate beside a key it does not match would lock the operator out.
	if err := pemfile.WriteAtomic(filepath.Join(dir, credKey+".new"), keyPEM, 0o600); err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(filepath.Join(dir, credBundle), pemfile.EncodeCertificates(bundle), 0o600); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, credKey+".new"), filepath.Join(dir, credKey)); err != nil {
		return err
	}
	return pemfile.WriteAtomic(filepath.Join(dir, credCert), pemfile.EncodeCertificates(svid.Certificates), 0o600)
}

// renewIfHalfUsed renews an enrolled operator's SVID in dir once it has used half its life, as a
// connector does; an operator runs no daemon, so each command it runs checks.
func renewIfHalfUsed(dir string, client *hubapi.Client, svid *x509svid.SVID) (*x509svid.SVID, error) {
	leaf := svid.Certificates[0]
	if time.Now().Before(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)) {
		return svid, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	next, bundle, err := requestSVID(ctx, client, svid.ID, func(csr []byte) (string, any) {
		return api.PathOperatorRenew, hubapi.RenewRequest{CSR: csr}
	})
	if err != nil {
		return nil, fmt.Errorf("renew the operator SVID in %s: %w", dir, err)
	}
	if err := saveCredential(dir, next, bundle); err != nil {
		return nil, err
	}
	return next, nil
}

func (a *adminCtx) operatorAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("operator add", flag.ContinueOnError)
	var req api.OperatorRequest
	fs.StringVar(&req.Name, "name", "", "operator name (a-z, 0-9, '-')")
	roles := fs.String("roles", "", "federation-admin, auditor, reviewer:education|financial|soe, applicant:<org>; comma-separated")
	if err := parseFlags(fs, args, "name", "roles"); err != nil {
		return err
	}
	req.Roles = strings.Split(*roles, ",")
	var saved fsm.Operator
	if err := a.client.Do(ctx, http.MethodPost, api.PathOperators, req, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		fmt.Fprintf(w, "added operator %s with roles %s; make its join token with: admin operator join-token --name %s\n",
			saved.SPIFFEID, strings.Join(saved.Roles, ","), saved.Name)
	})
}

func (a *adminCtx) operatorList(ctx context.Context) error {
	var ops []fsm.Operator
	if err := a.client.Do(ctx, http.MethodGet, api.PathOperators, nil, &ops); err != nil {
		return err
	}
	return a.print(ops, func(w *table) {
		fmt.Fprintln(w, "NAME\tROLES\tACTS FOR\tSTATUS\tSPIFFE ID")
		for _, o := range ops {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", o.Name, strings.Join(o.Roles, ","), o.ActsFor, o.Status, o.SPIFFEID)
		}
	})
}

func (a *adminCtx) operatorStatus(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("operator "+verb, flag.ContinueOnError)
	name := fs.String("name", "", "operator name")
	if err := parseFlags(fs, args, "name"); err != nil {
		return err
	}
	status := map[string]string{"disable": fsm.OperatorDisabled, "enable": fsm.OperatorActive}[verb]
	var saved fsm.Operator
	if err := a.client.Do(ctx, http.MethodPost, api.PathOperators+"/"+url.PathEscape(*name)+"/status", api.OperatorStatusRequest{Status: status}, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) { fmt.Fprintf(w, "operator %s is now %s\n", saved.Name, saved.Status) })
}

func (a *adminCtx) operatorJoinToken(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("operator join-token", flag.ContinueOnError)
	name := fs.String("name", "", "operator name")
	ttl := fs.Duration("ttl", 0, "token lifetime (default: the hub's tokens.default_ttl)")
	if err := parseFlags(fs, args, "name"); err != nil {
		return err
	}
	var resp hubapi.TokenResponse
	if err := a.client.Do(ctx, http.MethodPost, api.PathOperators+"/"+url.PathEscape(*name)+"/tokens", api.OperatorTokenRequest{TTLSeconds: int64(ttl.Seconds())}, &resp); err != nil {
		return err
	}
	if a.json {
		return a.print(resp, nil)
	}
	// The token alone, so that scripts can capture it.
	_, err := fmt.Fprintln(a.out, resp.Token)
	return err
}

func (a *adminCtx) auditVerify(ctx context.Context) error {
	var rep api.AuditVerifyResponse
	if err := a.client.Do(ctx, http.MethodGet, api.PathAuditVerify, nil, &rep); err != nil {
		return err
	}
	if err := a.print(rep, func(w *table) {
		if rep.OK {
			fmt.Fprintf(w, "the operator log verifies at %s: %d entries, head %d %s\n", rep.Node, rep.Entries, rep.Head.Seq, rep.Head.Hash)
		}
	}); err != nil {
		return err
	}
	if !rep.OK {
		return fmt.Errorf("the operator log does not verify at %s: entry %d: %s", rep.Node, rep.BadSeq, rep.Problem)
	}
	return nil
}

// parseSince reads an RFC 3339 time, a date (midnight UTC), or a duration meaning that long ago.
func parseSince(v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since: %q is not an RFC 3339 time, a date (2006-01-02) or a duration (24h)", v)
}

func (a *adminCtx) auditExport(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	sinceFlag := fs.String("since", "", "entries at or after this time: RFC 3339, a date, or a duration ago (default: all)")
	format := fs.String("format", "json", "json or csv")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *format != "json" && *format != "csv" {
		return fmt.Errorf("audit export: --format must be json or csv, not %q", *format)
	}
	path := api.PathAudit
	if *sinceFlag != "" {
		since, err := parseSince(*sinceFlag)
		if err != nil {
			return err
		}
		path += "?since=" + url.QueryEscape(since.UTC().Format(time.RFC3339))
	}
	var entries []oplog.Entry
	if err := a.client.Do(ctx, http.MethodGet, path, nil, &entries); err != nil {
		return err
	}
	// The export is a stretch of the chain: check its links here too, and say so if they break.
	if len(entries) > 0 {
		v := oplog.NewVerifier(oplog.Head{Seq: entries[0].Seq - 1, Hash: entries[0].PrevHash})
		for _, e := range entries {
			v.Add(e)
		}
		if r := v.Finish(nil); !r.OK {
			fmt.Fprintf(os.Stderr, "mydata-hub: warning: the exported entries do not verify: entry %d: %s\n", r.BadSeq, r.Problem)
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	w := csv.NewWriter(a.out)
	_ = w.Write([]string{"seq", "at", "actor", "roles", "op", "params", "outcome", "detail", "before", "after", "prev_hash", "hash"})
	for _, e := range entries {
		params, _ := json.Marshal(e.Params)
		if e.Params == nil {
			params = []byte("{}")
		}
		_ = w.Write([]string{strconv.FormatInt(e.Seq, 10), e.At.UTC().Format(time.RFC3339Nano), e.Actor, strings.Join(e.Roles, " "), e.Op,
			string(params), e.Outcome, e.Detail, e.Before, e.After, e.PrevHash, e.Hash})
	}
	w.Flush()
	return w.Error()
}
