package portal

import (
	"slices"

	"github.com/mydatafed/mydata/hub/internal/identity"
	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Method is a way to prove one's identity, with the assurance level the configuration gives it.
type Method struct {
	ID     string
	NameZh string
	NameEn string
	Level  int
	// Kind says which page runs the method (kindCert, kindOTP, ...; kindDev for the development login's).
	Kind string
}

// DevMethods are the real platform's methods, strongest first, as the development login simulates them.
var DevMethods = []Method{
	{"moica", "自然人憑證", "Citizen digital certificate (MOICA)", hubapi.AALHigh, kindDev},
	{"fin-card", "晶片金融卡", "Chip bank card", hubapi.AALHigh, kindDev},
	{"tw-fido", "TW FidO", "TW FidO", hubapi.AALMedium, kindDev},
	{"nhi-card", "健保卡", "NHI card", hubapi.AALMedium, kindDev},
	{"two-docs", "雙證件", "Two identity documents", hubapi.AALMedium, kindDev},
	{"otp", "簡訊/電子郵件一次性密碼", "One-time code by SMS or e-mail", hubapi.AALLow, kindDev},
}

func (s *Server) method(id string) (Method, bool) {
	i := slices.IndexFunc(s.methods, func(m Method) bool { return m.ID == id })
	if i < 0 {
		return Method{}, false
	}
	return s.methods[i], true
}

// requirement is what a dataset asks of the login.
func requirement(d hubapi.Dataset) identity.Requirement {
	return identity.Requirement{MinLevel: d.MinAAL, Methods: d.Methods}
}

// sufficient are the methods whose login meets every requirement.
func (s *Server) sufficient(reqs []identity.Requirement) []Method {
	var out []Method
	for _, m := range s.methods {
		if identity.Met(m.ID, m.Level, reqs...) {
			out = append(out, m)
		}
	}
	return out
}
