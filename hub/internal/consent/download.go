package consent

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mydatafed/mydata/hub/internal/fsm"
	"github.com/mydatafed/mydata/pkg/fedid"
	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/seal"
	"github.com/mydatafed/mydata/pkg/ticket"
)

// Downloads (個人化資料下載): the citizen's browser makes a key pair whose private half never leaves it, and
// the hub issues one ticket per dataset naming that key as the recipient and the hub as the redeemer. The
// hub presents them to the data providers' connectors and relays what comes back, which it cannot open.

// DownloadError is a refused download: the HTTP status and why.
type DownloadError struct {
	Status      int
	Description string
}

func (e *DownloadError) Error() string { return e.Description }

// IssueDownload records the download of c.Datasets by the citizen whose national ID is c.Subject (single
// use: a consent id is recorded once) and returns the tickets, or why a dataset has none. browserKey is the
// browser's DHKEM(X25519) public key.
func (s *Service) IssueDownload(c fsm.Consent, browserKey []byte, now time.Time) (*hubapi.RedeemResponse, error) {
	if _, err := s.keys.Parse(seal.KEMX25519, browserKey); err != nil {
		return nil, &DownloadError{Status: http.StatusBadRequest, Description: "public_key must be a 32-byte X25519 public key"}
	}
	subject := c.Subject
	hash, err := s.cfg.Keys.LookupHash(subject)
	if err != nil {
		return nil, err
	}
	c.Subject, c.Mode, c.Service, c.SubjectSealed = hash, hubapi.ModeDownload, "", nil
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if err := s.cfg.Apply(&fsm.DownloadRecord{Consent: c, Now: now}); err != nil {
		return nil, err
	}
	s.remember(&c)
	hub, err := fedid.Hub(s.cfg.TrustDomain, s.cfg.NodeID)
	if err != nil {
		return nil, err
	}
	resp := &hubapi.RedeemResponse{ConsentID: c.ID, AAL: c.AAL, LoginMethod: c.LoginMethod}
	for _, id := range c.Datasets {
		t, unavailable, err := s.ticketFor(&c, subject, id, hub, ticket.ModeDownload, browserKey, seal.KEMX25519, now)
		if err != nil {
			return nil, fmt.Errorf("ticket for %s: %w", id, err)
		}
		if unavailable != nil {
			resp.Unavailable = append(resp.Unavailable, *unavailable)
			continue
		}
		resp.Tickets = append(resp.Tickets, *t)
	}
	return resp, nil
}

// DownloadPending records that an agency is preparing a dataset of a download, so that the citizen is told
// when it said it would be ready.
func (s *Service) DownloadPending(consentID, dataset string, readyAt, now time.Time) error {
	return s.cfg.Apply(&fsm.DownloadPending{ConsentID: consentID, Dataset: dataset, ReadyAt: readyAt, Now: now})
}
