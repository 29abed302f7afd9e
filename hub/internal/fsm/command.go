package fsm

import (
	"fmt"
	"time"
)

// Type identifies a command in the raft log. Values are never reused: a log written by an older hub must
// mean the same to a newer one.
type Type uint8

// Command types.
const (
	TypeOrgAdd Type = iota + 1
	TypeConnectorAdd
	TypeConnectorStatus
	TypeTokenCreate
	TypeEnroll
	TypeCertRecord
	TypeTokenPurge
	TypeDatasetAdd
	TypeDatasetStatus
	TypeServiceAdd
	TypeConnectorKey
	TypeHubKey
	TypeConsentCreate
	TypeConsentDecide
	TypeConsentUse
	TypeConsentRevoke
	TypeReceiptAdd
	TypeReceiptsAdd
	TypeConsentRecord
	TypeNodeTokenCreate
	TypeNodeJoin
	TypeNodeInfo
	TypeNodeRemove
	TypeNodeTokenPurge
	TypeKeyringAdd
	TypeKeyringPurge
	TypeConsentForget
	TypeConsentRedact
	TypeRenew
	TypePasskeyAdd
	TypePasskeyUse
	TypePasskeyRemove
	TypeOTPPut
	TypeOTPTry
	TypeThrottleFail
	TypeThrottleClear
	TypeContactSet
	TypeMethodUsed
	TypeIdentityPurge
	TypeOperatorAdd
	TypeOperatorStatus
	TypeOperatorTokenCreate
	TypeOperatorEnroll
	TypeOperatorRenew
	TypeOperatorAction
	TypeOutboxClaim
	TypeOutboxResult
	TypeCounterRecord
	TypeCounterOTPSent
	TypeCounterUse
	TypeCounterForget
	TypeDownloadRecord
	TypeDownloadPending
	TypeApplicationSubmit
	TypeApplicationReview
	TypeApplicationDecide
	TypeCalendarLoad
	TypeLifecycleTick
	TypeSuspend
	TypeRecordsPurge
	TypeDatasetConnectors
	TypeTicketClaim
	TypeTicketRelease
	TypeConnectorsSeen
	TypeConnectorsLiveness
	TypeConnectorAddress
)

// Each command's payload carries its own version in the second byte, so a newer hub can still apply the
// payloads an older one wrote while its own shape grows.
const payloadV1 = 1

// OrgAdd registers an organisation.
type OrgAdd struct {
	Code   string `json:"code"`
	NameZh string `json:"name_zh"`
	NameEn string `json:"name_en"`
	Type   string `json:"type"`
	// ContactEmail is omitted by releases before it and by an application's org (whose address is the
	// application's); both decode to "", no address.
	ContactEmail string    `json:"contact_email,omitempty"`
	Now          time.Time `json:"now"`
}

// ConnectorAdd registers a connector of an organisation.
type ConnectorAdd struct {
	Org     string   `json:"org"`
	Name    string   `json:"name"`
	Roles   []string `json:"roles"`
	Address string   `json:"address"`
	// TCPAddress is omitted by releases before the TCP fallback, whose logged payloads decode to "".
	TCPAddress string    `json:"tcp_address,omitempty"`
	Now        time.Time `json:"now"`
}

// ConnectorStatus suspends, reactivates or revokes a connector.
type ConnectorStatus struct {
	Org    string    `json:"org"`
	Name   string    `json:"name"`
	Status string    `json:"status"`
	Now    time.Time `json:"now"`
}

// TokenCreate records a join token by its hash.
type TokenCreate struct {
	Hash      string    `json:"hash"`
	Org       string    `json:"org"`
	Connector string    `json:"connector"`
	ExpiresAt time.Time `json:"expires_at"`
	Now       time.Time `json:"now"`
}

// Enroll consumes a join token and records the certificate issued with it, in one step so that two
// concurrent enrollments with one token cannot both succeed.
type Enroll struct {
	TokenHash string     `json:"token_hash"`
	Cert      CertRecord `json:"cert"`
}

// Renew records a certificate issued to a connector for its own ID, only if the connector is still active
// when the entry applies: a suspension that commits first wins, whichever node took the renewal.
type Renew struct {
	Org  string     `json:"org"`
	Name string     `json:"name"`
	Cert CertRecord `json:"cert"`
}

// CertRecord records an issued certificate.
type CertRecord struct {
	Serial    string    `json:"serial"`
	SPIFFEID  string    `json:"spiffe_id"`
	Kind      string    `json:"kind"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Now       time.Time `json:"now"`
}

// TokenPurge deletes tokens that expired before Now.
type TokenPurge struct {
	Now time.Time `json:"now"`
}

// DatasetAdd registers a dataset.
type DatasetAdd struct {
	Dataset Dataset   `json:"dataset"`
	Now     time.Time `json:"now"`
}

// DatasetStatus puts a dataset under maintenance or back.
type DatasetStatus struct {
	ID     string    `json:"id"`
	Status string    `json:"status"`
	Now    time.Time `json:"now"`
}

// ConnectorAddress moves a connector: its QUIC address and its TCP address ("" for none). Peers follow
// through the directory.
type ConnectorAddress struct {
	Org        string    `json:"org"`
	Name       string    `json:"name"`
	Address    string    `json:"address"`
	TCPAddress string    `json:"tcp_address,omitempty"`
	Now        time.Time `json:"now"`
}

// DatasetConnectors sets the connectors that serve a dataset, the first as its dp_connector: an agency
// adds a second connector for availability, or moves the dataset to new ones.
type DatasetConnectors struct {
	ID         string    `json:"id"`
	Connectors []string  `json:"connectors"`
	Now        time.Time `json:"now"`
}

// ServiceAdd registers a service.
type ServiceAdd struct {
	Service Service   `json:"service"`
	Now     time.Time `json:"now"`
}

// ConnectorKey publishes a connector's HPKE key.
type ConnectorKey struct {
	Org  string    `json:"org"`
	Name string    `json:"name"`
	KEM  uint16    `json:"kem"`
	Key  []byte    `json:"key"`
	Now  time.Time `json:"now"`
}

// HubKey publishes a hub node's public key.
type HubKey struct {
	Key HubKeyRecord `json:"key"`
}

// ConsentCreate records a pending consent: a valid authorization request shown to a logged-in citizen.
// Hubs no longer write it (the pending request travels in the signed consent page, see ConsentRecord);
// it stays so that logs written before still apply.
type ConsentCreate struct {
	Consent Consent `json:"consent"`
}

// ConsentDecide records the citizen's answer to a ConsentCreate. On approval CodeHash and CodeExpiresAt
// are set. Like ConsentCreate, only logs written before ConsentRecord hold it.
type ConsentDecide struct {
	ID            string    `json:"id"`
	Subject       string    `json:"subject"`
	Approve       bool      `json:"approve"`
	CodeHash      string    `json:"code_hash,omitempty"`
	CodeExpiresAt time.Time `json:"code_expires_at"`
	Now           time.Time `json:"now"`
}

// ConsentRecord records a citizen's decision on an authorization request in one entry: the request,
// while the citizen reads it, lives in the consent page the hub signed rather than in raft, so a page
// viewed and left costs no write and leaves nothing to purge. On approval CodeHash and CodeExpiresAt are
// set. A consent ID is decided once: a second decision on the same page is refused.
type ConsentRecord struct {
	Consent       Consent   `json:"consent"`
	Approve       bool      `json:"approve"`
	CodeHash      string    `json:"code_hash,omitempty"`
	CodeExpiresAt time.Time `json:"code_expires_at"`
	Now           time.Time `json:"now"`
}

// ConsentUse spends a granted consent: the one redemption its code allows.
type ConsentUse struct {
	ID  string    `json:"id"`
	Now time.Time `json:"now"`
}

// ConsentRevoke is the citizen withdrawing a consent not yet used.
type ConsentRevoke struct {
	ID      string    `json:"id"`
	Subject string    `json:"subject"`
	Now     time.Time `json:"now"`
}

// ReceiptAdd records a connector's receipt of one transfer (metadata only).
type ReceiptAdd struct {
	Receipt Receipt `json:"receipt"`
}

// ReceiptsAdd records a batch of receipts in one log entry: connectors report in batches, and one entry
// per batch instead of per receipt keeps the raft log and the apply loop out of the exchanges' way. The
// API checks each receipt with CheckReceipt before proposing, so apply refuses none in practice; one it
// would refuse is skipped rather than failing the others.
type ReceiptsAdd struct {
	Receipts []Receipt `json:"receipts"`
}

// Result is what applying a command returns through raft. Business errors travel as a code and a message
// rather than an error value, which would not survive being passed back from the FSM.
type Result struct {
	Code    Code
	Message string
}

// Code classifies a refused command.
type Code int

// Result codes; the API maps them to HTTP statuses in one place.
const (
	OK Code = iota
	Invalid
	NotFound
	Conflict
	Gone
	Forbidden
)

// Err turns a refused result into an error; nil for OK.
func (r Result) Err() error {
	if r.Code == OK {
		return nil
	}
	return &Error{Code: r.Code, Message: r.Message}
}

// Error is a refused command.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Message }

func refuse(c Code, format string, args ...any) Result {
	return Result{Code: c, Message: fmt.Sprintf(format, args...)}
}
