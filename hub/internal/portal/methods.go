package portal

import "github.com/mydatafed/mydata/pkg/hubapi"

// Method is a way to prove one's identity, with the assurance level it gives.
type Method struct {
	ID     string
	NameZh string
	NameEn string
	AAL    int
}

// Methods are the login methods of the real platform, strongest first. The development login lets a tester
// pick one; the identity issue brings the real ones.
var Methods = []Method{
	{"moica", "自然人憑證", "Citizen digital certificate (MOICA)", hubapi.AALHigh},
	{"fin-card", "晶片金融卡", "Chip bank card", hubapi.AALHigh},
	{"tw-fido", "TW FidO", "TW FidO", hubapi.AALMedium},
	{"nhi-card", "健保卡", "NHI card", hubapi.AALMedium},
	{"two-docs", "雙證件", "Two identity documents", hubapi.AALMedium},
	{"otp", "簡訊/電子郵件一次性密碼", "One-time code by SMS or e-mail", hubapi.AALLow},
}

func method(id string) (Method, bool) {
	for _, m := range Methods {
		if m.ID == id {
			return m, true
		}
	}
	return Method{}, false
}
