// Package consent is the hub's consent logic, apart from the web and API surfaces that call it: recording a
// citizen's decision (with the national ID kept only as a keyed hash, and sealed while the consent can be
// redeemed), revocation, the citizen's history, and the redemption of an authorization code for transfer
// tickets. Every change goes through the replicated state machine, where single use is decided.
package consent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/memo"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// State is what the consent logic reads of the replicated state.
type State interface {
	Consent(id string) (*fsm.Consent, error)
	ConsentByCode(codeHash string) (*fsm.Consent, error)
	ConsentsOf(subjects []string, limit int) ([]fsm.Consent, error)
	Unredacted(limit int) (map[string]string, error)
	Service(id string) (*hubapi.Service, error)
	Dataset(id string) (*hubapi.Dataset, error)
	Connector(org, name string) (*hubapi.Connector, error)
	Counter(consentID string) (*fsm.CounterCode, error)
	CounterByCode(hashes []string) (*fsm.CounterCode, error)
	ThrottleOf(key string) (fsm.Throttle, error)
	OTP(id string) (*fsm.OTPChallenge, error)
	// PilotSubject says whether a lookup hash is a test subject of a service's or dataset's pilot.
	PilotSubject(kind, target, hash string) (bool, error)
}

// Keys are the keyring's subject keys.
type Keys interface {
	LookupHash(id string) (string, error)
	LookupHashes(id string) ([]string, error)
	SealSubject(id, context string) ([]byte, error)
	OpenSubject(sealed []byte, context string) (string, error)
	CodeHash(kind, code string) (string, error)
	CodeHashes(kind, code string) ([]string, error)
}

// Config wires the consent logic.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	NodeID      string
	State       State
	Keys        Keys
	// Apply proposes a command and waits until this node has applied it (cluster.Apply).
	Apply func(fsm.Command) error
	// Sync waits until this node has applied what the leader has committed (cluster.Sync): a code issued
	// through another node a moment ago is then found here.
	Sync    func(context.Context) error
	Tickets *ticket.Signer
	CodeTTL time.Duration
	// CounterTTL is how long a counter code is good for.
	CounterTTL time.Duration
	// OTP sends and checks the one-time codes of counter services that require one; nil refuses their
	// redemptions.
	OTP OTP
	Log *slog.Logger
}

// Service is the consent logic of one hub node.
type Service struct {
	cfg  Config
	keys *seal.PublicKeys
	// parties remembers the consents whose receipts are expected (see Parties).
	parties *memo.Map[string, Parties]
}

// New makes the service.
func New(cfg Config) *Service {
	if cfg.CounterTTL == 0 {
		cfg.CounterTTL = DefaultCounterTTL
	}
	return &Service{cfg: cfg, keys: seal.NewPublicKeys(), parties: &memo.Map[string, Parties]{Max: maxRememberedConsents}}
}

// maxRememberedConsents bounds Parties' memory; receipts come within seconds of their redemption.
const maxRememberedConsents = 8192

// CodeHash is how codes are kept: the hub stores no code it could hand out again.
func CodeHash(code string) string {
	h := sha256.Sum256([]byte(code))
	return hex.EncodeToString(h[:])
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decide records a citizen's decision on a request. c.Subject is the citizen's national ID; what is
// recorded is its keyed hash, and on approval the ID sealed for the redemption. It returns the
// authorization code on approval. A refusal is an *fsm.Error.
func (s *Service) Decide(c fsm.Consent, approve bool, now time.Time) (code string, err error) {
	id := c.Subject
	if approve {
		if err := s.pilotAllows(&c, id); err != nil {
			return "", err
		}
	}
	if c.Subject, err = s.cfg.Keys.LookupHash(id); err != nil {
		return "", err
	}
	cmd := &fsm.ConsentRecord{Consent: c, Approve: approve, Now: now}
	if approve {
		if cmd.Consent.SubjectSealed, err = s.cfg.Keys.SealSubject(id, c.ID); err != nil {
			return "", err
		}
		code = randomID(32)
		cmd.CodeHash, cmd.CodeExpiresAt = CodeHash(code), now.Add(s.cfg.CodeTTL)
	}
	if err := s.cfg.Apply(cmd); err != nil {
		return "", err
	}
	return code, nil
}

// ErrNotPilotSubject refuses a consent to a service or dataset in its pilot from a citizen its
// application does not list.
var ErrNotPilotSubject = &fsm.Error{Code: fsm.Forbidden, Message: "the service is in its pilot and serves only the citizens listed on its application"}

// pilotAllows refuses a citizen (national ID id) who is not a test subject of the pilot the consent's
// service or any of its datasets is in. The subjects were hashed under the lookup key of the day, so every
// key's hash is tried.
func (s *Service) pilotAllows(c *fsm.Consent, id string) error {
	type target struct{ kind, id string }
	var pilots []target
	if c.Service != "" {
		svc, err := s.cfg.State.Service(c.Service)
		if err != nil {
			return err
		}
		if svc != nil && hubapi.StageOf(svc.Stage) == hubapi.StagePilot {
			pilots = append(pilots, target{fsm.ApplyService, svc.ID})
		}
	}
	for _, ds := range c.Datasets {
		d, err := s.cfg.State.Dataset(ds)
		if err != nil {
			return err
		}
		if d != nil && hubapi.StageOf(d.Stage) == hubapi.StagePilot {
			pilots = append(pilots, target{fsm.ApplyDataset, d.ID})
		}
	}
	if len(pilots) == 0 {
		return nil
	}
	hashes, err := s.cfg.Keys.LookupHashes(id)
	if err != nil {
		return err
	}
	for _, p := range pilots {
		listed := false
		for _, h := range hashes {
			if listed, err = s.cfg.State.PilotSubject(p.kind, p.id, h); err != nil {
				return err
			} else if listed {
				break
			}
		}
		if !listed {
			return ErrNotPilotSubject
		}
	}
	return nil
}

// ownedBy finds a consent of the citizen with national ID subject; nil if there is none (or it is
// another citizen's).
func (s *Service) ownedBy(id, subject string) (*fsm.Consent, error) {
	k, err := s.cfg.State.Consent(id)
	if err != nil || k == nil {
		return nil, err
	}
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return nil, err
	}
	if k.Subject != subject && !slices.Contains(hashes, k.Subject) {
		return nil, nil
	}
	return k, nil
}

// Revoke withdraws a consent not yet used, for the citizen with national ID subject.
func (s *Service) Revoke(id, subject string, now time.Time) error {
	k, err := s.ownedBy(id, subject)
	if err != nil {
		return err
	}
	if k == nil {
		return &fsm.Error{Code: fsm.NotFound, Message: "no such consent of yours"}
	}
	return s.cfg.Apply(&fsm.ConsentRevoke{ID: id, Subject: k.Subject, Now: now})
}

// History lists the consents of the citizen with national ID subject, newest first.
func (s *Service) History(subject string, limit int) ([]fsm.Consent, error) {
	hashes, err := s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return nil, err
	}
	// Consents recorded before the keyring hold the ID itself until the leader redacts them.
	return s.cfg.State.ConsentsOf(append(hashes, subject), limit)
}

// GrantError is a refused redemption, shaped as RFC 6749 section 5.2 answers it.
type GrantError struct {
	Status      int    // HTTP status
	Code        string // invalid_request, invalid_grant, invalid_client
	Description string
}

func (e *GrantError) Error() string { return e.Code + ": " + e.Description }

func grantError(status int, code, format string, args ...any) *GrantError {
	return &GrantError{Status: status, Code: code, Description: fmt.Sprintf(format, args...)}
}

// Redeem trades an authorization code for tickets. The caller must be the service's own SP connector; the
// consent is spent through the state machine before any ticket is made, so a code yields tickets once,
// whichever nodes it is presented to.
func (s *Service) Redeem(ctx context.Context, caller fedid.Parsed, req hubapi.RedeemRequest, now time.Time) (*hubapi.RedeemResponse, error) {
	if !pkceVerifier(req.CodeVerifier) {
		return nil, grantError(400, "invalid_request", "code_verifier must be 43 to 128 unreserved characters")
	}
	recipient, err := s.keys.Parse(req.RecipientKEM, req.RecipientKey)
	if err != nil || req.RecipientKEM != seal.KEMHybrid {
		return nil, grantError(400, "invalid_request", "recipient_key must be an ML-KEM-768+X25519 HPKE public key")
	}
	c, err := s.cfg.State.ConsentByCode(CodeHash(req.Code))
	if err == nil && c == nil && s.cfg.Sync != nil {
		// Issued through another node a moment ago, perhaps: catch up with the leader and look again.
		if err = s.cfg.Sync(ctx); err == nil {
			c, err = s.cfg.State.ConsentByCode(CodeHash(req.Code))
		}
	}
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, grantError(400, "invalid_grant", "code unknown")
	}
	svc, err := s.cfg.State.Service(c.Service)
	if err != nil || svc == nil {
		return nil, fmt.Errorf("service of consent %s: %v", c.ID, err)
	}
	if svc.Status != hubapi.StatusActive {
		// Suspended or terminated since the citizen agreed: no ticket leaves the hub for it.
		return nil, grantError(403, "invalid_client", "service %s is %s", svc.ID, svc.Status)
	}
	if caller.Org != svc.SPOrg || caller.Name != svc.SPConnector || (req.ClientID != "" && req.ClientID != svc.ID) {
		return nil, grantError(403, "invalid_client", "the code was issued to service %s, whose connector is %s/%s", svc.ID, svc.SPOrg, svc.SPConnector)
	}
	if sp, err := s.cfg.State.Connector(caller.Org, caller.Name); err != nil {
		return nil, err
	} else if sp == nil || sp.Status != hubapi.StatusActive {
		return nil, grantError(403, "invalid_client", "connector %s/%s is not active", caller.Org, caller.Name)
	}
	if req.RedirectURI != c.RedirectURI {
		return nil, grantError(400, "invalid_grant", "redirect_uri differs from the authorization request's")
	}
	sum := sha256.Sum256([]byte(req.CodeVerifier))
	if base64.RawURLEncoding.EncodeToString(sum[:]) != c.CodeChallenge {
		return nil, grantError(400, "invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
	}
	// Opened before the use, which clears it from the state.
	subject, err := s.subjectOf(c)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Apply(&fsm.ConsentUse{ID: c.ID, Now: now}); err != nil {
		var fe *fsm.Error
		if errors.As(err, &fe) {
			return nil, grantError(400, "invalid_grant", "%s", fe.Message)
		}
		return nil, err
	}
	return s.issue(c, svc, subject, caller, recipient.KEM().ID(), req.RecipientKey, now)
}

// issue answers a redemption whose consent has just been spent: one ticket per dataset for the caller, with
// the recipient's key, or the reason there is none. The online and the counter redemptions share it.
func (s *Service) issue(c *fsm.Consent, svc *hubapi.Service, subject string, caller fedid.Parsed, kem uint16, recipientKey []byte, now time.Time) (*hubapi.RedeemResponse, error) {
	s.remember(c)
	resp := &hubapi.RedeemResponse{ConsentID: c.ID, Service: svc.ID, AAL: c.AAL, LoginMethod: c.LoginMethod, Subject: subject}
	redeemer, err := fedid.Connector(s.cfg.TrustDomain, caller.Org, caller.Name)
	if err != nil {
		return nil, err
	}
	for _, id := range c.Datasets {
		t, unavailable, err := s.ticketFor(c, subject, id, redeemer, "", recipientKey, kem, now)
		if err != nil {
			return nil, err
		}
		if unavailable != nil {
			resp.Unavailable = append(resp.Unavailable, *unavailable)
			continue
		}
		resp.Tickets = append(resp.Tickets, *t)
	}
	return resp, nil
}

// subjectOf is the national ID of a consent about to be redeemed.
func (s *Service) subjectOf(c *fsm.Consent) (string, error) {
	if len(c.SubjectSealed) > 0 {
		return s.cfg.Keys.OpenSubject(c.SubjectSealed, c.ID)
	}
	if !isHash(c.Subject) {
		return c.Subject, nil // recorded before the keyring, not yet redacted
	}
	return "", grantError(400, "invalid_grant", "consent %s can no longer be redeemed", c.ID)
}

func isHash(subject string) bool { return slices.Contains([]byte(subject), ':') }

// ticketFor makes the ticket of one dataset for redeemer; mode is the ticket's (ticket.ModeDownload or
// empty).
func (s *Service) ticketFor(c *fsm.Consent, subject, datasetID string, redeemer spiffeid.ID, mode string, recipientKey []byte, kem uint16, now time.Time) (*hubapi.RedeemedTicket, *hubapi.UnavailableDataset, error) {
	unavailable := func(status, reason string) (*hubapi.RedeemedTicket, *hubapi.UnavailableDataset, error) {
		return nil, &hubapi.UnavailableDataset{Dataset: datasetID, Status: status, Reason: reason}, nil
	}
	d, err := s.cfg.State.Dataset(datasetID)
	if err != nil {
		return nil, nil, err
	}
	if d == nil {
		return unavailable("unavailable", "the dataset no longer exists")
	}
	if d.Status == hubapi.DatasetMaintenance {
		return unavailable("unavailable", "the dataset is under maintenance")
	}
	if d.Status != hubapi.DatasetActive {
		return unavailable("unavailable", "the dataset is "+d.Status)
	}
	if mode == ticket.ModeDownload && hubapi.StageOf(d.Stage) == hubapi.StagePilot {
		// A citizen's own download of a dataset in its pilot: only its test subjects.
		if err := s.pilotAllows(&fsm.Consent{Datasets: []string{d.ID}}, subject); errors.Is(err, ErrNotPilotSubject) {
			return unavailable("unavailable", "the dataset is in its pilot and serves only the citizens on its application")
		} else if err != nil {
			return nil, nil, err
		}
	}
	// Every active connector of the dataset with a published key may serve the ticket: the subject is
	// sealed to each one's key. The first usable one is the ticket's dp; the SP tries the others when it
	// cannot get the dataset from it.
	td := s.cfg.TrustDomain
	tid := randomID(16)
	type servingDP struct {
		id     spiffeid.ID
		addr   string
		sealed []byte
	}
	var dps []servingDP
	reason := "the data provider's connector is not active"
	for _, name := range d.Connectors() {
		dp, err := s.cfg.State.Connector(d.DPOrg, name)
		if err != nil {
			return nil, nil, err
		}
		if dp == nil || dp.Status != hubapi.StatusActive {
			continue
		}
		if len(dp.HPKEKey) == 0 {
			reason = "the data provider's connector has not published its key yet"
			continue
		}
		dpKey, err := s.keys.Parse(dp.HPKEKEM, dp.HPKEKey)
		if err != nil {
			reason = "the data provider's key is unusable"
			continue
		}
		sealed, err := seal.Seal(dpKey, ticket.SubjectInfo(tid), []byte(subject))
		if err != nil {
			return nil, nil, err
		}
		id, _ := fedid.Connector(td, dp.Org, dp.Name)
		dps = append(dps, servingDP{id: id, addr: dp.Address, sealed: sealed})
	}
	if len(dps) == 0 {
		return unavailable("unavailable", reason)
	}
	var alt []ticket.Alternate
	var altDPs []hubapi.TicketDP
	for _, dp := range dps[1:] {
		alt = append(alt, ticket.Alternate{DP: dp.id.String(), SealedSubject: dp.sealed})
		altDPs = append(altDPs, hubapi.TicketDP{DP: dp.id.String(), Address: dp.addr})
	}
	life := ticket.MaxLife
	if d.Async {
		life = ticket.MaxAsyncLife
	}
	stage, err := s.stageOf(c, d)
	if err != nil {
		return nil, nil, err
	}
	hubID, _ := fedid.Hub(td, s.cfg.NodeID)
	claims := &ticket.Claims{
		ID: tid, ConsentID: c.ID, Dataset: d.ID, DP: dps[0].id.String(), Redeemer: redeemer.String(), Alternates: alt,
		SealedSubject: dps[0].sealed, RecipientKEM: kem, RecipientKey: recipientKey, Issuer: hubID.String(),
		IssuedAt: now.Unix(), ExpiresAt: now.Add(life).Unix(), Async: d.Async, Mode: mode, Stage: stage, Service: c.Service,
	}
	tok, err := s.cfg.Tickets.Sign(claims)
	if err != nil {
		return nil, nil, err
	}
	return &hubapi.RedeemedTicket{Dataset: d.ID, DP: dps[0].id.String(), Address: dps[0].addr, Ticket: tok, TicketID: tid,
		ContentType: d.ContentType, Async: d.Async, ExpiresAt: time.Unix(claims.ExpiresAt, 0).UTC(), Alternates: altDPs}, nil, nil
}

// stageOf is a ticket's stage claim: sandbox when the consent's service or the dataset is in its
// sandbox, so that the DP answers from synthetic data only; empty for real data.
func (s *Service) stageOf(c *fsm.Consent, d *hubapi.Dataset) (string, error) {
	if hubapi.StageOf(d.Stage) == hubapi.StageSandbox {
		return ticket.StageSandbox, nil
	}
	if c.Service == "" {
		return "", nil
	}
	svc, err := s.cfg.State.Service(c.Service)
	if err != nil || svc == nil {
		return "", err
	}
	if hubapi.StageOf(svc.Stage) == hubapi.StageSandbox {
		return ticket.StageSandbox, nil
	}
	return "", nil
}

// pkceVerifier checks RFC 7636's code_verifier: 43 to 128 unreserved characters.
func pkceVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '~' || c == '-') {
			return false
		}
	}
	return true
}

// Parties is what a receipt check needs of a consent, which never changes once recorded.
type Parties struct {
	Service  string
	Datasets []string
}

func (s *Service) remember(k *fsm.Consent) {
	s.parties.Put(k.ID, Parties{Service: k.Service, Datasets: k.Datasets})
}

// PartiesOf returns a consent's service and datasets, from memory when it can: every transfer brings two
// receipts for a consent redeemed a moment before, and reading the whole consent for each was a tenth of
// the hub's receipt work. ok is false when there is no such consent.
func (s *Service) PartiesOf(ctx context.Context, id string) (p Parties, ok bool, err error) {
	if p, ok := s.parties.Get(id); ok {
		return p, true, nil
	}
	k, err := s.cfg.State.Consent(id)
	if err == nil && k == nil && s.cfg.Sync != nil {
		if err = s.cfg.Sync(ctx); err == nil {
			k, err = s.cfg.State.Consent(id)
		}
	}
	if err != nil || k == nil {
		return Parties{}, false, err
	}
	s.remember(k)
	return Parties{Service: k.Service, Datasets: k.Datasets}, true, nil
}

// Upkeep clears the sealed IDs of consents that can no longer be redeemed, and redacts the IDs consents of
// earlier releases hold in clear, now and then: the leader runs it.
func (s *Service) Upkeep(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.cfg.Apply(&fsm.ConsentForget{Now: time.Now()}); err != nil {
			s.cfg.Log.Warn("clear sealed national IDs of spent consents", "err", err)
		}
		if err := s.cfg.Apply(&fsm.CounterForget{Now: time.Now()}); err != nil {
			s.cfg.Log.Warn("clear sealed agents of spent counter codes", "err", err)
		}
		if err := s.redact(); err != nil {
			s.cfg.Log.Warn("redact national IDs recorded in clear", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) redact() error {
	for {
		legacy, err := s.cfg.State.Unredacted(100)
		if err != nil || len(legacy) == 0 {
			return err
		}
		for id, subject := range legacy {
			h, err := s.cfg.Keys.LookupHash(subject)
			if err != nil {
				return err
			}
			if err := s.cfg.Apply(&fsm.ConsentRedact{ID: id, Subject: h, Was: subject}); err != nil {
				return err
			}
		}
	}
}
