package portal

import (
	"crypto/sha256"
	"errors"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/identity/otp"
	"github.com/mydatafed/mydata/hub/internal/identity/passkey"
)

// The login methods keep their state in the replicated state machine through these adapters: writes go
// through raft (Config.Apply), reads come from this node's copy, and citizens appear as keyed hashes.

// otpStore keeps one-time-code challenges.
type otpStore struct{ s *Server }

func (o otpStore) PutChallenge(c otp.Challenge) error {
	return o.s.cfg.Apply(&fsm.OTPPut{Challenge: fsm.OTPChallenge{ID: c.ID, SubjectHash: c.Subject, Purpose: c.Purpose, Channel: c.Channel,
		CodeHash: c.CodeHash, MaxTries: c.MaxTries, ExpiresAt: c.ExpiresAt}})
}

func (o otpStore) Challenge(id string) (*otp.Challenge, error) {
	c, err := o.s.cfg.State.OTP(id)
	if err != nil || c == nil {
		return nil, err
	}
	return &otp.Challenge{ID: c.ID, Subject: c.SubjectHash, Purpose: c.Purpose, Channel: c.Channel, CodeHash: c.CodeHash, Tries: c.Tries,
		MaxTries: c.MaxTries, ExpiresAt: c.ExpiresAt, Used: c.Used}, nil
}

// RecordTry counts the try in the log, then reads the challenge back: Apply returns once this node has
// applied the entry, so the count read includes it (and any try that raced it, which only makes Check
// stricter).
func (o otpStore) RecordTry(id string, success bool, at time.Time) (*otp.Challenge, error) {
	if err := o.s.cfg.Apply(&fsm.OTPTry{ID: id, Success: success, At: at}); err != nil {
		return nil, err
	}
	return o.Challenge(id)
}

// otpService makes the code service with the cluster's current key: the code hashes verify on every node.
func (s *Server) otpService() (*otp.Service, error) {
	tag, err := s.cfg.Keys.Sign("one-time code key")
	if err != nil {
		return nil, err
	}
	key := sha256.Sum256([]byte(tag))
	return otp.New(otp.Config{Store: otpStore{s}, Key: key[:], Now: s.now})
}

// passkeyStore keeps passkeys, the national ID sealed (a passkey login learns whose it is from the store).
type passkeyStore struct{ s *Server }

// passkeySealContext binds a sealed subject to its use, so it cannot be passed off as a consent's.
const passkeySealContext = "passkey"

func (p passkeyStore) toCredential(k fsm.Passkey) (passkey.Credential, error) {
	subject, err := p.s.cfg.Keys.OpenSubject(k.SubjectSealed, passkeySealContext)
	if err != nil {
		return passkey.Credential{}, err
	}
	return passkey.Credential{ID: k.ID, Subject: subject, UserHandle: k.UserHandle, Name: k.Name, PublicKey: k.PublicKey,
		AttestationType: k.AttestationType, AttestationFormat: k.AttestationFormat, AAGUID: k.AAGUID, SignCount: k.SignCount,
		BackupEligible: k.BackupEligible, BackupState: k.BackupState, Transports: k.Transports, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt}, nil
}

func (p passkeyStore) Credentials(subject string) ([]passkey.Credential, error) {
	hashes, err := p.s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return nil, err
	}
	list, err := p.s.cfg.State.Passkeys(hashes...)
	if err != nil {
		return nil, err
	}
	out := make([]passkey.Credential, 0, len(list))
	for _, k := range list {
		c, err := p.toCredential(k)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func (p passkeyStore) CredentialByID(id []byte) (*passkey.Credential, error) {
	k, err := p.s.cfg.State.PasskeyByID(id)
	if err != nil || k == nil {
		return nil, err
	}
	c, err := p.toCredential(*k)
	return &c, err
}

func (p passkeyStore) AddCredential(c passkey.Credential) error {
	hash, err := p.s.cfg.Keys.LookupHash(c.Subject)
	if err != nil {
		return err
	}
	sealed, err := p.s.cfg.Keys.SealSubject(c.Subject, passkeySealContext)
	if err != nil {
		return err
	}
	err = p.s.cfg.Apply(&fsm.PasskeyAdd{Passkey: fsm.Passkey{ID: c.ID, SubjectHash: hash, SubjectSealed: sealed, UserHandle: c.UserHandle, Name: c.Name,
		PublicKey: c.PublicKey, AttestationType: c.AttestationType, AttestationFormat: c.AttestationFormat, AAGUID: c.AAGUID, SignCount: c.SignCount,
		BackupEligible: c.BackupEligible, BackupState: c.BackupState, Transports: c.Transports, CreatedAt: c.CreatedAt}})
	if fe := (*fsm.Error)(nil); errors.As(err, &fe) && fe.Code == fsm.Conflict {
		return passkey.ErrDuplicate
	}
	return err
}

func (p passkeyStore) UpdateCredential(id []byte, signCount uint32, backupState bool, usedAt time.Time) error {
	err := p.s.cfg.Apply(&fsm.PasskeyUse{ID: id, SignCount: signCount, BackupState: backupState, At: usedAt})
	if fe := (*fsm.Error)(nil); errors.As(err, &fe) && fe.Code == fsm.Conflict {
		return passkey.ErrCloned
	}
	return err
}

func (p passkeyStore) RemoveCredential(subject string, id []byte) error {
	hashes, err := p.s.cfg.Keys.LookupHashes(subject)
	if err != nil {
		return err
	}
	for _, h := range hashes {
		if err := p.s.cfg.Apply(&fsm.PasskeyRemove{SubjectHash: h, ID: id}); err != nil {
			return err
		}
	}
	return nil
}

// userHandle is what a passkey holds for its citizen: a hash of the keyed hash, so neither the
// authenticator nor a cloud account that syncs it sees the national ID.
func (s *Server) userHandle(subject string) []byte {
	h, err := s.cfg.Keys.LookupHash(subject)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256([]byte("passkey user handle " + h))
	return sum[:]
}
