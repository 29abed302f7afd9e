package server

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/config"
	"github.com/mydatafed/mydata/hub/internal/identity/certlogin"
	"github.com/mydatafed/mydata/hub/internal/identity/oidclogin"
	"github.com/mydatafed/mydata/hub/internal/identity/twodocs"
	"github.com/mydatafed/mydata/hub/internal/notify"
	"github.com/mydatafed/mydata/hub/internal/portal"
	"github.com/prometheus/client_golang/prometheus"
)

// buildLogins makes the login methods hub.yaml enables. Each method checks its own files here, at start,
// so that a bad root certificate or secret file stops the hub with the key that names it rather than
// failing a citizen's login later. Runners are the methods' background work (CRL refresh).
func buildLogins(cfg config.Config, reg prometheus.Registerer) (portal.Logins, []func(context.Context) error, error) {
	id := cfg.Identity
	l := portal.Logins{Lockout: portal.Lockout{MaxFailures: id.Lockout.MaxFailures, Window: id.Lockout.Window, Duration: id.Lockout.Duration}}
	var runners []func(context.Context) error
	if !cfg.Notify.Mail.IsZero() || !cfg.Notify.SMS.IsZero() {
		sender, err := notify.New(notify.Config{Mail: cfg.Notify.Mail, SMS: cfg.Notify.SMS, Registerer: reg})
		if err != nil {
			return l, nil, fmt.Errorf("notify: %w", err)
		}
		l.Notify = sender
	}
	tmpl, err := notify.LoadTemplates(cfg.Notify.Templates)
	if err != nil {
		return l, nil, fmt.Errorf("notify.templates: %w", err)
	}
	l.Templates = tmpl
	if id.OTP.Enabled {
		l.OTP = &portal.OTPLogin{Level: id.OTP.Level}
	}
	if id.Passkey.Enabled {
		l.Passkey = &portal.PasskeyLogin{Config: id.Passkey.Config, Level: id.Passkey.Level, RegisterLevel: id.Passkey.RegisterLevel}
	}
	client := &http.Client{Timeout: 15 * time.Second}
	for i, m := range id.Certificates {
		v, err := certlogin.New(m.Config, client, nil)
		if err != nil {
			return l, nil, fmt.Errorf("identity.certificates[%d]: %w", i, err)
		}
		l.Certificates = append(l.Certificates, portal.CertLogin{Verifier: v, NameZh: m.NameZh, NameEn: m.NameEn, Level: m.Level, SignerURL: m.SignerURL})
		runners = append(runners, v.Run)
	}
	if id.TwoDocs.Enabled {
		c, err := twodocs.New(id.TwoDocs.Config)
		if err != nil {
			return l, nil, fmt.Errorf("identity.two_docs: %w", err)
		}
		l.TwoDocs = &portal.TwoDocsLogin{Client: c, Level: id.TwoDocs.Level}
	}
	for i, m := range id.OIDC {
		rp, err := oidclogin.New(context.Background(), m.Config, nil)
		if err != nil {
			return l, nil, fmt.Errorf("identity.oidc[%d]: %w", i, err)
		}
		top := m.DefaultLevel
		for _, v := range m.ACRLevels {
			top = max(top, v)
		}
		for _, v := range m.AMRLevels {
			top = max(top, v)
		}
		l.OIDC = append(l.OIDC, portal.OIDCLogin{RP: rp, NameZh: m.NameZh, NameEn: m.NameEn, Level: top})
	}
	return l, runners, nil
}
