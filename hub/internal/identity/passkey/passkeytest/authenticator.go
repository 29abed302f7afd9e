package passkeytest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Authenticator is a software FIDO2 authenticator and browser in one: it keeps discoverable ECDSA P-256
// credentials, signs with "none" attestation, and answers with the JSON the passkey script posts. Its exported
// fields make it misbehave on purpose.
type Authenticator struct {
	// Origin is what the "browser" puts in clientDataJSON.
	Origin string
	// RPID, when set, replaces the options' RP id in the authenticator data (a phishing site's, say).
	RPID string
	// NoUserVerification leaves the UV flag clear, as a security key without a PIN does.
	NoUserVerification bool
	// BackupEligible and BackupState set the BE and BS flags (a synced passkey has both).
	BackupEligible, BackupState bool
	// ZeroCounter keeps the signature counter at zero, as synced passkeys do.
	ZeroCounter bool
	// OmitUserHandle leaves userHandle out of assertions, as authenticators may when credentials are listed.
	OmitUserHandle bool

	mu    sync.Mutex
	creds []*resident
}

type resident struct {
	id      []byte
	key     *ecdsa.PrivateKey
	rpID    string
	handle  []byte
	counter uint32
}

// ErrNotAllowed is the browser's NotAllowedError: no credential fits, or one listed as excluded is held.
var ErrNotAllowed = errors.New("passkeytest: NotAllowedError")

// NewAuthenticator returns an authenticator that verifies its user, in a browser at origin.
func NewAuthenticator(origin string) *Authenticator { return &Authenticator{Origin: origin} }

// SetCounter sets every credential's counter; the next assertion carries n+1 (or 0 with ZeroCounter).
func (a *Authenticator) SetCounter(n uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.creds {
		r.counter = n
	}
}

// Forget drops every credential, as a reset security key does.
func (a *Authenticator) Forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creds = nil
}

type descriptor struct {
	ID b64 `json:"id"`
}

type creationOptions struct {
	PublicKey struct {
		RP struct {
			ID string `json:"id"`
		} `json:"rp"`
		User struct {
			ID b64 `json:"id"`
		} `json:"user"`
		Challenge          b64          `json:"challenge"`
		ExcludeCredentials []descriptor `json:"excludeCredentials"`
	} `json:"publicKey"`
}

type requestOptions struct {
	PublicKey struct {
		Challenge        b64          `json:"challenge"`
		RPID             string       `json:"rpId"`
		AllowCredentials []descriptor `json:"allowCredentials"`
	} `json:"publicKey"`
}

// Create answers navigator.credentials.create with the options BeginRegistration returned.
func (a *Authenticator) Create(options []byte) ([]byte, error) {
	var o creationOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("passkeytest: creation options: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, d := range o.PublicKey.ExcludeCredentials {
		if a.holds(d.ID) != nil {
			return nil, ErrNotAllowed
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	r := &resident{id: make([]byte, 16), key: key, rpID: o.PublicKey.RP.ID, handle: o.PublicKey.User.ID}
	if _, err := rand.Read(r.id); err != nil {
		return nil, err
	}
	// A real authenticator keeps one discoverable credential per RP and user handle.
	for i, old := range a.creds {
		if old.rpID == r.rpID && bytes.Equal(old.handle, r.handle) {
			a.creds = append(a.creds[:i], a.creds[i+1:]...)
			break
		}
	}
	a.creds = append(a.creds, r)

	clientData := a.clientData("webauthn.create", o.PublicKey.Challenge)
	var ad []byte
	ad = append(ad, a.rpIDHash(r.rpID)...)
	ad = append(ad, a.flags()|flagAT)
	ad = binary.BigEndian.AppendUint32(ad, r.counter)
	ad = append(ad, make([]byte, 16)...) // AAGUID: zero, as synced passkeys report
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(r.id)))
	ad = append(ad, r.id...)
	ad = append(ad, coseKey(&key.PublicKey)...)
	attObj := cborMap(
		cborText("fmt"), cborText("none"),
		cborText("attStmt"), cborMap(),
		cborText("authData"), cborBytes(ad),
	)
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"id":                      base64.RawURLEncoding.EncodeToString(r.id),
		"rawId":                   b64(r.id),
		"type":                    "public-key",
		"authenticatorAttachment": "platform",
		"clientExtensionResults":  map[string]any{},
		"response": map[string]any{
			"clientDataJSON":     b64(clientData),
			"attestationObject":  b64(attObj),
			"authenticatorData":  b64(ad),
			"publicKey":          b64(spki),
			"publicKeyAlgorithm": -7,
			"transports":         []string{"internal", "hybrid"},
		},
	})
}

// Get answers navigator.credentials.get with the options BeginLogin or BeginLoginFor returned.
func (a *Authenticator) Get(options []byte) ([]byte, error) {
	var o requestOptions
	if err := json.Unmarshal(options, &o); err != nil {
		return nil, fmt.Errorf("passkeytest: request options: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var r *resident
	if len(o.PublicKey.AllowCredentials) > 0 {
		for _, d := range o.PublicKey.AllowCredentials {
			if c := a.holds(d.ID); c != nil && c.rpID == o.PublicKey.RPID {
				r = c
				break
			}
		}
	} else {
		for _, c := range a.creds {
			if c.rpID == o.PublicKey.RPID {
				r = c // the most recent, as an account picker would offer first
			}
		}
	}
	if r == nil {
		return nil, ErrNotAllowed
	}
	if !a.ZeroCounter {
		r.counter++
	}
	clientData := a.clientData("webauthn.get", o.PublicKey.Challenge)
	var ad []byte
	ad = append(ad, a.rpIDHash(r.rpID)...)
	ad = append(ad, a.flags())
	ad = binary.BigEndian.AppendUint32(ad, r.counter)
	cdh := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(bytes.Clone(ad), cdh[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, r.key, digest[:])
	if err != nil {
		return nil, err
	}
	resp := map[string]any{
		"clientDataJSON":    b64(clientData),
		"authenticatorData": b64(ad),
		"signature":         b64(sig),
	}
	if !a.OmitUserHandle {
		resp["userHandle"] = b64(r.handle)
	}
	return json.Marshal(map[string]any{
		"id":                      base64.RawURLEncoding.EncodeToString(r.id),
		"rawId":                   b64(r.id),
		"type":                    "public-key",
		"authenticatorAttachment": "platform",
		"clientExtensionResults":  map[string]any{},
		"response":                resp,
	})
}

func (a *Authenticator) holds(id []byte) *resident {
	for _, c := range a.creds {
		if bytes.Equal(c.id, id) {
			return c
		}
	}
	return nil
}

func (a *Authenticator) clientData(typ string, challenge []byte) []byte {
	b, _ := json.Marshal(map[string]any{
		"type":        typ,
		"challenge":   base64.RawURLEncoding.EncodeToString(challenge),
		"origin":      a.Origin,
		"crossOrigin": false,
	})
	return b
}

func (a *Authenticator) rpIDHash(rpID string) []byte {
	if a.RPID != "" {
		rpID = a.RPID
	}
	h := sha256.Sum256([]byte(rpID))
	return h[:]
}

const (
	flagUP = 0x01
	flagUV = 0x04
	flagBE = 0x08
	flagBS = 0x10
	flagAT = 0x40
)

func (a *Authenticator) flags() byte {
	f := byte(flagUP)
	if !a.NoUserVerification {
		f |= flagUV
	}
	if a.BackupEligible {
		f |= flagBE
	}
	if a.BackupState {
		f |= flagBS
	}
	return f
}

// b64 is base64url without padding in JSON, as the script sends and the library expects.
type b64 []byte

func (b b64) MarshalJSON() ([]byte, error) {
	return json.Marshal(base64.RawURLEncoding.EncodeToString(b))
}

func (b *b64) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	v, err := base64.RawURLEncoding.DecodeString(s)
	*b = v
	return err
}

// coseKey is the EC2 COSE_Key of an ES256 public key.
func coseKey(k *ecdsa.PublicKey) []byte {
	raw, _ := k.Bytes() // 0x04 || X || Y
	return cborMap(
		cborInt(1), cborInt(2), // kty: EC2
		cborInt(3), cborInt(-7), // alg: ES256
		cborInt(-1), cborInt(1), // crv: P-256
		cborInt(-2), cborBytes(raw[1:33]),
		cborInt(-3), cborBytes(raw[33:65]),
	)
}

// The little CBOR the attestation object and COSE key need (RFC 8949 §3: definite lengths only).

func cborHead(major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return []byte{m | byte(n)}
	case n <= 0xff:
		return []byte{m | 24, byte(n)}
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16([]byte{m | 25}, uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32([]byte{m | 26}, uint32(n))
	default:
		return binary.BigEndian.AppendUint64([]byte{m | 27}, n)
	}
}

func cborInt(i int64) []byte {
	if i >= 0 {
		return cborHead(0, uint64(i))
	}
	return cborHead(1, uint64(-1-i))
}

func cborBytes(b []byte) []byte { return append(cborHead(2, uint64(len(b))), b...) }

func cborText(s string) []byte { return append(cborHead(3, uint64(len(s))), s...) }

// cborMap takes encoded keys and values, alternating.
func cborMap(kv ...[]byte) []byte {
	out := cborHead(5, uint64(len(kv)/2))
	for _, b := range kv {
		out = append(out, b...)
	}
	return out
}
