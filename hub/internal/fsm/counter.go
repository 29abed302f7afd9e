package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Counter verification (臨櫃核驗): a counter consent is a consent row of mode counter, granted when it is
// recorded, whose code is kept in counter_codes as a keyed hash (never the code: a copy of the state, a
// snapshot or a backup does not hold live codes), with the agent the citizen named sealed. Its redemption
// spends it as the online one does (ConsentUse), and records which SP terminal it was presented at.

// CounterCode is the counter side of a counter consent.
type CounterCode struct {
	ConsentID string `json:"consent_id"`
	// CodeHash is the keyed hash of the code (keyring.CodeHash).
	CodeHash string `json:"code_hash"`
	// AgentSealed is the agent (代辦人) the citizen named, sealed under the keyring's subject key; nil when
	// the citizen presents the code themselves.
	AgentSealed []byte `json:"agent_sealed,omitempty"`
	// OTPChallenge is the one-time code last sent to the citizen for this redemption, when the service
	// requires one.
	OTPChallenge string `json:"otp_challenge,omitempty"`
	// Terminal and Redeemer are where the code was redeemed: the counter terminal the SP connector named, and
	// the connector's SPIFFE ID.
	Terminal string `json:"terminal,omitempty"`
	Redeemer string `json:"redeemer,omitempty"`
}

// CounterRecord records a citizen's counter consent with its code, granted at once: the citizen agreed on
// the portal, and the code is what they take to the counter. Consent.CodeExpiresAt ends the code.
type CounterRecord struct {
	Consent     Consent   `json:"consent"`
	CodeHash    string    `json:"code_hash"`
	AgentSealed []byte    `json:"agent_sealed,omitempty"`
	Now         time.Time `json:"now"`
}

// CounterOTPSent records the one-time code challenge sent to the citizen for a counter redemption.
type CounterOTPSent struct {
	ConsentID string `json:"consent_id"`
	Challenge string `json:"challenge"`
}

// CounterUse spends a counter consent at a terminal, as ConsentUse spends an online one.
type CounterUse struct {
	ConsentID string    `json:"consent_id"`
	Terminal  string    `json:"terminal"`
	Redeemer  string    `json:"redeemer"`
	Now       time.Time `json:"now"`
}

// MaxTerminalLen bounds the terminal name an SP connector gives.
const MaxTerminalLen = 100

func (c *CounterRecord) Validate() error {
	k := c.Consent
	switch {
	case k.ID == "" || k.Service == "" || k.Subject == "" || len(k.Datasets) == 0:
		return errors.New("counter consent: id, service, subject and datasets are required")
	case k.Mode != hubapi.ModeCounter:
		return fmt.Errorf("counter consent %s: mode is %q, not counter", k.ID, k.Mode)
	case len(k.SubjectSealed) == 0:
		return fmt.Errorf("counter consent %s: the sealed national ID is required", k.ID)
	case !k.CodeExpiresAt.After(c.Now):
		return fmt.Errorf("counter consent %s: the code would expire at once", k.ID)
	}
	return checkHash("code_hash", c.CodeHash)
}

func (c *CounterOTPSent) Validate() error {
	if c.ConsentID == "" || c.Challenge == "" {
		return errors.New("counter one-time code: consent id and challenge are required")
	}
	return nil
}

func (c *CounterUse) Validate() error {
	if c.ConsentID == "" || c.Redeemer == "" || c.Terminal == "" || len(c.Terminal) > MaxTerminalLen {
		return fmt.Errorf("counter use: consent id, redeemer and a terminal of 1 to %d bytes are required", MaxTerminalLen)
	}
	return nil
}

func applyCounterRecord(tx *sql.Tx, c *CounterRecord) (Result, bool, error) {
	k := c.Consent
	var one int
	switch err := tx.QueryRow(`SELECT 1 FROM consents WHERE id = ?`, k.ID).Scan(&one); {
	case err == nil:
		return refuse(Conflict, "consent %s exists", k.ID), false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Result{}, false, err
	}
	switch err := tx.QueryRow(`SELECT 1 FROM counter_codes WHERE code_hash = ?`, c.CodeHash).Scan(&one); {
	case err == nil:
		// Codes are drawn at random from 30^8; the caller draws another.
		return refuse(Conflict, "counter code taken"), false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Result{}, false, err
	}
	k.State, k.DecidedAt, k.ExpiresAt = ConsentGranted, c.Now, k.CodeExpiresAt
	if k.CreatedAt.IsZero() {
		k.CreatedAt = c.Now
	}
	if err := insertConsent(tx, k, ""); err != nil {
		return Result{}, false, err
	}
	_, err := tx.Exec(`INSERT INTO counter_codes(consent_id, code_hash, agent_sealed) VALUES (?, ?, ?)`, k.ID, c.CodeHash, c.AgentSealed)
	return Result{}, false, err
}

func applyCounterOTPSent(tx *sql.Tx, c *CounterOTPSent) (Result, bool, error) {
	res, err := tx.Exec(`UPDATE counter_codes SET otp_challenge = ? WHERE consent_id = ?`, c.Challenge, c.ConsentID)
	if err != nil {
		return Result{}, false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return refuse(NotFound, "counter consent %s does not exist", c.ConsentID), false, nil
	}
	return Result{}, false, nil
}

func applyCounterUse(tx *sql.Tx, c *CounterUse) (Result, bool, error) {
	var one int
	switch err := tx.QueryRow(`SELECT 1 FROM counter_codes WHERE consent_id = ?`, c.ConsentID).Scan(&one); {
	case errors.Is(err, sql.ErrNoRows):
		return refuse(NotFound, "counter consent %s does not exist", c.ConsentID), false, nil
	case err != nil:
		return Result{}, false, err
	}
	// The use itself is the online one's, with all it does besides (the sealed ID cleared, the notice queued).
	if res, dir, err := applyConsentUse(tx, &ConsentUse{ID: c.ConsentID, Now: c.Now}); err != nil || res.Code != OK {
		return res, dir, err
	}
	// Agent cleared with the use: the SP connector has it in the answer, and the hub no longer needs it.
	_, err := tx.Exec(`UPDATE counter_codes SET terminal = ?, redeemer = ?, agent_sealed = NULL WHERE consent_id = ?`, c.Terminal, c.Redeemer, c.ConsentID)
	return Result{}, false, err
}

const counterCols = `consent_id, code_hash, agent_sealed, otp_challenge, terminal, redeemer`

func scanCounter(row scanner) (*CounterCode, error) {
	var k CounterCode
	err := row.Scan(&k.ConsentID, &k.CodeHash, &k.AgentSealed, &k.OTPChallenge, &k.Terminal, &k.Redeemer)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &k, nil
}

// CounterByCode finds a counter consent by the keyed hashes of its code (one per lookup key, as
// keyring.CodeHashes gives them); nil, nil if there is none.
func (f *FSM) CounterByCode(hashes []string) (*CounterCode, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	args := make([]any, len(hashes))
	for i, h := range hashes {
		args[i] = h
	}
	return scanCounter(f.db.QueryRow(`SELECT `+counterCols+` FROM counter_codes WHERE code_hash IN (?`+strings.Repeat(", ?", len(hashes)-1)+`)`, args...))
}

// Counter finds the counter side of a consent; nil, nil if it has none.
func (f *FSM) Counter(consentID string) (*CounterCode, error) {
	return scanCounter(f.db.QueryRow(`SELECT `+counterCols+` FROM counter_codes WHERE consent_id = ?`, consentID))
}

// CounterForget clears the sealed agents of counter consents that can no longer be redeemed at Now
// (cancelled, or expired unused), as ConsentForget clears the citizens' sealed IDs.
type CounterForget struct {
	Now time.Time `json:"now"`
}

func (c *CounterForget) Validate() error {
	if c.Now.IsZero() {
		return errors.New("counter forget: now required")
	}
	return nil
}

func applyCounterForget(tx *sql.Tx, c *CounterForget) (Result, bool, error) {
	_, err := tx.Exec(`UPDATE counter_codes SET agent_sealed = NULL WHERE agent_sealed IS NOT NULL AND consent_id IN
		(SELECT id FROM consents WHERE mode = ? AND (state != ? OR code_expires_at <= ?))`, hubapi.ModeCounter, ConsentGranted, ms(c.Now))
	return Result{}, false, err
}
