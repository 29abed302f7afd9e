package hubapi

// Counter verification (臨櫃核驗免檢據): the citizen agrees on the portal and gets a code (also shown as a QR
// code); at the counter, staff enter it on the SP connector's counter page, and the connector redeems it
// here for tickets, as the online mode redeems an authorization code.

// PathCounterRedeem is where the service's SP connector redeems a counter code, over mutual TLS.
const PathCounterRedeem = "/v1/counter/redeem"

// CounterCodeAlphabet is what counter codes are written in: digits and capitals without 0/O, 1/I/L and U,
// so that a code read aloud or typed from a phone is not mistaken (Crockford's base32 set, less 0 and 1).
const CounterCodeAlphabet = "23456789ABCDEFGHJKMNPQRSTVWXYZ"

// CounterCodeLength is the length of a counter code.
const CounterCodeLength = 8

// CounterRedeemRequest is the SP connector's redemption of a code a citizen brought to the counter.
type CounterRedeemRequest struct {
	// Code as staff typed or scanned it: case, spaces and hyphens do not matter.
	Code string `json:"code"`
	// OTP is the one-time code the citizen reads to staff, when the service requires one: a first request
	// without it is answered 428 (and the hub sends the citizen the code), the second carries it.
	OTP string `json:"otp,omitempty"`
	// Terminal names the counter terminal (the connector's counter-page session) for lockouts and the record.
	Terminal string `json:"terminal"`
	// RecipientKEM and RecipientKey are the HPKE key the data providers seal content to, as in RedeemRequest.
	RecipientKEM uint16 `json:"recipient_kem"`
	RecipientKey []byte `json:"recipient_key"`
}

// CounterAgent is the person the citizen named to present the code for them (代辦人). Staff check the
// agent's ID card against it.
type CounterAgent struct {
	NationalID string `json:"national_id"`
	Name       string `json:"name"`
}

// CounterRedeemResponse is a RedeemResponse with what the counter needs besides.
type CounterRedeemResponse struct {
	RedeemResponse
	// Agent is set when the citizen named one.
	Agent *CounterAgent `json:"agent,omitempty"`
}

// Counter redemption errors (Error.Message; Description says more). Unknown, expired and cancelled codes
// get the same answer, so the endpoint tells nothing about codes that are not valid.
const (
	CounterInvalidCode = "invalid_code"   // 404: no valid code like that
	CounterUsed        = "code_used"      // 409: redeemed already
	CounterOTPRequired = "otp_required"   // 428: the citizen has been sent a one-time code; ask for it
	CounterOTPWrong    = "otp_wrong"      // 401: the one-time code is wrong (Description says how many tries remain)
	CounterLocked      = "locked"         // 429: too many wrong codes from this terminal; Retry-After says how long
	CounterWrongClient = "invalid_client" // 403: another service's code
)
