package passkey

import "time"

// Credential is one registered passkey as the hub keeps it. It holds what verifying a later assertion needs
// and what the account page shows; the attestation itself is not kept (we ask for none).
type Credential struct {
	// ID is the credential id the authenticator chose (at most 1023 bytes).
	ID []byte
	// Subject is the citizen's national ID. The login returns it, so the Store must be able to give it back:
	// a keyed hash alone is not enough (seal it under a keyring key if it must not lie in clear).
	Subject string
	// UserHandle is the opaque value the authenticator holds for the citizen (Method's userHandle function
	// at registration time). Kept so that a later rotation of that function's key does not lock anyone out.
	UserHandle []byte
	// Name is the citizen's label for it ("my phone").
	Name string
	// PublicKey is the COSE_Key from the attested credential data.
	PublicKey         []byte
	AttestationType   string
	AttestationFormat string
	// AAGUID names the authenticator model (all zero for most synced passkeys).
	AAGUID         []byte
	SignCount      uint32
	BackupEligible bool
	BackupState    bool
	// Transports are the browser's hints ("internal", "hybrid", "usb", ...) for later allowCredentials.
	Transports []string
	CreatedAt  time.Time
	LastUsedAt time.Time
}

// Store keeps credentials; the hub implements it on its replicated state, passkeytest.Store in memory.
type Store interface {
	// Credentials lists the subject's credentials, none being an empty list and no error.
	Credentials(subject string) ([]Credential, error)
	// CredentialByID returns nil, nil when the id is unknown.
	CredentialByID(id []byte) (*Credential, error)
	// AddCredential stores a new credential. It must fail if the id is already stored.
	AddCredential(Credential) error
	// UpdateCredential records a successful login. An implementation that can compare and set should refuse,
	// with ErrCloned, a signCount that is not above the stored one unless both are zero: two logins racing
	// with one cloned authenticator are then caught as well.
	UpdateCredential(id []byte, signCount uint32, backupState bool, usedAt time.Time) error
	// RemoveCredential deletes the subject's credential; removing an unknown one is not an error.
	RemoveCredential(subject string, id []byte) error
}
