package provider_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hpke"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mydatafed/mydata/connector/internal/backend"
	"github.com/mydatafed/mydata/connector/internal/provider"
	"github.com/mydatafed/mydata/connector/internal/receipts"
	"github.com/mydatafed/mydata/connector/internal/tickets"
	"github.com/mydatafed/mydata/pkg/audit"
	"github.com/mydatafed/mydata/pkg/filetest"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/spiffetest"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/mydatafed/mydata/pkg/transfer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

const (
	td      = "mydata.test"
	dpID    = "spiffe://mydata.test/org/moi/connector/moi-dp"
	spID    = "spiffe://mydata.test/org/demobank/connector/bank-sp"
	otherID = "spiffe://mydata.test/org/fia/connector/fia-dp"
	dataset = "moi.household"
	subject = "A123456789"
	dataKey = subject + ".json" // the file backend's default pattern, {subject}.json
)

// t0 is when every ticket is issued; the provider's clock is set relative to it.
var t0 = time.Date(2026, 11, 23, 17, 11, 58, 0, time.UTC)

var household = []byte(`{"household":[{"name":"Ana","relation":"self"}]}`)

// fixture holds the keys one test shares: the hub's ticket key, the DP's HPKE key and SVID, and the
// recipients' keys.
type fixture struct {
	ca     *spiffetest.CA
	svid   *spiffetest.Source
	hubKey *ecdsa.PrivateKey // a hub node's ticket key
	signer *ticket.Signer
	keys   ticket.Keys
	dpKey  hpke.PrivateKey // the DP's HPKE key: ssub is sealed to it
	spKey  hpke.PrivateKey // an SP connector's per-exchange key (hybrid)
	webKey hpke.PrivateKey // a browser's key (X25519)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca := spiffetest.New(t, td)
	hubKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ticket.NewSigner(hubKey)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ca: ca, svid: ca.NewSource(ca.SVID(t, dpID, time.Hour)), hubKey: hubKey, signer: signer,
		keys: ticket.Keys{signer.KeyID(): &hubKey.PublicKey}}
	for _, k := range []struct {
		dst *hpke.PrivateKey
		kem uint16
	}{{&f.dpKey, seal.KEMHybrid}, {&f.spKey, seal.KEMHybrid}, {&f.webKey, seal.KEMX25519}} {
		if *k.dst, err = seal.GenerateKey(k.kem); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// claims is a good ticket for dataset, issued at t0 by the hub to spID, for this DP. The subject is sealed
// by sign, after changes, so that it is bound to the final ticket ID.
func (f *fixture) claims() *ticket.Claims {
	return &ticket.Claims{ID: "33ZrsmGfIw63WPBY4Fk2og", ConsentID: "pIfDmYkuMClQyVX8GkvZHQ", Dataset: dataset, DP: dpID,
		Redeemer: spID, RecipientKEM: seal.KEMHybrid, RecipientKey: f.spKey.PublicKey().Bytes(),
		Issuer: "spiffe://mydata.test/hub/hub-1", IssuedAt: t0.Unix(), ExpiresAt: t0.Add(ticket.MaxLife).Unix()}
}

// sealSubject seals s to key as the hub does for the ticket id.
func sealSubject(t *testing.T, key hpke.PublicKey, id, s string) []byte {
	t.Helper()
	b, err := seal.Seal(key, ticket.SubjectInfo(id), []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (f *fixture) sign(t *testing.T, c *ticket.Claims) string {
	t.Helper()
	if c.SealedSubject == nil {
		c.SealedSubject = sealSubject(t, f.dpKey.PublicKey(), c.ID, subject)
	}
	tok, err := f.signer.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// recipientKey is the private key that opens content sealed for c.
func (f *fixture) recipientKey(c *ticket.Claims) hpke.PrivateKey {
	if c.RecipientKEM == seal.KEMX25519 {
		return f.webKey
	}
	return f.spKey
}

// env is one DP connector: a file backend in a temporary directory, and its own ticket record, audit log
// and receipt outbox, all real.
type env struct {
	*fixture
	p        *provider.Provider
	files    string // the file backend's directory
	tickets  *tickets.Store
	audit    *audit.Log
	auditKey []byte
	outbox   *receipts.Outbox
	reg      *prometheus.Registry
	logs     *bytes.Buffer
	now      time.Time
}

func newEnv(t *testing.T, f *fixture, maxBytes int64) *env { return newEnvWith(t, f, maxBytes, nil) }

// newEnvWith is newEnv with the provider's configuration edited first, if edit is not nil.
func newEnvWith(t *testing.T, f *fixture, maxBytes int64, edit func(*provider.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{fixture: f, files: filepath.Join(dir, "agency"), reg: prometheus.NewRegistry(), logs: new(bytes.Buffer),
		auditKey: bytes.Repeat([]byte{0x5a}, audit.KeySize), now: t0}
	if err := os.Mkdir(e.files, 0o700); err != nil {
		t.Fatal(err)
	}
	var bc backend.Config
	bc.Type, bc.File.Dir = backend.TypeFile, e.files
	b, err := backend.New(bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if e.tickets, err = tickets.Open(filepath.Join(dir, "tickets.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.tickets.Close() })
	if e.audit, err = audit.Open(audit.Config{Path: filepath.Join(dir, "audit.db"), Now: func() time.Time { return e.now }}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.audit.Close() })
	// The outbox is never run: no hub here. What the provider queued stays, and Pending counts it.
	if e.outbox, err = receipts.Open(filepath.Join(dir, "receipts.db"), nil, slog.New(slog.DiscardHandler), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.outbox.Close() })
	cfg := provider.Config{
		Self: spiffeid.RequireFromString(dpID), Datasets: map[string]provider.Dataset{dataset: {Backend: b, MaxBytes: maxBytes}},
		Keys: f.keys, HPKE: f.dpKey, SVID: f.svid, Tickets: e.tickets, Audit: e.audit, AuditKey: e.auditKey, Receipts: e.outbox,
		Log: slog.New(slog.NewTextHandler(e.logs, nil)), Registerer: e.reg, Now: func() time.Time { return e.now },
	}
	if edit != nil {
		edit(&cfg)
	}
	e.p, err = provider.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// write puts the agency's files in place; a name ending in "/" is made a directory.
func (e *env) write(t *testing.T, files map[string][]byte) {
	t.Helper()
	filetest.WriteTree(t, e.files, files)
}

// stream stands in for a QUIC stream: Serve reads nothing from it (the ticket frame was read before), so
// a buffer that records what was written and whether it was closed is all it needs. failAfter > 0 makes
// writes fail once that many bytes went out, as a reset stream does.
type stream struct {
	bytes.Buffer
	failAfter int
	closed    bool
}

var errReset = errors.New("stream reset by peer")

func (s *stream) Write(p []byte) (int, error) {
	if s.failAfter > 0 && s.Len()+len(p) > s.failAfter {
		return 0, errReset
	}
	return s.Buffer.Write(p)
}

func (s *stream) Close() error { s.closed = true; return nil }

// answer is what the SP made of one presentation.
type answer struct {
	res     *transfer.Result
	err     error
	content []byte
}

// present serves tok from peer on a fresh stream and reads the answer as an SP connector would.
func (e *env) present(t *testing.T, st *stream, tok, peer string, c *ticket.Claims) answer {
	t.Helper()
	e.p.Serve(st, spiffeid.RequireFromString(peer), tok)
	if !st.closed {
		t.Error("Serve did not close the stream")
	}
	var out bytes.Buffer
	res, err := transfer.Receive(bytes.NewReader(st.Bytes()), &out, transfer.Expect{TicketID: c.ID, Dataset: c.Dataset,
		DP: spiffeid.RequireFromString(dpID), MaxSize: 1 << 20, Bundles: e.ca.Bundle()}, e.recipientKey(c))
	return answer{res: res, err: err, content: out.Bytes()}
}

// entries is the audit log, oldest first.
func (e *env) entries(t *testing.T) []audit.Entry {
	t.Helper()
	var buf bytes.Buffer
	if _, err := e.audit.Export(context.Background(), time.Time{}, &buf); err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var en audit.Entry
		if err := dec.Decode(&en); err != nil {
			t.Fatal(err)
		}
		out = append(out, en)
	}
	return out
}

func (e *env) pending(t *testing.T) int {
	t.Helper()
	n, err := e.outbox.Pending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// counter reads a counter from the provider's registry; labels must match exactly.
func (e *env) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// spent reports whether the ticket record holds id as used, by trying to claim it as the next stream
// would; a claim that succeeds is given back so the record is as before.
func (e *env) spent(t *testing.T, id string) bool {
	t.Helper()
	ctx := context.Background()
	err := e.tickets.Claim(ctx, id, t0.Add(time.Hour))
	switch {
	case errors.Is(err, tickets.ErrUsed):
		return true
	case err != nil:
		t.Fatalf("probe ticket record: %v", err)
	}
	if err := e.tickets.Finish(ctx, id, false); err != nil {
		t.Fatal(err)
	}
	return false
}

// jws signs payload with key under a protected header of our choosing, for tickets the hub's Signer would
// never make.
func jws(t *testing.T, key *ecdsa.PrivateKey, typ, kid string, payload []byte) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestServe(t *testing.T) {
	f := newFixture(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), (2*seal.ChunkSize+123)/16+1)[:2*seal.ChunkSize+123]
	otherKey, err := seal.GenerateKey(seal.KEMHybrid)
	if err != nil {
		t.Fatal(err)
	}
	strangerKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := map[string][]byte{dataKey: household}

	type want struct {
		status  transfer.Status
		msg     string // substring of the header's message
		retry   int
		content []byte // for OK
		outcome string // the audit entry's
		dataset string // the audit entry's; "unknown" when the ticket did not verify
		detail  string // substring of the audit entry's detail
		subject bool   // the audit entry carries the subject's keyed hash
		receipt bool   // a receipt is queued for the hub
		spent   bool   // the ticket record holds the ticket as used
		log     string // substring of the DP's own log
	}
	refusedUnverified := func(msg string) want {
		return want{status: transfer.Refused, msg: msg, outcome: audit.OutcomeRefused, dataset: "unknown", detail: msg}
	}
	// A verified ticket refused before it is claimed: audited and reported under its dataset, not consumed.
	refusedVerified := func(msg string) want {
		return want{status: transfer.Refused, msg: msg, outcome: audit.OutcomeRefused, dataset: dataset, detail: msg, receipt: true}
	}
	// A claimed ticket refused at checks 9-10: the presentation counts, so the ticket is spent.
	refusedClaimed := func(msg string) want {
		return want{status: transfer.Refused, msg: msg, outcome: audit.OutcomeRefused, dataset: dataset, detail: msg, receipt: true, spent: true}
	}
	// The agency's failure: the SP learns only that the provider failed; the detail stays generic.
	failed := func(msg, detail string) want {
		return want{status: transfer.Failed, msg: msg, outcome: audit.OutcomeFailed, dataset: dataset, detail: detail, subject: true, receipt: true, spent: true}
	}
	backendFailed := failed("the data provider's system could not produce the data", "backend failure")
	backendFailed.log = "backend fetch failed"
	delivered := func(content []byte) want {
		return want{status: transfer.OK, content: content, outcome: audit.OutcomeDelivered, dataset: dataset, subject: true, receipt: true, spent: true}
	}

	tests := []struct {
		name     string
		claims   func(t *testing.T, c *ticket.Claims)        // changes to a good ticket
		token    func(t *testing.T, c *ticket.Claims) string // a ticket the hub's Signer would not make
		peer     string                                      // the QUIC peer; spID when empty
		at       time.Duration                               // the provider's clock, after t0
		files    map[string][]byte                           // the agency's directory; nil means good
		maxBytes int64                                       // the dataset's max_bytes; 1 MiB when 0
		failAt   int                                         // the stream resets after this many bytes
		want     want
		recvErr  error // what the SP's Receive returns instead of a result
	}{
		{name: "delivered", want: delivered(household)},
		{name: "delivered in several chunks", files: map[string][]byte{dataKey: big}, want: delivered(big)},
		{name: "delivered empty", files: map[string][]byte{dataKey: {}}, want: delivered([]byte{})},
		{name: "delivered to a browser key (X25519)",
			claims: func(t *testing.T, c *ticket.Claims) {
				c.RecipientKEM, c.RecipientKey = seal.KEMX25519, f.webKey.PublicKey().Bytes()
			},
			want: delivered(household)},
		{name: "delivered within the skew after expiry", at: ticket.MaxLife + ticket.Skew - time.Second, want: delivered(household)},
		{name: "delivered within the skew before issue", at: -ticket.Skew, want: delivered(household)},

		{name: "expired", at: ticket.MaxLife + ticket.Skew,
			want: refusedUnverified("ticket: expired at 2026-11-23T17:16:58Z")},
		{name: "issued in the future", at: -ticket.Skew - time.Second,
			want: refusedUnverified("ticket: malformed: issued in the future")},
		{name: "not a ticket", token: func(*testing.T, *ticket.Claims) string { return "not-a-ticket" },
			want: refusedUnverified("ticket: malformed")},
		{name: "key not in the directory", token: func(t *testing.T, c *ticket.Claims) string {
			stranger, err := ticket.NewSigner(strangerKey)
			if err != nil {
				t.Fatal(err)
			}
			c.SealedSubject = sealSubject(t, f.dpKey.PublicKey(), c.ID, subject)
			tok, err := stranger.Sign(c)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, want: refusedUnverified("ticket: signed with a key the directory does not list")},
		{name: "listed kid, another key's signature", token: func(t *testing.T, c *ticket.Claims) string {
			c.SealedSubject = sealSubject(t, f.dpKey.PublicKey(), c.ID, subject)
			payload, _ := json.Marshal(c)
			return jws(t, strangerKey, "mydata-ticket+jws", f.signer.KeyID(), payload)
		}, want: refusedUnverified("ticket: signature does not verify")},
		{name: "claims changed after signing", token: func(t *testing.T, c *ticket.Claims) string {
			parts := strings.Split(f.sign(t, c), ".")
			c.Redeemer = otherID
			payload, _ := json.Marshal(c)
			parts[1] = base64.RawURLEncoding.EncodeToString(payload)
			return strings.Join(parts, ".")
		}, peer: otherID, want: refusedUnverified("ticket: signature does not verify")},
		{name: "another JWS type signed by a hub key", token: func(t *testing.T, c *ticket.Claims) string {
			c.SealedSubject = sealSubject(t, f.dpKey.PublicKey(), c.ID, subject)
			payload, _ := json.Marshal(c)
			return jws(t, f.hubKey, "JWT", f.signer.KeyID(), payload)
		}, want: refusedUnverified(`ticket: malformed: type "JWT"`)},

		{name: "wrong redeemer", peer: otherID,
			want: func() want {
				// Not the ticket's transfer: audited, but no receipt that would replace the real one's.
				w := refusedVerified("this ticket may be presented only by " + spID)
				w.receipt = false
				return w
			}()},
		{name: "wrong DP", claims: func(t *testing.T, c *ticket.Claims) { c.DP = otherID },
			want: refusedVerified("this ticket is for " + otherID + ", not this connector")},
		{name: "dataset not served", claims: func(t *testing.T, c *ticket.Claims) { c.Dataset = "moi.vehicles" },
			want: func() want {
				w := refusedVerified("this connector does not serve dataset moi.vehicles")
				w.dataset = "moi.vehicles"
				return w
			}()},
		{name: "subject sealed to another DP",
			claims: func(t *testing.T, c *ticket.Claims) {
				c.SealedSubject = sealSubject(t, otherKey.PublicKey(), c.ID, subject)
			},
			want: refusedClaimed("the ticket's subject is not sealed to this connector")},
		{name: "subject sealed for another ticket",
			claims: func(t *testing.T, c *ticket.Claims) {
				c.SealedSubject = sealSubject(t, f.dpKey.PublicKey(), "another", subject)
			},
			want: refusedClaimed("the ticket's subject is not sealed to this connector")},
		{name: "recipient key unusable", claims: func(t *testing.T, c *ticket.Claims) { c.RecipientKey = []byte("short") },
			want: func() want { w := refusedClaimed("the ticket's recipient key is unusable"); w.subject = true; return w }()},
		{name: "recipient KEM not allowed", claims: func(t *testing.T, c *ticket.Claims) { c.RecipientKEM = 0x0010 },
			want: func() want { w := refusedClaimed("the ticket's recipient key is unusable"); w.subject = true; return w }()},

		{name: "no record", files: map[string][]byte{},
			want: want{status: transfer.NoRecord, msg: "no record for this citizen", outcome: audit.OutcomeNoRecord, dataset: dataset,
				subject: true, receipt: true, spent: true}},
		{name: "not ready", files: map[string][]byte{dataKey + ".retry": []byte("45\n")},
			want: want{status: transfer.NotReady, msg: "the agency will answer later", retry: 45, outcome: audit.OutcomePending,
				dataset: dataset, detail: "retry after 45s", subject: true, receipt: true}},
		{name: "not ready now: retry after at least a second", files: map[string][]byte{dataKey + ".retry": []byte("0")},
			want: want{status: transfer.NotReady, retry: 1, outcome: audit.OutcomePending, dataset: dataset, detail: "retry after 1s",
				subject: true, receipt: true}},
		{name: "backend failure: data file is a directory", files: map[string][]byte{dataKey + "/": nil}, want: backendFailed},
		{name: "backend failure: unreadable retry file", files: map[string][]byte{dataKey + ".retry": []byte("soon")}, want: backendFailed},
		{name: "backend failure: subject the backend refuses",
			claims: func(t *testing.T, c *ticket.Claims) {
				c.SealedSubject = sealSubject(t, f.dpKey.PublicKey(), c.ID, "../"+subject)
			},
			want: func() want {
				w := backendFailed
				w.subject = false // hashed, but it is another subject than the default one
				return w
			}()},
		{name: "larger than max_bytes", maxBytes: int64(len(household)) - 1,
			want: failed("the data is larger than this provider delivers", "dataset larger than max_bytes")},
		{name: "stream reset mid-delivery", files: map[string][]byte{dataKey: big}, failAt: seal.ChunkSize + 4096,
			want:    want{outcome: audit.OutcomeFailed, dataset: dataset, detail: "delivery interrupted", subject: true, receipt: true, spent: true},
			recvErr: transfer.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			maxBytes := tt.maxBytes
			if maxBytes == 0 {
				maxBytes = 1 << 20
			}
			e := newEnv(t, f, maxBytes)
			files := tt.files
			if files == nil {
				files = good
			}
			e.write(t, files)
			c := f.claims()
			if tt.claims != nil {
				tt.claims(t, c)
			}
			var tok string
			if tt.token != nil {
				tok = tt.token(t, c)
			} else {
				tok = f.sign(t, c)
			}
			peer := tt.peer
			if peer == "" {
				peer = spID
			}
			e.now = t0.Add(tt.at)

			a := e.present(t, &stream{failAfter: tt.failAt}, tok, peer, c)
			w := tt.want
			if tt.recvErr != nil {
				if !errors.Is(a.err, tt.recvErr) {
					t.Fatalf("Receive: %v, want %v", a.err, tt.recvErr)
				}
			} else {
				if a.err != nil {
					t.Fatalf("Receive: %v", a.err)
				}
				h := a.res.Header
				if h.Status != w.status || !strings.Contains(h.Message, w.msg) || h.RetryAfter != w.retry {
					t.Errorf("header = %q %q retry %d, want %q containing %q retry %d", h.Status, h.Message, h.RetryAfter, w.status, w.msg, w.retry)
				}
				// A failure's message is fixed: nothing of the agency's error may reach the SP.
				if h.Status == transfer.Failed && h.Message != w.msg {
					t.Errorf("failed header message = %q, want exactly %q", h.Message, w.msg)
				}
				if w.status == transfer.OK {
					if !bytes.Equal(a.content, w.content) {
						t.Errorf("content: got %d bytes, want %d", len(a.content), len(w.content))
					}
					m := h.Manifest
					if m.ConsentID != c.ConsentID || m.ContentType != "application/json" || m.DeclaredSize != int64(len(w.content)) || m.KEM != c.RecipientKEM {
						t.Errorf("manifest = %+v", m)
					}
				}
			}

			ents := e.entries(t)
			if len(ents) != 1 {
				t.Fatalf("audit has %d entries, want 1: %+v", len(ents), ents)
			}
			en := ents[0]
			if en.Role != audit.RoleDP || en.Outcome != w.outcome || en.Dataset != w.dataset || en.Counterpart != peer ||
				!strings.Contains(en.Detail, w.detail) || !en.Time.Equal(e.now) {
				t.Errorf("audit entry = %+v, want outcome %q dataset %q detail containing %q", en, w.outcome, w.dataset, w.detail)
			}
			if w.dataset == "unknown" {
				if en.TicketID != "" || en.ConsentID != "" {
					t.Errorf("audit entry of an unverified ticket names ticket %q consent %q", en.TicketID, en.ConsentID)
				}
			} else if en.TicketID != c.ID || en.ConsentID != c.ConsentID {
				t.Errorf("audit entry names ticket %q consent %q, want %q %q", en.TicketID, en.ConsentID, c.ID, c.ConsentID)
			}
			if wantSubj := audit.SubjectHash(e.auditKey, subject); w.subject != (en.Subject == wantSubj) {
				t.Errorf("audit subject = %q, want the keyed hash: %v", en.Subject, w.subject)
			}
			if w.outcome == audit.OutcomeDelivered && en.Bytes != int64(len(w.content)) {
				t.Errorf("audit bytes = %d, want %d", en.Bytes, len(w.content))
			}
			if got := e.pending(t) == 1; got != w.receipt {
				t.Errorf("receipt queued = %v, want %v", got, w.receipt)
			}
			if got := e.counter(t, "mydata_connector_dp_transfers_total", map[string]string{"dataset": w.dataset, "outcome": w.outcome, "transport": ""}); got != 1 {
				t.Errorf("transfers_total{%s,%s} = %v, want 1", w.dataset, w.outcome, got)
			}
			if w.outcome == audit.OutcomeDelivered {
				if got := e.counter(t, "mydata_connector_dp_bytes_total", nil); got != float64(len(w.content)) {
					t.Errorf("bytes_total = %v, want %d", got, len(w.content))
				}
			}
			if got := e.spent(t, c.ID); got != w.spent {
				t.Errorf("ticket spent = %v, want %v", got, w.spent)
			}
			if !strings.Contains(e.logs.String(), w.log) {
				t.Errorf("the DP's log lacks %q: %s", w.log, e.logs)
			}
			// The subject is personal data: it goes nowhere but the backend, not even the DP's own log.
			if strings.Contains(e.logs.String(), subject) {
				t.Errorf("the DP's log holds the subject: %s", e.logs)
			}
		})
	}
}

// TestServeSingleUse presents one ticket several times: it delivers at most once, "not ready" gives it
// back, and a presentation that failed before the claim does not consume it.
func TestServeSingleUse(t *testing.T) {
	f := newFixture(t)
	type step struct {
		peer   string                                // spID when empty
		before func(t *testing.T, e *env, id string) // changes before this presentation
		status transfer.Status
		msg    string
	}
	retry := func(t *testing.T, e *env, _ string) { e.write(t, map[string][]byte{dataKey + ".retry": []byte("30")}) }
	ready := func(t *testing.T, e *env, _ string) {
		if err := os.Remove(filepath.Join(e.files, dataKey+".retry")); err != nil {
			t.Fatal(err)
		}
	}
	used := step{status: transfer.Refused, msg: "ticket already used"}
	tests := []struct {
		name   string
		claims func(c *ticket.Claims)
		files  map[string][]byte
		steps  []step
	}{
		{name: "replayed after delivery", steps: []step{{status: transfer.OK}, used, used}},
		{name: "replayed after no record", files: map[string][]byte{}, steps: []step{{status: transfer.NoRecord}, used}},
		{name: "replayed after a refusal once claimed",
			claims: func(c *ticket.Claims) { c.RecipientKey = []byte("short") },
			steps:  []step{{status: transfer.Refused, msg: "recipient key is unusable"}, used}},
		{name: "presented again after not ready", steps: []step{
			{before: retry, status: transfer.NotReady}, {status: transfer.NotReady}, {before: ready, status: transfer.OK}, used}},
		{name: "not consumed by a wrong presenter", steps: []step{
			{peer: otherID, status: transfer.Refused, msg: "may be presented only by"}, {status: transfer.OK}, used}},
		{name: "being served on another stream", steps: []step{{
			before: func(t *testing.T, e *env, id string) {
				if err := e.tickets.Claim(context.Background(), id, t0.Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
			},
			status: transfer.Refused, msg: "ticket is being served on another stream"}}},
		{name: "ticket record unavailable", steps: []step{{
			before: func(t *testing.T, e *env, _ string) { e.tickets.Close() },
			status: transfer.Failed, msg: "the data provider cannot serve right now"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, f, 1<<20)
			files := tt.files
			if files == nil {
				files = map[string][]byte{dataKey: household}
			}
			e.write(t, files)
			c := f.claims()
			if tt.claims != nil {
				tt.claims(c)
			}
			tok := f.sign(t, c)
			for i, s := range tt.steps {
				if s.before != nil {
					s.before(t, e, c.ID)
				}
				peer := s.peer
				if peer == "" {
					peer = spID
				}
				a := e.present(t, &stream{}, tok, peer, c)
				if a.err != nil {
					t.Fatalf("presentation %d: Receive: %v", i+1, a.err)
				}
				if h := a.res.Header; h.Status != s.status || !strings.Contains(h.Message, s.msg) {
					t.Errorf("presentation %d: %q %q, want %q containing %q", i+1, h.Status, h.Message, s.status, s.msg)
				}
			}
			// Every presentation is audited, whatever became of it.
			if n := len(e.entries(t)); n != len(tt.steps) {
				t.Errorf("audit has %d entries for %d presentations", n, len(tt.steps))
			}
		})
	}
}

// TestServeConcurrentPresentations presents one ticket on several streams at once: exactly one delivers.
func TestServeConcurrentPresentations(t *testing.T) {
	f := newFixture(t)
	e := newEnv(t, f, 1<<20)
	e.write(t, map[string][]byte{dataKey: household})
	c := f.claims()
	tok := f.sign(t, c)
	const n = 4
	streams := make([]*stream, n)
	done := make(chan struct{})
	for i := range streams {
		streams[i] = &stream{}
		go func() {
			defer func() { done <- struct{}{} }()
			e.p.Serve(streams[i], spiffeid.RequireFromString(spID), tok)
		}()
	}
	for range n {
		<-done
	}
	var ok int
	for i, st := range streams {
		res, err := transfer.Receive(bytes.NewReader(st.Bytes()), io.Discard, transfer.Expect{TicketID: c.ID, Dataset: c.Dataset,
			DP: spiffeid.RequireFromString(dpID), MaxSize: 1 << 20, Bundles: f.ca.Bundle()}, f.spKey)
		switch {
		case err != nil:
			t.Errorf("stream %d: %v", i, err)
		case res.Header.Status == transfer.OK:
			ok++
		case res.Header.Status != transfer.Refused:
			t.Errorf("stream %d: %q %q, want ok or refused", i, res.Header.Status, res.Header.Message)
		}
	}
	if ok != 1 {
		t.Errorf("%d streams delivered, want exactly 1", ok)
	}
	if got := len(e.entries(t)); got != n {
		t.Errorf("audit has %d entries, want %d", got, n)
	}
}

func TestNewRegistersMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := provider.New(provider.Config{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	// A second provider on the same registry would export two series under one name: refused.
	if _, err := provider.New(provider.Config{Registerer: reg}); err == nil {
		t.Error("second New on one registry: no error")
	}
	if _, err := provider.New(provider.Config{}); err != nil {
		t.Errorf("New without a registry: %v", err)
	}
}

// The hub keeps one receipt per (ticket, role), and a later report replaces an earlier one unless it is
// "pending" (hub/internal/fsm/consent.go, addReceipt). A replay refused as "ticket already used" is not a
// report on the ticket's transfer, so it must not reach the hub as one: the citizen's history would show
// the dataset refused, 0 bytes, though it was delivered.
func TestReplayDoesNotReportOverADelivery(t *testing.T) {
	f := newFixture(t)
	e := newEnv(t, f, 1<<20)
	e.write(t, map[string][]byte{dataKey: household})
	c := f.claims()
	tok := f.sign(t, c)
	if a := e.present(t, &stream{}, tok, spID, c); a.err != nil || a.res.Header.Status != transfer.OK {
		t.Fatalf("first presentation: %+v", a)
	}
	if n := e.pending(t); n != 1 {
		t.Fatalf("%d receipts after the delivery, want 1", n)
	}
	e.now = t0.Add(time.Minute)
	if a := e.present(t, &stream{}, tok, spID, c); a.err != nil || a.res.Header.Message != "ticket already used" {
		t.Fatalf("replay: %+v", a)
	}
	if n := e.pending(t); n != 1 {
		t.Errorf("the replay queued a second receipt for ticket %s (%d queued); its outcome %q, stamped after "+
			"the delivery, would replace \"delivered\" at the hub", c.ID, n, audit.OutcomeRefused)
	}
}

// A receiver refuses retry_after outside 0-86400 (pkg/transfer, Receive), and backends pass on whatever
// the agency said (the HTTP backend up to 2^31 s), so the DP must keep "not ready" answers in range.
func TestNotReadyRetryAfterInProtocolRange(t *testing.T) {
	f := newFixture(t)
	e := newEnv(t, f, 1<<20)
	e.write(t, map[string][]byte{dataKey + ".retry": []byte("90000")})
	c := f.claims()
	a := e.present(t, &stream{}, f.sign(t, c), spID, c)
	if a.err != nil {
		t.Fatalf("the agency's retry after 90000 s went out unclamped and the SP refuses the answer: %v", a.err)
	}
	// The ticket lives 5 minutes: a retry after that is useless to the SP.
	if h := a.res.Header; h.Status != transfer.NotReady || h.RetryAfter < 1 || h.RetryAfter > int(time.Unix(c.ExpiresAt, 0).Sub(e.now)/time.Second) {
		t.Errorf("header = %+v, want not_ready with retry_after within the ticket's life", h)
	}
}

// Every presentation is audited, refusals included (docs/protocol.md section 15). The reason of a refusal
// may quote the presented ticket, so it must fit the audit log's detail limit of 512 bytes.
func TestRefusalOfALongTicketIsAudited(t *testing.T) {
	f := newFixture(t)
	e := newEnv(t, f, 1<<20)
	c := f.claims()
	c.SealedSubject = []byte("x")
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	tok := jws(t, f.hubKey, "mydata-ticket+jws", strings.Repeat("k", 600), payload)
	a := e.present(t, &stream{}, tok, spID, c)
	if a.err != nil || a.res.Header.Status != transfer.Refused || len(a.res.Header.Message) > 512 {
		t.Fatalf("answer: %+v", a)
	}
	if n := len(e.entries(t)); n != 1 {
		t.Errorf("a refusal whose reason quotes a 600-byte kid left %d audit entries, want 1: %s", n, strings.TrimSpace(e.logs.String()))
	}
}
