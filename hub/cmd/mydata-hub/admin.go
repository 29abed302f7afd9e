package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/hub/internal/server"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/pemfile"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

const adminUsage = `Usage: mydata-hub admin [--config FILE] [--credentials DIR] [--hub URL] [--cert F --key F --bundle F] [--json] COMMAND

Commands:
  org add --code C --name-zh N --name-en N --type T [--contact-email E]
                                                       register an organisation; E gets its applications' news
      types: central-agency, local-government, university, state-owned-enterprise, financial-institution, other
  org list
  connector add --org O --name N --roles dp,sp --address HOST:PORT [--tcp-address HOST:PORT]
                                                       QUIC (UDP) address and, for peers whose UDP is blocked,
                                                       TCP address (the connector's tcp.listen)
  connector list
  connector address --org O --name N --address HOST:PORT [--tcp-address HOST:PORT]
                                                       move a connector (no --tcp-address: it has none)
  connector suspend|activate|revoke --org O --name N
  token create --org O --connector C [--ttl D]         print a single-use join token, alone, on stdout
  dataset add --id ORG.NAME --name-zh N --name-en N --dp ORG/CONNECTOR[,CONNECTOR...] [--min-aal 1|2|3]
      [--content-type T] [--async] [--download] [--description D]
  dataset list
  dataset maintenance|activate --id ID                put a dataset under maintenance, or back
  dataset connectors --id ID --dp ORG/C1[,C2...]      the connectors that serve it (any one serves a ticket)
  service add --id CLIENT_ID --name-zh N --name-en N --sp ORG/CONNECTOR --datasets A,B
      --purpose P --terms T|--terms-file F --terms-version V --redirect-uri U [--modes online,counter]
      [--legal-basis L]
  service list
  cert list [--spiffe-id ID]                           list issued certificates
  ca intermediate --org O --cert-out F --key-out F --bundle-out F [--ttl D]
                                                       make an intermediate CA for an organisation's SPIRE
                                                       server; it may issue only that organisation's IDs
  cluster status                                       every hub node: raft and API addresses, role, last
                                                       contact, applied index, healthy
  cluster join-token [--ttl D]                         print a single-use token a new hub node joins with
  cluster remove --node N                              take a node out of raft; its keys leave the directory
                                                       and its SVID is refused from then on
  keyring rotate --purpose session|hint|subject|lookup make a new active key of the cluster keyring
  operator add --name N --roles R[,R]                  add an operator; roles: federation-admin, auditor,
                                                       reviewer:education|financial|soe, applicant:<org>
  operator list
  operator disable|enable --name N                     a disabled operator is refused at once
  operator join-token --name N [--ttl D]               print a single-use token; the operator runs
                                                       'mydata-hub operator enroll' with it
  audit verify                                         check the operator log's hash chain on the hub node
  audit export [--since T] [--format json|csv]         the operator log from T (RFC 3339, a date, or a
                                                       duration ago such as 24h)
` + applicationUsage + reportUsage + `
Every command needs a role: changes need federation-admin; reads of connectors, certificates, the cluster,
operators and the operator log also allow auditor; orgs, datasets and services allow every operator.
Applications: an applicant:<org> (or federation-admin) submits for its organisation, reviewer:<sector>
reviews its sector's, federation-admin decides; each operator lists and shows those its roles cover.

The operator credential defaults to the one the hub made under its data_dir/operator on first start (a
federation-admin). --credentials DIR uses one enrolled with 'mydata-hub operator enroll' (and its hub URL),
renewing it there once it has used half its life; no hub.yaml is needed then.
`

type adminCtx struct {
	client *hubapi.Client
	json   bool
	out    io.Writer
}

// operatorFlags are the flags that say how to reach the hub as an operator.
type operatorFlags struct {
	config, creds, hub, cert, key, bundle *string
}

func addOperatorFlags(fs *flag.FlagSet) operatorFlags {
	return operatorFlags{
		config: fs.String("config", "/etc/mydata/hub.yaml", "hub configuration file (finds the API and the operator credential)"),
		creds:  fs.String("credentials", "", "directory of a credential from 'mydata-hub operator enroll'"),
		hub:    fs.String("hub", "", "hub API URL (default: api.public_url from the config)"),
		cert:   fs.String("cert", "", "operator SVID certificate (default: data_dir/operator/admin.crt)"),
		key:    fs.String("key", "", "operator SVID key"),
		bundle: fs.String("bundle", "", "trust bundle"),
	}
}

// client makes an API client that presents the operator's SVID and accepts only a hub node. The hub.yaml
// is read only for what the flags and the credential directory leave open.
func (f operatorFlags) client() (*hubapi.Client, error) {
	cert, key, bundle, hub := *f.cert, *f.key, *f.bundle, *f.hub
	if d := *f.creds; d != "" {
		cert, key, bundle = pick(cert, filepath.Join(d, credCert)), pick(key, filepath.Join(d, credKey)), pick(bundle, filepath.Join(d, credBundle))
		if hub == "" {
			if b, err := os.ReadFile(filepath.Join(d, credHub)); err == nil {
				hub = strings.TrimSpace(string(b))
			}
		}
	}
	if cert == "" || key == "" || bundle == "" || hub == "" {
		cfg, err := config.Load(*f.config)
		if err != nil {
			return nil, err
		}
		defCert, defKey, defBundle := server.OperatorFiles(cfg)
		cert, key, bundle, hub = pick(cert, defCert), pick(key, defKey), pick(bundle, defBundle), pick(hub, cfg.API.PublicURL)
	}
	svid, err := x509svid.Load(cert, key)
	if err != nil {
		return nil, fmt.Errorf("operator credential: %w", err)
	}
	roots, err := pemfile.ReadCertificates(bundle)
	if err != nil {
		return nil, fmt.Errorf("trust bundle: %w", err)
	}
	connect := func(svid *x509svid.SVID) *hubapi.Client {
		td := svid.ID.TrustDomain()
		tlsConf := tlsconfig.MTLSClientConfig(svid, x509bundle.FromX509Authorities(td, roots), fedid.Authorizer(td, fedid.KindHub, nil))
		return hubapi.NewClient(hub, tlsConf)
	}
	client := connect(svid)
	if *f.creds != "" {
		next, err := renewIfHalfUsed(*f.creds, client, svid)
		if err != nil {
			return nil, err
		}
		if next != svid {
			client.CloseIdle()
			client = connect(next)
		}
	}
	return client, nil
}

func pick(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

func admin(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), adminUsage) }
	op := addOperatorFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fmt.Fprint(out, adminUsage)
		return errors.New("admin: give a command")
	}
	client, err := op.client()
	if err != nil {
		return err
	}
	a := &adminCtx{client: client, json: *asJSON, out: out}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cmd, sub := rest[0], rest[1]
	args = rest[2:]
	switch cmd + " " + sub {
	case "org add":
		return a.orgAdd(ctx, args)
	case "org list":
		return a.orgList(ctx)
	case "connector add":
		return a.connectorAdd(ctx, args)
	case "connector list":
		return a.connectorList(ctx)
	case "connector address":
		return a.connectorAddress(ctx, args)
	case "connector suspend", "connector activate", "connector revoke":
		return a.connectorStatus(ctx, sub, args)
	case "token create":
		return a.tokenCreate(ctx, args)
	case "ca intermediate":
		return a.intermediate(ctx, args)
	case "cert list":
		return a.certList(ctx, args)
	case "dataset add":
		return a.datasetAdd(ctx, args)
	case "dataset list":
		return a.datasetList(ctx)
	case "dataset maintenance", "dataset activate":
		return a.datasetStatus(ctx, sub, args)
	case "dataset connectors":
		return a.datasetConnectors(ctx, args)
	case "service add":
		return a.serviceAdd(ctx, args)
	case "service list":
		return a.serviceList(ctx)
	case "cluster status":
		return a.clusterStatus(ctx)
	case "cluster join-token":
		return a.clusterJoinToken(ctx, args)
	case "cluster remove":
		return a.clusterRemove(ctx, args)
	case "keyring rotate":
		return a.keyringRotate(ctx, args)
	case "operator add":
		return a.operatorAdd(ctx, args)
	case "operator list":
		return a.operatorList(ctx)
	case "operator disable", "operator enable":
		return a.operatorStatus(ctx, sub, args)
	case "operator join-token":
		return a.operatorJoinToken(ctx, args)
	case "audit verify":
		return a.auditVerify(ctx)
	case "audit export":
		return a.auditExport(ctx, args)
	case "application submit", "application list", "application show", "application review", "application decide":
		return a.application(ctx, sub, args)
	case "calendar load", "calendar show":
		return a.calendar(ctx, sub, args)
	case "report transfers", "report review", "report changes":
		return a.report(ctx, sub, args)
	}
	if cmd == "suspend" {
		return a.suspend(ctx, rest[1:])
	}
	fmt.Fprint(out, adminUsage)
	return fmt.Errorf("admin: unknown command %q", cmd+" "+sub)
}

func (a *adminCtx) print(v any, table func(w *table)) error {
	if a.json {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := newTable(a.out)
	table(w)
	return w.Flush()
}

func parseFlags(fs *flag.FlagSet, args []string, required ...string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, name := range required {
		if fs.Lookup(name).Value.String() == "" {
			return fmt.Errorf("%s: --%s is required", fs.Name(), name)
		}
	}
	return nil
}

func (a *adminCtx) orgAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("org add", flag.ContinueOnError)
	var o hubapi.Org
	fs.StringVar(&o.Code, "code", "", "organisation code (a-z, 0-9, '-')")
	fs.StringVar(&o.NameZh, "name-zh", "", "name in Chinese")
	fs.StringVar(&o.NameEn, "name-en", "", "name in English")
	fs.StringVar(&o.Type, "type", "", "organisation type")
	fs.StringVar(&o.ContactEmail, "contact-email", "", "where the hub e-mails the organisation what became of its applications (optional)")
	if err := parseFlags(fs, args, "code", "name-zh", "name-en", "type"); err != nil {
		return err
	}
	var saved hubapi.Org
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathOrgs, o, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		fmt.Fprintf(w, "added organisation %s (%s / %s)\n", saved.Code, saved.NameZh, saved.NameEn)
	})
}

func (a *adminCtx) orgList(ctx context.Context) error {
	var orgs []hubapi.Org
	if err := a.client.Do(ctx, http.MethodGet, hubapi.PathOrgs, nil, &orgs); err != nil {
		return err
	}
	return a.print(orgs, func(w *table) {
		fmt.Fprintln(w, "CODE\tTYPE\tSTATUS\tNAME (ZH)\tNAME (EN)\tCONTACT")
		for _, o := range orgs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Code, o.Type, o.Status, o.NameZh, o.NameEn, pick(o.ContactEmail, "-"))
		}
	})
}

func (a *adminCtx) connectorAdd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("connector add", flag.ContinueOnError)
	var c hubapi.Connector
	var roles string
	fs.StringVar(&c.Org, "org", "", "organisation code")
	fs.StringVar(&c.Name, "name", "", "connector name")
	fs.StringVar(&roles, "roles", "", "dp, sp or dp,sp")
	fs.StringVar(&c.Address, "address", "", "QUIC address host:port that peers dial")
	fs.StringVar(&c.TCPAddress, "tcp-address", "", "TCP address host:port that peers dial when QUIC does not get through (optional)")
	if err := parseFlags(fs, args, "org", "name", "roles", "address"); err != nil {
		return err
	}
	c.Roles = strings.Split(roles, ",")
	var saved hubapi.Connector
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathConnectors, c, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) { fmt.Fprintf(w, "added connector %s\n", saved.SPIFFEID) })
}

func (a *adminCtx) connectorList(ctx context.Context) error {
	var cs []hubapi.Connector
	if err := a.client.Do(ctx, http.MethodGet, hubapi.PathConnectors, nil, &cs); err != nil {
		return err
	}
	return a.print(cs, func(w *table) {
		fmt.Fprintln(w, "ORG\tNAME\tROLES\tADDRESS\tTCP ADDRESS\tSTATUS\tSPIFFE ID")
		for _, c := range cs {
			tcp := c.TCPAddress
			if tcp == "" {
				tcp = "-"
			}
			status := c.Status
			if c.Down {
				status += " (down)" // no hub node has heard from it lately
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Org, c.Name, strings.Join(c.Roles, ","), c.Address, tcp, status, c.SPIFFEID)
		}
	})
}

func (a *adminCtx) connectorAddress(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("connector address", flag.ContinueOnError)
	org := fs.String("org", "", "organisation code")
	name := fs.String("name", "", "connector name")
	var req hubapi.ConnectorAddressRequest
	fs.StringVar(&req.Address, "address", "", "QUIC (UDP) address, host:port")
	fs.StringVar(&req.TCPAddress, "tcp-address", "", "TCP address for peers whose UDP is blocked (the connector's tcp.listen); none if empty")
	if err := parseFlags(fs, args, "org", "name", "address"); err != nil {
		return err
	}
	var saved hubapi.Connector
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathConnectors+"/"+*org+"/"+*name+"/address", req, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		tcp := saved.TCPAddress
		if tcp == "" {
			tcp = "none"
		}
		fmt.Fprintf(w, "connector %s/%s is at %s (QUIC), %s (TCP)\n", saved.Org, saved.Name, saved.Address, tcp)
	})
}

func (a *adminCtx) connectorStatus(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("connector "+verb, flag.ContinueOnError)
	org := fs.String("org", "", "organisation code")
	name := fs.String("name", "", "connector name")
	if err := parseFlags(fs, args, "org", "name"); err != nil {
		return err
	}
	status := map[string]string{"suspend": hubapi.StatusSuspended, "activate": hubapi.StatusActive, "revoke": hubapi.StatusRevoked}[verb]
	var saved hubapi.Connector
	path := fmt.Sprintf("%s/%s/%s/status", hubapi.PathConnectors, *org, *name)
	if err := a.client.Do(ctx, http.MethodPost, path, hubapi.ConnectorStatusRequest{Status: status}, &saved); err != nil {
		return err
	}
	return a.print(saved, func(w *table) {
		fmt.Fprintf(w, "connector %s/%s is now %s\n", saved.Org, saved.Name, saved.Status)
	})
}

func (a *adminCtx) tokenCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	var req hubapi.TokenRequest
	fs.StringVar(&req.Org, "org", "", "organisation code")
	fs.StringVar(&req.Connector, "connector", "", "connector name")
	ttl := fs.Duration("ttl", 0, "token lifetime (default: the hub's tokens.default_ttl)")
	if err := parseFlags(fs, args, "org", "connector"); err != nil {
		return err
	}
	if *ttl < 0 || *ttl > 0 && *ttl < time.Second {
		return errors.New("token create: --ttl must be at least 1s")
	}
	req.TTLSeconds = int64(*ttl / time.Second)
	var resp hubapi.TokenResponse
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathTokens, req, &resp); err != nil {
		return err
	}
	if a.json {
		return a.print(resp, nil)
	}
	// The token alone, so that scripts can capture it.
	_, err := fmt.Fprintln(a.out, resp.Token)
	return err
}

func (a *adminCtx) intermediate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ca intermediate", flag.ContinueOnError)
	certOut := fs.String("cert-out", "", "where to write the intermediate CA certificate")
	keyOut := fs.String("key-out", "", "where to write its private key (mode 0600)")
	bundleOut := fs.String("bundle-out", "", "where to write the federation root")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "lifetime")
	org := fs.String("org", "", "the organisation whose connectors it may issue SVIDs for")
	if err := parseFlags(fs, args, "org", "cert-out", "key-out", "bundle-out"); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	var resp hubapi.IntermediateResponse
	if err := a.client.Do(ctx, http.MethodPost, hubapi.PathIntermediates, hubapi.IntermediateRequest{Org: *org, PublicKey: pub, TTLSeconds: int64(*ttl / time.Second)}, &resp); err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(resp.Certificate)
	if err != nil {
		return err
	}
	var roots []*x509.Certificate
	for _, der := range resp.Bundle {
		r, err := x509.ParseCertificate(der)
		if err != nil {
			return err
		}
		roots = append(roots, r)
	}
	keyPEM, err := pemfile.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(*keyOut, keyPEM, 0o600); err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(*certOut, pemfile.EncodeCertificates([]*x509.Certificate{cert}), 0o644); err != nil {
		return err
	}
	if err := pemfile.WriteAtomic(*bundleOut, pemfile.EncodeCertificates(roots), 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.out, "wrote intermediate CA %s (valid until %s)\n", *certOut, cert.NotAfter.Format(time.RFC3339))
	return err
}

func (a *adminCtx) certList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cert list", flag.ContinueOnError)
	id := fs.String("spiffe-id", "", "only certificates of this SPIFFE ID")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var certs []hubapi.Certificate
	if err := a.client.Do(ctx, http.MethodGet, hubapi.PathCertificates+"?spiffe_id="+url.QueryEscape(*id), nil, &certs); err != nil {
		return err
	}
	return a.print(certs, func(w *table) {
		fmt.Fprintln(w, "SERIAL\tKIND\tNOT AFTER\tSPIFFE ID")
		for _, c := range certs {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.Serial, c.Kind, c.NotAfter.Format(time.RFC3339), c.SPIFFEID)
		}
	})
}
