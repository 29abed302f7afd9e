package certlogin

import "errors"

// Error is one reason a certificate login failed, with the words the portal shows the citizen. Verify
// wraps exactly one of the sentinels below (fmt.Errorf("%w: detail", ErrExpired)), so callers branch
// with errors.Is and read the message with errors.As; the detail after the colon is for the logs.
type Error struct {
	// Code is stable and short, for metrics labels, the portal's templates and Error.
	Code string
	Zh   string
	En   string
}

func (e *Error) Error() string { return "certlogin: " + e.Code }

// The reasons Verify gives. Their order here is the order Verify checks in.
var (
	ErrMalformed = &Error{"malformed",
		"簽章資料格式錯誤或過大，請重新操作。",
		"The signature data is malformed or too large; please try again."}
	ErrChallenge = &Error{"challenge",
		"簽章內容不是本次登入的挑戰碼，請重新整理頁面後再試一次。",
		"The signature is not over this login's challenge; reload the page and try again."}
	ErrBadSignature = &Error{"bad_signature",
		"簽章驗證失敗。",
		"The signature does not verify."}
	ErrExpired = &Error{"expired",
		"憑證已逾有效期限，請向發卡機關申請展期或換發。",
		"The certificate has expired; ask the issuing authority to renew it."}
	ErrNotYetValid = &Error{"not_yet_valid",
		"憑證尚未生效，請確認電腦時間是否正確。",
		"The certificate is not valid yet; check your computer's clock."}
	ErrUntrusted = &Error{"untrusted",
		"憑證不是由本登入方式所接受的憑證機構簽發。",
		"The certificate was not issued by a certification authority this login method accepts."}
	ErrKeyUsage = &Error{"key_usage",
		"此憑證不能用於數位簽章，請改用卡片上的簽章用憑證。",
		"This certificate may not be used for digital signatures; use the card's signing certificate."}
	ErrNotYours = &Error{"not_yours",
		"憑證不屬於您輸入的身分證統一編號（或統一編號）。",
		"The certificate does not belong to the ID number you entered."}
	ErrRevoked = &Error{"revoked",
		"憑證已被廢止或暫時停用。",
		"The certificate has been revoked or suspended."}
	ErrRevocationUnknown = &Error{"revocation_unknown",
		"目前無法確認憑證是否已被廢止，請稍後再試。",
		"The certificate's revocation status cannot be checked right now; please try again later."}
)

// Reasons lists every reason, for tests and for the portal's message catalogue.
func Reasons() []*Error {
	return []*Error{ErrMalformed, ErrChallenge, ErrBadSignature, ErrExpired, ErrNotYetValid,
		ErrUntrusted, ErrKeyUsage, ErrNotYours, ErrRevoked, ErrRevocationUnknown}
}

// Reason returns the reason err carries, or nil when it carries none.
func Reason(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
