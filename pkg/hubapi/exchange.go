package hubapi

import "time"

// Paths of the exchange API (mTLS, connectors).
const (
	PathRedeem   = "/v1/redeem"
	PathReceipts = "/v1/receipts"
	// PathPAR is the pushed authorization request endpoint (RFC 9126): an SP connector posts the request
	// over mutual TLS and gets a request_uri to send the browser with instead.
	PathPAR = "/v1/par"
)

// RedeemRequest is an SP connector trading an authorization code for tickets (RFC 6749 section 4.1.3 with
// RFC 7636 PKCE, over mutual TLS instead of a client secret).
type RedeemRequest struct {
	ClientID     string `json:"client_id"`
	Code         string `json:"code"`
	CodeVerifier string `json:"code_verifier"`
	RedirectURI  string `json:"redirect_uri"`
	// RecipientKEM and RecipientKey are the HPKE key the data providers must seal content to; the tickets
	// carry it, signed, so no one on the way can swap it.
	RecipientKEM uint16 `json:"recipient_kem"`
	RecipientKey []byte `json:"recipient_key"`
}

// RedeemResponse carries one ticket per deliverable dataset.
type RedeemResponse struct {
	ConsentID   string `json:"consent_id"`
	Service     string `json:"service"`
	AAL         int    `json:"aal"`
	LoginMethod string `json:"login_method"`
	// Subject is the citizen's national ID; the SP connector keeps only a keyed hash of it, in its audit
	// log. It travels in the clear inside the mutual-TLS connection, which ends in the SP connector
	// itself: sealing it again to the recipient key cost the hub and the SP a hybrid KEM operation each
	// per exchange (about 6 % of a small exchange's CPU) and protected nothing more.
	Subject     string               `json:"subject"`
	Tickets     []RedeemedTicket     `json:"tickets"`
	Unavailable []UnavailableDataset `json:"unavailable,omitempty"`
}

// PARRequest is an authorization request pushed by the service's SP connector: the parameters
// /oauth/authorize would take, as RFC 9126 has them (form-encoded there, JSON here like the rest of the API).
type PARRequest struct {
	ClientID            string `json:"client_id"`
	ResponseType        string `json:"response_type"`
	RedirectURI         string `json:"redirect_uri"`
	Scope               string `json:"scope"`
	State               string `json:"state,omitempty"`
	CodeChallenge       string `json:"code_challenge"`
	CodeChallengeMethod string `json:"code_challenge_method"`
	LoginHint           string `json:"login_hint,omitempty"`
}

// PARResponse is RFC 9126's answer: the reference the browser carries, and for how many seconds it is good.
type PARResponse struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int    `json:"expires_in"`
}

// PARRequestURIPrefix starts every request_uri the hub makes (RFC 9126 section 2.2).
const PARRequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// The hub's error_description values for access_denied, so that a service can tell the citizen which
// happened: they declined, or someone other than the citizen the service named logged in.
const (
	DeniedByCitizen    = "the citizen declined"
	DeniedOtherCitizen = "the request was bound to another citizen"
)

// LoginHintInfo is the HPKE info under which an SP seals a login hint to the hub: bound to its client ID, so
// that a hint cannot be replayed by another service.
func LoginHintInfo(clientID string) []byte { return []byte("mydata login_hint " + clientID) }

// RedeemedTicket is one dataset's ticket and where to present it.
type RedeemedTicket struct {
	Dataset     string    `json:"dataset"`
	DP          string    `json:"dp"`
	Address     string    `json:"address"`
	Ticket      string    `json:"ticket"`
	TicketID    string    `json:"ticket_id"`
	ContentType string    `json:"content_type"`
	Async       bool      `json:"async"`
	ExpiresAt   time.Time `json:"expires_at"`
	// Alternates are the dataset's other connectors, which may serve the ticket when DP cannot (connector
	// HA); the ticket names them all.
	Alternates []TicketDP `json:"alternates,omitempty"`
}

// UnavailableDataset is a dataset the hub issued no ticket for, and why.
type UnavailableDataset struct {
	Dataset string `json:"dataset"`
	Status  string `json:"status"`
	Reason  string `json:"reason"`
}

// Receipt roles and outcomes.
const (
	RoleSender   = "dp"
	RoleReceiver = "sp"
)

// MaxReceiptBatch bounds the receipts in one report.
const MaxReceiptBatch = 100

// ReceiptBatch is a connector reporting transfers to the hub, up to MaxReceiptBatch at a time: a busy
// connector reports many transfers in one request and the hub records them in one raft entry.
type ReceiptBatch struct {
	Receipts []ReceiptRequest `json:"receipts"`
}

// ReceiptBatchResult answers a ReceiptBatch receipt by receipt, in order, so that one refused receipt
// does not hold back the others.
type ReceiptBatchResult struct {
	Results []ReceiptResult `json:"results"`
}

// ReceiptResult is the hub's answer to one receipt of a batch.
type ReceiptResult struct {
	// Status is 204 when the hub recorded the receipt, otherwise the HTTP status that says why not
	// (400 malformed, 403 not a party to the transfer, 404 no such consent or dataset).
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
}

// ReceiptRequest is a connector reporting one transfer to the hub: metadata only.
type ReceiptRequest struct {
	TicketID    string    `json:"ticket_id"`
	ConsentID   string    `json:"consent_id"`
	Dataset     string    `json:"dataset"`
	Role        string    `json:"role"`
	Counterpart string    `json:"counterpart"`
	Outcome     string    `json:"outcome"`
	Bytes       int64     `json:"bytes"`
	At          time.Time `json:"at"`
}

// Paths of the ticket claims (connector HA): a DP connector claims a ticket that other connectors may also
// serve before it serves it, and releases it after.
const (
	PathTicketClaim   = "/v1/tickets/claim"
	PathTicketRelease = "/v1/tickets/release"
)

// TicketClaimRequest claims a ticket for the calling connector, which the ticket must name. The hub answers
// 204 when the caller may serve it, 409 while another of its connectors serves it, 410 once it was used.
type TicketClaimRequest struct {
	Ticket string `json:"ticket"`
}

// TicketReleaseRequest ends the caller's claim. Spent says the connector sent data, or began to: the ticket
// is used. Otherwise (the agency failed, or was not ready) another connector may serve it.
type TicketReleaseRequest struct {
	Ticket string `json:"ticket"`
	Spent  bool   `json:"spent"`
}

// TicketDP is one more connector that may serve a ticket, and where to reach it.
type TicketDP struct {
	DP      string `json:"dp"`
	Address string `json:"address"`
}
