package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Downloads (個人化資料下載): the citizen asks for their own datasets on the portal, and the hub relays them,
// sealed to a key only the citizen's browser holds, from the data providers' connectors. A download consent
// is a consent row of mode download with no service, recorded as used at once: the tickets are issued in
// the same step, so there is no code to redeem later, and recording it twice is refused (single use).

// DownloadRecord records a download consent, used when recorded, and queues its notices.
type DownloadRecord struct {
	Consent Consent   `json:"consent"`
	Now     time.Time `json:"now"`
}

// DownloadPending records that a dataset of a download is being prepared by its agency (an asynchronous
// dataset answered "not ready"), and queues the citizen's "ready" notice for ReadyAt, the time the agency
// named. A dataset is announced once.
type DownloadPending struct {
	ConsentID string    `json:"consent_id"`
	Dataset   string    `json:"dataset"`
	ReadyAt   time.Time `json:"ready_at"`
	Now       time.Time `json:"now"`
}

// OutboxKindReady is a notice that a download's dataset is ready; its ref is "<consent id>/<dataset>".
const OutboxKindReady = "ready"

func (c *DownloadRecord) Validate() error {
	k := c.Consent
	switch {
	case k.ID == "" || k.Subject == "" || len(k.Datasets) == 0:
		return errors.New("download: id, subject and datasets are required")
	case k.Service != "":
		return fmt.Errorf("download %s: a download has no service", k.ID)
	case k.Mode != hubapi.ModeDownload:
		return fmt.Errorf("download %s: mode is %q, not download", k.ID, k.Mode)
	case len(k.SubjectSealed) != 0:
		return fmt.Errorf("download %s: a used consent keeps no sealed national ID", k.ID)
	case c.Now.IsZero():
		return fmt.Errorf("download %s: the time is required", k.ID)
	}
	return nil
}

func (c *DownloadPending) Validate() error {
	switch {
	case c.ConsentID == "" || c.Dataset == "" || strings.Contains(c.ConsentID, "/"):
		return errors.New("download pending: consent id and dataset are required")
	case c.ReadyAt.Before(c.Now):
		return fmt.Errorf("download pending %s: ready before now", c.ConsentID)
	}
	return nil
}

func applyDownloadRecord(tx *sql.Tx, c *DownloadRecord) (Result, bool, error) {
	k := c.Consent
	var one int
	switch err := tx.QueryRow(`SELECT 1 FROM consents WHERE id = ?`, k.ID).Scan(&one); {
	case err == nil:
		return refuse(Conflict, "download %s was already made; a consent is used once", k.ID), false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return Result{}, false, err
	}
	k.State, k.DecidedAt, k.ExpiresAt = ConsentUsed, c.Now, c.Now
	if k.CreatedAt.IsZero() {
		k.CreatedAt = c.Now
	}
	k.SubjectSealed = nil
	if err := insertConsent(tx, k, ""); err != nil {
		return Result{}, false, err
	}
	if _, err := tx.Exec(`UPDATE consents SET used_at = ? WHERE id = ?`, ms(c.Now), k.ID); err != nil {
		return Result{}, false, err
	}
	return Result{}, false, enqueueUse(tx, k.ID, k.Subject, c.Now)
}

func applyDownloadPending(tx *sql.Tx, c *DownloadPending) (Result, bool, error) {
	k, err := consentByID(tx, c.ConsentID)
	if err != nil {
		return Result{}, false, err
	}
	switch {
	case k == nil || k.Mode != hubapi.ModeDownload:
		return refuse(NotFound, "no download %s", c.ConsentID), false, nil
	case !containsString(k.Datasets, c.Dataset):
		return refuse(NotFound, "download %s has no dataset %s", c.ConsentID, c.Dataset), false, nil
	}
	return Result{}, false, enqueue(tx, OutboxKindReady, c.ConsentID+"/"+c.Dataset, k.Subject, c.Now, c.ReadyAt)
}

func containsString(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
