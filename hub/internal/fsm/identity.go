package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The login methods' replicated state: passkeys, one-time-code challenges, failure counters for lockouts,
// the citizens' verified contacts, and which methods a citizen has used before. Citizens appear only as
// keyed hashes (keyring.LookupHash); where a method must give the national ID back (a passkey login names
// no one until the credential is found), it is sealed under the keyring's subject key.

// Passkey is one registered WebAuthn credential.
type Passkey struct {
	ID                []byte    `json:"id"`
	SubjectHash       string    `json:"subject_hash"`
	SubjectSealed     []byte    `json:"subject_sealed"`
	UserHandle        []byte    `json:"user_handle"`
	Name              string    `json:"name"`
	PublicKey         []byte    `json:"public_key"`
	AttestationType   string    `json:"attestation_type"`
	AttestationFormat string    `json:"attestation_format"`
	AAGUID            []byte    `json:"aaguid"`
	SignCount         uint32    `json:"sign_count"`
	BackupEligible    bool      `json:"backup_eligible"`
	BackupState       bool      `json:"backup_state"`
	Transports        []string  `json:"transports"`
	CreatedAt         time.Time `json:"created_at"`
	LastUsedAt        time.Time `json:"last_used_at"`
}

// PasskeyAdd registers a passkey; an id already stored is a conflict.
type PasskeyAdd struct {
	Passkey Passkey `json:"passkey"`
}

// PasskeyUse records a login: the counter must rise unless it is zero on both sides (synced passkeys),
// or the authenticator was cloned.
type PasskeyUse struct {
	ID          []byte    `json:"id"`
	SignCount   uint32    `json:"sign_count"`
	BackupState bool      `json:"backup_state"`
	At          time.Time `json:"at"`
}

// PasskeyRemove deletes one of the citizen's passkeys.
type PasskeyRemove struct {
	SubjectHash string `json:"subject_hash"`
	ID          []byte `json:"id"`
}

// OTPChallenge is a one-time code sent, kept as a keyed hash of the code.
type OTPChallenge struct {
	ID          string    `json:"id"`
	SubjectHash string    `json:"subject_hash"`
	Purpose     string    `json:"purpose"`
	Channel     string    `json:"channel"`
	CodeHash    []byte    `json:"code_hash"`
	Tries       int       `json:"tries"`
	MaxTries    int       `json:"max_tries"`
	ExpiresAt   time.Time `json:"expires_at"`
	Used        bool      `json:"used"`
}

// OTPPut records a challenge.
type OTPPut struct {
	Challenge OTPChallenge `json:"challenge"`
}

// OTPTry counts one try; a right one also spends the challenge.
type OTPTry struct {
	ID      string    `json:"id"`
	Success bool      `json:"success"`
	At      time.Time `json:"at"`
}

// ThrottleFail counts a failed login against a key (a keyed hash of a subject, or of a client address):
// Max failures within Window lock the key for Lock.
type ThrottleFail struct {
	Key    string        `json:"key"`
	Max    int           `json:"max"`
	Window time.Duration `json:"window"`
	Lock   time.Duration `json:"lock"`
	At     time.Time     `json:"at"`
}

// ThrottleClear forgets a key's failures after a successful login.
type ThrottleClear struct {
	Keys []string `json:"keys"`
}

// Throttle is a key's failures.
type Throttle struct {
	Failures    int
	WindowStart time.Time
	LockedUntil time.Time
}

// Contact is how a citizen is reached for one-time codes and notifications: sealed, verified addresses.
type Contact struct {
	SubjectHash     string    `json:"subject_hash"`
	EmailSealed     []byte    `json:"email_sealed,omitempty"`
	EmailVerifiedAt time.Time `json:"email_verified_at,omitzero"`
	PhoneSealed     []byte    `json:"phone_sealed,omitempty"`
	PhoneVerifiedAt time.Time `json:"phone_verified_at,omitzero"`
	Lang            string    `json:"lang"`
	NotifyEmail     bool      `json:"notify_email"`
	NotifySMS       bool      `json:"notify_sms"`
	UpdatedAt       time.Time `json:"updated_at"`
}

// ContactSet replaces a citizen's contact record.
type ContactSet struct {
	Contact Contact `json:"contact"`
}

// MethodUsed records that a citizen has logged in with a method: a first login with two documents needs a
// second factor, as on the real platform.
type MethodUsed struct {
	SubjectHash string    `json:"subject_hash"`
	Method      string    `json:"method"`
	At          time.Time `json:"at"`
}

// IdentityPurge drops spent or expired challenges and stale failure counters.
type IdentityPurge struct {
	Before time.Time `json:"before"`
}

func checkHash(field, h string) error {
	if h == "" || len(h) > 200 {
		return fmt.Errorf("%s: required, at most 200 bytes", field)
	}
	return nil
}

func (c *PasskeyAdd) Validate() error {
	p := c.Passkey
	switch {
	case len(p.ID) == 0 || len(p.ID) > 1023:
		return errors.New("passkey.id: 1 to 1023 bytes")
	case len(p.SubjectSealed) == 0, len(p.PublicKey) == 0, len(p.UserHandle) == 0:
		return errors.New("passkey: subject_sealed, public_key and user_handle are required")
	case len(p.Name) > 100:
		return errors.New("passkey.name: at most 100 bytes")
	}
	return checkHash("passkey.subject_hash", p.SubjectHash)
}

func (c *PasskeyUse) Validate() error {
	if len(c.ID) == 0 || len(c.ID) > 1023 {
		return errors.New("id: 1 to 1023 bytes")
	}
	return nil
}

func (c *PasskeyRemove) Validate() error {
	if len(c.ID) == 0 {
		return errors.New("id: required")
	}
	return checkHash("subject_hash", c.SubjectHash)
}

func (c *OTPPut) Validate() error {
	ch := c.Challenge
	switch {
	case ch.ID == "" || len(ch.ID) > 64:
		return errors.New("challenge.id: 1 to 64 bytes")
	case len(ch.CodeHash) == 0:
		return errors.New("challenge.code_hash: required")
	case ch.MaxTries < 1:
		return errors.New("challenge.max_tries: at least 1")
	case ch.ExpiresAt.IsZero():
		return errors.New("challenge.expires_at: required")
	}
	return checkHash("challenge.subject_hash", ch.SubjectHash)
}

func (c *OTPTry) Validate() error {
	if c.ID == "" {
		return errors.New("id: required")
	}
	return nil
}

func (c *ThrottleFail) Validate() error {
	if c.Max < 1 || c.Window <= 0 || c.Lock <= 0 {
		return errors.New("max, window and lock must be positive")
	}
	return checkHash("key", c.Key)
}

func (c *ThrottleClear) Validate() error {
	for i, k := range c.Keys {
		if err := checkHash(fmt.Sprintf("keys[%d]", i), k); err != nil {
			return err
		}
	}
	return nil
}

func (c *ContactSet) Validate() error {
	if l := c.Contact.Lang; l != "" && l != "zh-TW" && l != "en" {
		return fmt.Errorf("contact.lang: %q is not zh-TW or en", l)
	}
	return checkHash("contact.subject_hash", c.Contact.SubjectHash)
}

func (c *MethodUsed) Validate() error {
	if c.Method == "" || len(c.Method) > 32 {
		return errors.New("method: 1 to 32 bytes")
	}
	return checkHash("subject_hash", c.SubjectHash)
}

func (c *IdentityPurge) Validate() error {
	if c.Before.IsZero() {
		return errors.New("before: required")
	}
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func applyPasskeyAdd(tx *sql.Tx, c *PasskeyAdd) (Result, bool, error) {
	p := c.Passkey
	var n int
	if err := tx.QueryRow(`SELECT count(*) FROM passkeys WHERE id = ?`, p.ID).Scan(&n); err != nil {
		return Result{}, false, err
	}
	if n > 0 {
		return refuse(Conflict, "this passkey is already registered"), false, nil
	}
	_, err := tx.Exec(`INSERT INTO passkeys(id, subject_hash, subject_sealed, user_handle, name, public_key, attestation_type, attestation_format,
		aaguid, sign_count, backup_eligible, backup_state, transports, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.SubjectHash, p.SubjectSealed, p.UserHandle, p.Name, p.PublicKey, p.AttestationType, p.AttestationFormat, p.AAGUID, p.SignCount,
		b2i(p.BackupEligible), b2i(p.BackupState), strings.Join(p.Transports, ","), ms(p.CreatedAt), msOrZero(p.LastUsedAt))
	return Result{}, false, err
}

func applyPasskeyUse(tx *sql.Tx, c *PasskeyUse) (Result, bool, error) {
	var stored uint32
	if err := tx.QueryRow(`SELECT sign_count FROM passkeys WHERE id = ?`, c.ID).Scan(&stored); errors.Is(err, sql.ErrNoRows) {
		return refuse(NotFound, "no such passkey"), false, nil
	} else if err != nil {
		return Result{}, false, err
	}
	if (stored != 0 || c.SignCount != 0) && c.SignCount <= stored {
		return refuse(Conflict, "the passkey's counter did not rise (%d after %d): it may have been cloned", c.SignCount, stored), false, nil
	}
	_, err := tx.Exec(`UPDATE passkeys SET sign_count = ?, backup_state = ?, last_used_at = ? WHERE id = ?`, c.SignCount, b2i(c.BackupState), ms(c.At), c.ID)
	return Result{}, false, err
}

func applyPasskeyRemove(tx *sql.Tx, c *PasskeyRemove) (Result, bool, error) {
	_, err := tx.Exec(`DELETE FROM passkeys WHERE subject_hash = ? AND id = ?`, c.SubjectHash, c.ID)
	return Result{}, false, err
}

func applyOTPPut(tx *sql.Tx, c *OTPPut) (Result, bool, error) {
	ch := c.Challenge
	_, err := tx.Exec(`INSERT INTO otp_challenges(id, subject_hash, purpose, channel, code_hash, tries, max_tries, expires_at, used)
		VALUES (?, ?, ?, ?, ?, 0, ?, ?, 0)`, ch.ID, ch.SubjectHash, ch.Purpose, ch.Channel, ch.CodeHash, ch.MaxTries, ms(ch.ExpiresAt))
	if err != nil && strings.Contains(err.Error(), "UNIQUE") {
		return refuse(Conflict, "challenge %s exists", ch.ID), false, nil
	}
	return Result{}, false, err
}

func applyOTPTry(tx *sql.Tx, c *OTPTry) (Result, bool, error) {
	res, err := tx.Exec(`UPDATE otp_challenges SET tries = tries + 1, used = used OR ? WHERE id = ?`, b2i(c.Success), c.ID)
	if err != nil {
		return Result{}, false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return refuse(NotFound, "no such challenge"), false, nil
	}
	return Result{}, false, nil
}

func applyThrottleFail(tx *sql.Tx, c *ThrottleFail) (Result, bool, error) {
	var t Throttle
	var start, locked int64
	err := tx.QueryRow(`SELECT failures, window_start, locked_until FROM throttle WHERE key = ?`, c.Key).Scan(&t.Failures, &start, &locked)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Result{}, false, err
	}
	at := ms(c.At)
	if errors.Is(err, sql.ErrNoRows) || at-start >= c.Window.Milliseconds() {
		t.Failures, start = 0, at
	}
	t.Failures++
	if t.Failures >= c.Max {
		locked = at + c.Lock.Milliseconds()
		t.Failures, start = 0, at
	}
	_, err = tx.Exec(`INSERT INTO throttle(key, failures, window_start, locked_until) VALUES (?, ?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET failures = excluded.failures, window_start = excluded.window_start, locked_until = excluded.locked_until`,
		c.Key, t.Failures, start, locked)
	return Result{}, false, err
}

func applyThrottleClear(tx *sql.Tx, c *ThrottleClear) (Result, bool, error) {
	for _, k := range c.Keys {
		// A lock stands until it ends: a success elsewhere (another subject from the same address) must not
		// lift it.
		if _, err := tx.Exec(`UPDATE throttle SET failures = 0 WHERE key = ?`, k); err != nil {
			return Result{}, false, err
		}
	}
	return Result{}, false, nil
}

func applyContactSet(tx *sql.Tx, c *ContactSet) (Result, bool, error) {
	k := c.Contact
	_, err := tx.Exec(`INSERT OR REPLACE INTO contacts(subject_hash, email_sealed, email_verified_at, phone_sealed, phone_verified_at, lang,
		notify_email, notify_sms, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, k.SubjectHash, k.EmailSealed, msOrZero(k.EmailVerifiedAt),
		k.PhoneSealed, msOrZero(k.PhoneVerifiedAt), k.Lang, b2i(k.NotifyEmail), b2i(k.NotifySMS), ms(k.UpdatedAt))
	return Result{}, false, err
}

func applyMethodUsed(tx *sql.Tx, c *MethodUsed) (Result, bool, error) {
	_, err := tx.Exec(`INSERT OR IGNORE INTO method_uses(subject_hash, method, first_at) VALUES (?, ?, ?)`, c.SubjectHash, c.Method, ms(c.At))
	return Result{}, false, err
}

func applyIdentityPurge(tx *sql.Tx, c *IdentityPurge) (Result, bool, error) {
	before := ms(c.Before)
	if _, err := tx.Exec(`DELETE FROM otp_challenges WHERE expires_at < ?`, before); err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`DELETE FROM throttle WHERE locked_until < ? AND window_start < ?`, before, before); err != nil {
		return Result{}, false, err
	}
	_, err := tx.Exec(`DELETE FROM outbox WHERE state IN (?, ?, ?) AND created_at < ?`, OutboxSent, OutboxFailed, OutboxSkipped, before-outboxRetention.Milliseconds())
	return Result{}, false, err
}

const passkeyColumns = `id, subject_hash, subject_sealed, user_handle, name, public_key, attestation_type, attestation_format, aaguid, sign_count,
	backup_eligible, backup_state, transports, created_at, last_used_at`

func scanPasskey(row interface{ Scan(...any) error }) (Passkey, error) {
	var p Passkey
	var transports string
	var created, used int64
	err := row.Scan(&p.ID, &p.SubjectHash, &p.SubjectSealed, &p.UserHandle, &p.Name, &p.PublicKey, &p.AttestationType, &p.AttestationFormat,
		&p.AAGUID, &p.SignCount, &p.BackupEligible, &p.BackupState, &transports, &created, &used)
	if transports != "" {
		p.Transports = strings.Split(transports, ",")
	}
	p.CreatedAt = fromMS(created)
	if used != 0 {
		p.LastUsedAt = fromMS(used)
	}
	return p, err
}

// Passkeys lists the passkeys of any of the subject's hashes (the lookup key may have been rotated).
func (f *FSM) Passkeys(hashes ...string) ([]Passkey, error) {
	out := []Passkey{}
	for _, h := range hashes {
		rows, err := f.db.Query(`SELECT `+passkeyColumns+` FROM passkeys WHERE subject_hash = ? ORDER BY created_at`, h)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			p, err := scanPasskey(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, p)
		}
		rows.Close()
	}
	return out, nil
}

// PasskeyByID finds a passkey; nil if there is none.
func (f *FSM) PasskeyByID(id []byte) (*Passkey, error) {
	p, err := scanPasskey(f.db.QueryRow(`SELECT `+passkeyColumns+` FROM passkeys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &p, err
}

// OTP finds a challenge; nil if there is none.
func (f *FSM) OTP(id string) (*OTPChallenge, error) {
	var c OTPChallenge
	var exp int64
	err := f.db.QueryRow(`SELECT id, subject_hash, purpose, channel, code_hash, tries, max_tries, expires_at, used FROM otp_challenges WHERE id = ?`, id).
		Scan(&c.ID, &c.SubjectHash, &c.Purpose, &c.Channel, &c.CodeHash, &c.Tries, &c.MaxTries, &exp, &c.Used)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	c.ExpiresAt = fromMS(exp)
	return &c, err
}

// ThrottleOf reads a key's failures; the zero Throttle if there are none.
func (f *FSM) ThrottleOf(key string) (Throttle, error) {
	var t Throttle
	var start, locked int64
	err := f.db.QueryRow(`SELECT failures, window_start, locked_until FROM throttle WHERE key = ?`, key).Scan(&t.Failures, &start, &locked)
	if errors.Is(err, sql.ErrNoRows) {
		return Throttle{}, nil
	}
	t.WindowStart, t.LockedUntil = fromMS(start), fromMS(locked)
	return t, err
}

// ContactOf reads the contact record under any of the subject's hashes; nil if there is none.
func (f *FSM) ContactOf(hashes ...string) (*Contact, error) {
	for _, h := range hashes {
		var k Contact
		var ev, pv, up int64
		err := f.db.QueryRow(`SELECT subject_hash, email_sealed, email_verified_at, phone_sealed, phone_verified_at, lang, notify_email, notify_sms, updated_at
			FROM contacts WHERE subject_hash = ?`, h).Scan(&k.SubjectHash, &k.EmailSealed, &ev, &k.PhoneSealed, &pv, &k.Lang, &k.NotifyEmail, &k.NotifySMS, &up)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ev != 0 {
			k.EmailVerifiedAt = fromMS(ev)
		}
		if pv != 0 {
			k.PhoneVerifiedAt = fromMS(pv)
		}
		k.UpdatedAt = fromMS(up)
		return &k, nil
	}
	return nil, nil
}

// MethodUsedBefore says whether the subject (under any of its hashes) has logged in with method before.
func (f *FSM) MethodUsedBefore(method string, hashes ...string) (bool, error) {
	for _, h := range hashes {
		var n int
		if err := f.db.QueryRow(`SELECT count(*) FROM method_uses WHERE subject_hash = ? AND method = ?`, h, method).Scan(&n); err != nil {
			return false, err
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, nil
}
