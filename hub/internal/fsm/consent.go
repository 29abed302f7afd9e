package fsm

import (
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Consent states. A consent is single use: pending, then granted, then used; or it ends denied, expired
// (not decided or not redeemed in time) or revoked (by the citizen, before use).
const (
	ConsentPending = "pending"
	ConsentGranted = "granted"
	ConsentUsed    = "used"
	ConsentDenied  = "denied"
	ConsentExpired = "expired"
	ConsentRevoked = "revoked"
)

// Consent is a citizen's agreement to one service's request.
type Consent struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	// Subject is the keyed hash of the citizen's national ID (keyring.LookupHash): the state keeps no
	// national ID in clear. Consents recorded by releases before the keyring hold the ID itself until the
	// leader redacts them (ConsentRedact).
	Subject string `json:"subject"`
	// SubjectSealed is the national ID sealed under the keyring's subject key, kept only while the consent
	// can still be redeemed: the tickets must carry it to the data providers. Cleared on use, revocation
	// and expiry.
	SubjectSealed []byte   `json:"subject_sealed,omitempty"`
	Datasets      []string `json:"datasets"`
	TermsVersion  string   `json:"terms_version"`
	AAL           int      `json:"aal"`
	LoginMethod   string   `json:"login_method"`
	RedirectURI   string   `json:"redirect_uri"`
	CodeChallenge string   `json:"code_challenge"`
	// OAuthState is the client's state parameter, returned with the code.
	OAuthState string    `json:"oauth_state"`
	State      string    `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	// ExpiresAt ends a pending consent that nobody decides.
	ExpiresAt     time.Time `json:"expires_at"`
	DecidedAt     time.Time `json:"decided_at"`
	UsedAt        time.Time `json:"used_at"`
	CodeExpiresAt time.Time `json:"code_expires_at"`
	// Mode is hubapi.ModeCounter for a counter consent (counter.go); empty for the online mode, which is
	// what consents recorded before the counter mode hold.
	Mode string `json:"mode,omitempty"`
}

// EffectiveState is the state with time applied: a pending consent past its expiry, or a granted one
// whose code has expired unredeemed, is expired.
func (c *Consent) EffectiveState(now time.Time) string {
	switch {
	case c.State == ConsentPending && !now.Before(c.ExpiresAt):
		return ConsentExpired
	case c.State == ConsentGranted && !now.Before(c.CodeExpiresAt):
		return ConsentExpired
	}
	return c.State
}

// checkConsent refuses a consent request without the fields every consent has.
func checkConsent(k Consent) Result {
	if k.ID == "" || k.Service == "" || k.Subject == "" || len(k.Datasets) == 0 || k.CodeChallenge == "" || k.RedirectURI == "" {
		return refuse(Invalid, "consent: id, service, subject, datasets, code challenge and redirect URI are required")
	}
	return Result{}
}

func applyConsentRecord(tx *sql.Tx, c *ConsentRecord) (Result, bool, error) {
	k := c.Consent
	if res := checkConsent(k); res.Code != OK {
		return res, false, nil
	}
	if !c.Now.Before(k.ExpiresAt) {
		return refuse(Gone, "consent %s: the request expired before the decision", k.ID), false, nil
	}
	state := ConsentDenied
	if c.Approve {
		if c.CodeHash == "" || !c.CodeExpiresAt.After(c.Now) {
			return refuse(Invalid, "consent %s: approval needs a code", k.ID), false, nil
		}
		state = ConsentGranted
	}
	var decided string
	switch err := tx.QueryRow(`SELECT state FROM consents WHERE id = ?`, k.ID).Scan(&decided); {
	case err == nil:
		return refuse(Conflict, "consent %s was already decided (%s)", k.ID, decided), false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Result{}, false, err
	}
	k.State, k.DecidedAt = state, c.Now
	codeHash := ""
	if c.Approve {
		codeHash, k.CodeExpiresAt = c.CodeHash, c.CodeExpiresAt
	}
	return Result{}, false, insertConsent(tx, k, codeHash)
}

func applyConsentCreate(tx *sql.Tx, c *ConsentCreate) (Result, bool, error) {
	k := c.Consent
	if res := checkConsent(k); res.Code != OK {
		return res, false, nil
	}
	k.State, k.DecidedAt, k.CodeExpiresAt = ConsentPending, time.Time{}, time.Time{}
	return Result{}, false, insertConsent(tx, k, "")
}

// insertConsent stores a new consent in its state; codeHash is empty when it holds no code.
func insertConsent(tx *sql.Tx, k Consent, codeHash string) error {
	ds, err := json.Marshal(k.Datasets)
	if err != nil {
		return err
	}
	var sealed []byte
	if k.State == ConsentGranted {
		sealed = k.SubjectSealed
	}
	_, err = tx.Exec(`INSERT INTO consents(id, service, subject, datasets, terms_version, aal, login_method, redirect_uri, code_challenge, oauth_state, state, created_at, expires_at, decided_at, code_hash, code_expires_at, subject_sealed, mode)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, k.ID, k.Service, k.Subject, string(ds), k.TermsVersion, k.AAL, k.LoginMethod, k.RedirectURI,
		k.CodeChallenge, k.OAuthState, k.State, ms(k.CreatedAt), ms(k.ExpiresAt), msOrZero(k.DecidedAt),
		sql.NullString{String: codeHash, Valid: codeHash != ""}, msOrZero(k.CodeExpiresAt), sealed, k.Mode)
	return err
}

// msOrZero is ms, with 0 for a time not set (the columns' "never").
func msOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return ms(t)
}

func consentByID(q queryRower, id string) (*Consent, error) {
	return scanConsent(q.QueryRow(`SELECT `+consentCols+` FROM consents WHERE id = ?`, id))
}

const consentCols = `id, service, subject, datasets, terms_version, aal, login_method, redirect_uri, code_challenge, oauth_state, state, created_at, expires_at, decided_at, used_at, code_expires_at, subject_sealed, mode`

type scanner interface{ Scan(dest ...any) error }

func scanConsent(row scanner) (*Consent, error) {
	var k Consent
	var ds string
	var created, expires, decided, used, codeExp int64
	err := row.Scan(&k.ID, &k.Service, &k.Subject, &ds, &k.TermsVersion, &k.AAL, &k.LoginMethod, &k.RedirectURI, &k.CodeChallenge, &k.OAuthState, &k.State,
		&created, &expires, &decided, &used, &codeExp, &k.SubjectSealed, &k.Mode)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(ds), &k.Datasets); err != nil {
		return nil, err
	}
	k.CreatedAt, k.ExpiresAt = fromMS(created), fromMS(expires)
	if decided > 0 {
		k.DecidedAt = fromMS(decided)
	}
	if used > 0 {
		k.UsedAt = fromMS(used)
	}
	if codeExp > 0 {
		k.CodeExpiresAt = fromMS(codeExp)
	}
	return &k, nil
}

func applyConsentDecide(tx *sql.Tx, c *ConsentDecide) (Result, bool, error) {
	k, err := consentByID(tx, c.ID)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case k == nil:
		return refuse(NotFound, "consent %s does not exist", c.ID), false, nil
	case k.Subject != c.Subject:
		return refuse(Forbidden, "consent %s belongs to another citizen", c.ID), false, nil
	case k.EffectiveState(c.Now) != ConsentPending:
		return refuse(Conflict, "consent %s is %s, not pending", c.ID, k.EffectiveState(c.Now)), false, nil
	}
	if !c.Approve {
		_, err = tx.Exec(`UPDATE consents SET state = ?, decided_at = ? WHERE id = ?`, ConsentDenied, ms(c.Now), c.ID)
		return Result{}, false, err
	}
	if c.CodeHash == "" || !c.CodeExpiresAt.After(c.Now) {
		return refuse(Invalid, "consent %s: approval needs a code", c.ID), false, nil
	}
	_, err = tx.Exec(`UPDATE consents SET state = ?, decided_at = ?, code_hash = ?, code_expires_at = ? WHERE id = ?`,
		ConsentGranted, ms(c.Now), c.CodeHash, ms(c.CodeExpiresAt), c.ID)
	return Result{}, false, err
}

func applyConsentUse(tx *sql.Tx, c *ConsentUse) (Result, bool, error) {
	k, err := consentByID(tx, c.ID)
	if err != nil {
		return Result{}, false, err
	}
	if k == nil {
		return refuse(NotFound, "consent %s does not exist", c.ID), false, nil
	}
	if st := k.EffectiveState(c.Now); st != ConsentGranted {
		return refuse(Gone, "consent is %s; a consent is redeemed once", st), false, nil
	}
	if _, err = tx.Exec(`UPDATE consents SET state = ?, used_at = ?, subject_sealed = NULL WHERE id = ?`, ConsentUsed, ms(c.Now), c.ID); err != nil {
		return Result{}, false, err
	}
	return Result{}, false, enqueueUse(tx, c.ID, k.Subject, c.Now)
}

func applyConsentRevoke(tx *sql.Tx, c *ConsentRevoke) (Result, bool, error) {
	k, err := consentByID(tx, c.ID)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case k == nil:
		return refuse(NotFound, "consent %s does not exist", c.ID), false, nil
	case k.Subject != c.Subject:
		return refuse(Forbidden, "consent %s belongs to another citizen", c.ID), false, nil
	}
	if st := k.EffectiveState(c.Now); st != ConsentPending && st != ConsentGranted {
		return refuse(Conflict, "consent is %s and can no longer be revoked", st), false, nil
	}
	_, err = tx.Exec(`UPDATE consents SET state = ?, decided_at = ?, subject_sealed = NULL WHERE id = ?`, ConsentRevoked, ms(c.Now), c.ID)
	return Result{}, false, err
}

// Consent finds a consent by ID; nil if there is none.
func (f *FSM) Consent(id string) (*Consent, error) { return consentByID(f.db, id) }

// ConsentByCode finds a consent by the hash of its authorization code; nil if there is none.
func (f *FSM) ConsentByCode(codeHash string) (*Consent, error) {
	return scanConsent(f.db.QueryRow(`SELECT `+consentCols+` FROM consents WHERE code_hash = ?`, codeHash))
}

// ConsentsOf lists a citizen's consents, newest first: those stored under any of subjects (the keyed
// hashes of the citizen's ID under each lookup key, and for consents not yet redacted the ID itself).
func (f *FSM) ConsentsOf(subjects []string, limit int) ([]Consent, error) {
	if len(subjects) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(subjects)+1)
	for _, s := range subjects {
		args = append(args, s)
	}
	args = append(args, limit)
	rows, err := f.db.Query(`SELECT `+consentCols+` FROM consents WHERE subject IN (?`+strings.Repeat(", ?", len(subjects)-1)+`) ORDER BY created_at DESC LIMIT ?`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Consent
	for rows.Next() {
		k, err := scanConsent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *k)
	}
	return out, rows.Err()
}

// Receipt is a connector's report of one transfer: metadata, never content.
type Receipt struct {
	TicketID    string    `json:"ticket_id"`
	Role        string    `json:"role"`
	ConsentID   string    `json:"consent_id"`
	Dataset     string    `json:"dataset"`
	Reporter    string    `json:"reporter"`
	Counterpart string    `json:"counterpart"`
	Outcome     string    `json:"outcome"`
	Bytes       int64     `json:"bytes"`
	At          time.Time `json:"at"`
	RecordedAt  time.Time `json:"recorded_at"`
}

// CheckReceipt says what is wrong with a receipt's fields, or nil.
func CheckReceipt(r Receipt) error { return checkReceipt(r).Err() }

func checkReceipt(r Receipt) Result {
	if r.TicketID == "" || r.ConsentID == "" || r.Dataset == "" || (r.Role != "dp" && r.Role != "sp") {
		return refuse(Invalid, "receipt: ticket_id, consent_id, dataset and role (dp or sp) are required")
	}
	switch r.Outcome {
	case "delivered", "no_record", "pending", "failed", "refused":
		return Result{}
	}
	return refuse(Invalid, "receipt: outcome %q is not delivered, no_record, pending, failed or refused", r.Outcome)
}

func applyReceiptAdd(tx *sql.Tx, c *ReceiptAdd) (Result, bool, error) {
	return addReceipt(tx, c.Receipt)
}

func applyReceiptsAdd(tx *sql.Tx, c *ReceiptsAdd) (Result, bool, error) {
	for _, r := range c.Receipts {
		if _, _, err := addReceipt(tx, r); err != nil {
			return Result{}, false, err
		}
	}
	return Result{}, false, nil
}

func addReceipt(tx *sql.Tx, r Receipt) (Result, bool, error) {
	if res := checkReceipt(r); res.Code != OK {
		return res, false, nil
	}
	var one int
	err := tx.QueryRow(`SELECT 1 FROM consents WHERE id = ?`, r.ConsentID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return refuse(NotFound, "receipt: consent %s does not exist", r.ConsentID), false, nil
	}
	if err != nil {
		return Result{}, false, err
	}
	// A receipt is retried until accepted, so the same report may come twice, and reports of one ticket
	// (pending, then delivered) may arrive out of order: a later report replaces an earlier one, a final
	// outcome is never replaced by "pending", and a transfer that happened (delivered, no record) is never
	// replaced by a refusal (connectors do not report replays; this keeps an older one honest too). With
	// several connectors per dataset the report that stays names the one that served: a DP connector whose
	// agency failed reports "failed" and the SP's next connector "delivered", in either order and by clocks
	// that may differ, so a DP's failure never replaces a DP's delivery (one connector alone cannot report
	// both of one ticket).
	_, err = tx.Exec(`INSERT INTO receipts(ticket_id, role, consent_id, dataset, reporter, counterpart, outcome, bytes, at, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(ticket_id, role) DO UPDATE SET outcome = excluded.outcome, bytes = excluded.bytes, at = excluded.at, reporter = excluded.reporter
		WHERE excluded.outcome != 'pending' AND (receipts.outcome = 'pending' OR excluded.at >= receipts.at)
		AND NOT (excluded.outcome = 'refused' AND receipts.outcome IN ('delivered', 'no_record'))
		AND NOT (excluded.role = 'dp' AND excluded.outcome = 'failed' AND receipts.outcome IN ('delivered', 'no_record'))`,
		r.TicketID, r.Role, r.ConsentID, r.Dataset, r.Reporter, r.Counterpart, r.Outcome, r.Bytes, ms(r.At), ms(r.RecordedAt))
	return Result{}, false, err
}

// Receipts lists the receipts of a consent.
func (f *FSM) Receipts(consentID string) ([]Receipt, error) {
	rows, err := f.db.Query(`SELECT ticket_id, role, consent_id, dataset, reporter, counterpart, outcome, bytes, at, recorded_at FROM receipts WHERE consent_id = ? ORDER BY dataset, role`, consentID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		var at, rec int64
		if err := rows.Scan(&r.TicketID, &r.Role, &r.ConsentID, &r.Dataset, &r.Reporter, &r.Counterpart, &r.Outcome, &r.Bytes, &at, &rec); err != nil {
			return nil, err
		}
		r.At, r.RecordedAt = fromMS(at), fromMS(rec)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ConsentForget clears the sealed national ID of every consent that can no longer be redeemed at Now:
// used, revoked, denied, or whose code expired unused. Afterwards only the keyed hash remains.
type ConsentForget struct {
	Now time.Time `json:"now"`
}

func (c *ConsentForget) Validate() error {
	if c.Now.IsZero() {
		return errors.New("consent forget: now required")
	}
	return nil
}

func applyConsentForget(tx *sql.Tx, c *ConsentForget) (Result, bool, error) {
	_, err := tx.Exec(`UPDATE consents SET subject_sealed = NULL WHERE subject_sealed IS NOT NULL AND (state != ? OR code_expires_at <= ?)`,
		ConsentGranted, ms(c.Now))
	return Result{}, false, err
}

// ConsentRedact replaces the national ID a consent recorded by an earlier release holds in clear with its
// keyed hash.
type ConsentRedact struct {
	ID      string `json:"id"`
	Subject string `json:"subject"` // the keyed hash
	// Was is the value it replaces, so that a redaction proposed twice changes nothing the second time.
	Was string `json:"was"`
}

func (c *ConsentRedact) Validate() error {
	if c.ID == "" || c.Subject == "" || c.Was == "" || c.Subject == c.Was {
		return errors.New("consent redaction: id, the hash and the value it replaces are required")
	}
	return nil
}

func applyConsentRedact(tx *sql.Tx, c *ConsentRedact) (Result, bool, error) {
	_, err := tx.Exec(`UPDATE consents SET subject = ? WHERE id = ? AND subject = ?`, c.Subject, c.ID, c.Was)
	return Result{}, false, err
}

// Unredacted lists up to limit consents whose subject is not a keyed hash yet (recorded by a release
// before the keyring): their ID and subject.
func (f *FSM) Unredacted(limit int) (map[string]string, error) {
	rows, err := f.db.Query(`SELECT id, subject FROM consents WHERE instr(subject, ':') = 0 LIMIT ?`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, sub string
		if err := rows.Scan(&id, &sub); err != nil {
			return nil, err
		}
		out[id] = sub
	}
	return out, rows.Err()
}
