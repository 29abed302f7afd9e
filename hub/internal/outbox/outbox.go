// Package outbox sends citizens the notices the state machine queues (fsm/outbox.go): one per use of their
// data and per channel they chose, in their language, from the operator's templates. The leader runs it.
// A notice is sent at most once: each attempt is claimed in the log first, its outcome recorded after, and
// one whose outcome a leader change lost is given up rather than repeated. Temporary failures (a mail
// server down) are retried with backoff; nothing here can delay or fail a transfer.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/hub/internal/keyring"
	"github.com/mydatafed/mydata/hub/internal/notify"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/ticket"
	"github.com/prometheus/client_golang/prometheus"
)

// Config wires the outbox to the hub.
type Config struct {
	State *fsm.FSM
	Keys  *keyring.Keyring
	// Apply proposes a command and returns once this node applied it (cluster.Apply).
	Apply     func(fsm.Command) error
	Sender    *notify.Sender
	Templates *notify.Templates
	// PortalURL is where the notice sends a citizen who does not recognise a use (the history).
	PortalURL string
	// MaxAttempts bounds the tries of one notice (default 8); Backoff is the wait before attempt n+1
	// (default 30 s doubling, at most an hour).
	MaxAttempts int
	Backoff     func(attempt int) time.Duration
	// Every is how often the outbox looks for due notices (default 2 s).
	Every      time.Duration
	Log        *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Outbox sends the queued notices.
type Outbox struct {
	cfg  Config
	sent *prometheus.CounterVec
}

// New makes the outbox.
func New(cfg Config) (*Outbox, error) {
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 8
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func(n int) time.Duration { return min(30*time.Second<<min(n-1, 10), time.Hour) }
	}
	if cfg.Every == 0 {
		cfg.Every = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	o := &Outbox{cfg: cfg, sent: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_hub_notices_total",
		Help: "Notices of data use to citizens, by channel and outcome (sent, retry, failed, skipped, lost).",
	}, []string{"channel", "outcome"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(o.sent); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Run sends due notices until ctx ends; run it on the leader only (cluster.RunAsLeader).
func (o *Outbox) Run(ctx context.Context) {
	o.recover()
	t := time.NewTicker(o.cfg.Every)
	defer t.Stop()
	for {
		if err := o.Once(ctx); err != nil && ctx.Err() == nil {
			o.cfg.Log.Warn("send notices", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recover gives up the attempts a previous leader claimed and never finished: they may have gone out.
func (o *Outbox) recover() {
	list, err := o.cfg.State.OutboxInFlight()
	if err != nil {
		o.cfg.Log.Warn("read notices in flight", "err", err)
		return
	}
	for _, e := range list {
		o.sent.WithLabelValues(e.Channel, "lost").Inc()
		if err := o.cfg.Apply(&fsm.OutboxResult{ID: e.ID, State: fsm.OutboxFailed, Error: "outcome unknown after a leader change; not repeated", At: o.cfg.Now()}); err != nil {
			o.cfg.Log.Warn("give up a notice in flight", "notice", e.ID, "err", err)
		}
	}
}

// Once sends every due notice.
func (o *Outbox) Once(ctx context.Context) error {
	due, err := o.cfg.State.OutboxDue(o.cfg.Now(), 50)
	if err != nil {
		return err
	}
	for _, e := range due {
		if ctx.Err() != nil {
			return nil
		}
		o.send(ctx, e)
	}
	return nil
}

func (o *Outbox) finish(e fsm.OutboxEntry, state, outcome string, next time.Time, err error) {
	o.sent.WithLabelValues(e.Channel, outcome).Inc()
	msg := ""
	if err != nil {
		msg = err.Error()
		if len(msg) > 500 {
			msg = msg[:500]
		}
	}
	if aerr := o.cfg.Apply(&fsm.OutboxResult{ID: e.ID, State: state, NextAt: next, Error: msg, At: o.cfg.Now()}); aerr != nil {
		o.cfg.Log.Warn("record a notice's outcome", "notice", e.ID, "err", aerr)
	}
}

func (o *Outbox) send(ctx context.Context, e fsm.OutboxEntry) {
	attempt := e.Attempts + 1
	if err := o.cfg.Apply(&fsm.OutboxClaim{ID: e.ID, Attempt: attempt, At: o.cfg.Now()}); err != nil {
		// Claimed by another leader a moment ago, or no leader: it is not ours to send now.
		return
	}
	to, msg, err := o.compose(e)
	if errors.Is(err, errNothingToSend) {
		o.finish(e, fsm.OutboxSkipped, "skipped", time.Time{}, err)
		return
	}
	if err != nil {
		o.finish(e, fsm.OutboxFailed, "failed", time.Time{}, err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if e.Channel == "sms" {
		err = o.cfg.Sender.SendSMS(sctx, to, msg)
	} else {
		err = o.cfg.Sender.SendMail(sctx, to, msg)
	}
	switch {
	case err == nil:
		o.finish(e, fsm.OutboxSent, "sent", time.Time{}, nil)
	case notify.IsPermanent(err) || attempt >= o.cfg.MaxAttempts:
		o.cfg.Log.Warn("notice given up", "notice", e.ID, "attempt", attempt, "err", err)
		o.finish(e, fsm.OutboxFailed, "failed", time.Time{}, err)
	default:
		o.cfg.Log.Info("notice to retry", "notice", e.ID, "attempt", attempt, "err", err)
		o.finish(e, fsm.OutboxPending, "retry", o.cfg.Now().Add(o.cfg.Backoff(attempt)), err)
	}
}

var errNothingToSend = errors.New("the citizen no longer has this channel verified and on")

// composeDecision writes an applicant organisation's notice of what became of its application, in
// Traditional Chinese and then English in one message: an agency's contact reads either, and the hub
// knows no preference for an organisation.
func (o *Outbox) composeDecision(e fsm.OutboxEntry) (to string, msg notify.Message, err error) {
	n, err := o.cfg.State.ApplicantNoticeOf(e.Ref)
	if err != nil {
		return "", msg, err
	}
	if n == nil {
		return "", msg, errNothingToSend
	}
	a := n.Application
	d := notify.Decision{Application: a.ID, Kind: a.Kind, On: a.On, Target: a.Target, Stage: a.Stage, Event: n.Event, EffectiveOn: a.EffectiveOn}
	if len(a.Decisions) > 0 {
		last := a.Decisions[len(a.Decisions)-1]
		d.Reviewer, d.Reason = last.Reviewer, last.Reason
	}
	var parts []notify.Message
	for _, lang := range []struct{ lang, org string }{{notify.LangZhTW, n.OrgNameZh}, {notify.LangEn, n.OrgNameEn}} {
		d.Org = lang.org
		m, err := o.cfg.Templates.Render(notify.KindDecision, lang.lang, d)
		if err != nil {
			return "", msg, err
		}
		parts = append(parts, m)
	}
	msg = notify.Message{Subject: parts[0].Subject + " / " + parts[1].Subject, Body: parts[0].Body + "\n----------------------------------------\n\n" + parts[1].Body}
	msg.SMS = msg.Body
	msg.ID = strings.NewReplacer(":", "-", "/", "-").Replace(e.ID)
	return n.To, msg, nil
}

// compose writes the notice of a use in the citizen's language: which data, to whom, when.
func (o *Outbox) compose(e fsm.OutboxEntry) (to string, msg notify.Message, err error) {
	if o.cfg.Sender == nil || o.cfg.Templates == nil {
		return "", msg, errors.New("no sender configured (notify.mail or notify.sms)")
	}
	if e.Kind == fsm.OutboxKindApplication {
		return o.composeDecision(e)
	}
	contact, err := o.cfg.State.ContactOf(e.SubjectHash)
	if err != nil {
		return "", msg, err
	}
	var sealed []byte
	switch {
	case contact == nil:
		return "", msg, errNothingToSend
	case e.Channel == "email" && contact.NotifyEmail && !contact.EmailVerifiedAt.IsZero():
		sealed = contact.EmailSealed
	case e.Channel == "sms" && contact.NotifySMS && !contact.PhoneVerifiedAt.IsZero():
		sealed = contact.PhoneSealed
	default:
		return "", msg, errNothingToSend
	}
	// The portal seals addresses under "contact <channel>" (portal/logins.go).
	to, err = o.cfg.Keys.OpenSubject(sealed, "contact "+e.Channel)
	if err != nil {
		return "", msg, fmt.Errorf("open the address: %w", err)
	}
	consentID, readyDataset, isReady := strings.Cut(e.Ref, "/")
	c, err := o.cfg.State.Consent(consentID)
	if err != nil || c == nil {
		return "", msg, fmt.Errorf("the consent %s is gone", consentID)
	}
	lang := contact.Lang
	if lang == "" {
		lang = notify.LangZhTW
	}
	pick := func(zh, en string) string {
		if lang == notify.LangZhTW || en == "" {
			return zh
		}
		return en
	}
	portal := strings.TrimSuffix(o.cfg.PortalURL, "/")
	if e.Kind == fsm.OutboxKindReady && isReady {
		name := readyDataset
		if d, err := o.cfg.State.Dataset(readyDataset); err == nil && d != nil {
			name = pick(d.NameZh, d.NameEn)
		}
		// The tickets of a download live as long as an asynchronous dataset's may.
		ready := notify.Ready{Datasets: []string{name}, Until: c.UsedAt.Add(ticket.MaxAsyncLife), URL: portal + "/download/" + c.ID}
		if msg, err = o.cfg.Templates.Render(notify.KindReady, lang, ready); err != nil {
			return "", msg, err
		}
		msg.ID = strings.NewReplacer(":", "-", "/", "-").Replace(e.ID)
		return to, msg, nil
	}
	use := notify.Use{Mode: notify.UseService, At: c.UsedAt, HistoryURL: portal + "/history"}
	switch c.Mode {
	case hubapi.ModeCounter:
		use.Mode = notify.UseCounter
	case hubapi.ModeDownload:
		use.Mode = notify.UseDownload
	}
	if svc, err := o.cfg.State.Service(c.Service); err == nil && svc != nil {
		use.Recipient = pick(svc.NameZh, svc.NameEn)
		if org, err := o.cfg.State.Org(svc.SPOrg); err == nil && org != nil {
			use.Recipient = pick(org.NameZh, org.NameEn) + " · " + use.Recipient
		}
	}
	for _, id := range c.Datasets {
		name := id
		if d, err := o.cfg.State.Dataset(id); err == nil && d != nil {
			name = pick(d.NameZh, d.NameEn)
		}
		use.Datasets = append(use.Datasets, name)
	}
	msg, err = o.cfg.Templates.Render(notify.KindUse, lang, use)
	if err != nil {
		return "", msg, err
	}
	msg.ID = strings.NewReplacer(":", "-").Replace(e.ID)
	return to, msg, nil
}
