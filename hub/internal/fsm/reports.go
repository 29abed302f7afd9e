package fsm

import (
	"slices"
	"sort"
	"time"

	"github.com/mydatafed/mydata/hub/internal/oplog"
)

// Reports the supervising authorities ask for (介接作業要點 point 7), read from receipts and the operator
// log. A transfer is one ticket; its outcome is the data provider's receipt when there is one (the sender
// knows what left), else the service provider's.

// TransferRow is one month's transfers of one dataset for one service ("" for citizens' own downloads).
type TransferRow struct {
	Month     string `json:"month"` // YYYY-MM, Taipei
	Service   string `json:"service"`
	Dataset   string `json:"dataset"`
	Transfers int    `json:"transfers"`
	Delivered int    `json:"delivered"`
	NoRecord  int    `json:"no_record"`
	Pending   int    `json:"pending"`
	Refused   int    `json:"refused"`
	Failed    int    `json:"failed"`
	// FailureRate is (failed + refused) / transfers.
	FailureRate float64 `json:"failure_rate"`
}

// transfer is one ticket's outcome.
type transfer struct {
	ticket, consent, service, subject, dataset, outcome string
	at                                                  time.Time
	bytes                                               int64
}

// transfers reads the transfers whose time is in [from, to), one per ticket.
func (f *FSM) transfers(from, to time.Time) ([]transfer, error) {
	rows, err := f.db.Query(`SELECT r.ticket_id, r.role, r.consent_id, coalesce(c.service, ''), coalesce(c.subject, ''), r.dataset, r.outcome, r.at, r.bytes
		FROM receipts r LEFT JOIN consents c ON c.id = r.consent_id WHERE r.at >= ? AND r.at < ? ORDER BY r.at, r.ticket_id, r.role`, ms(from), ms(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byTicket := map[string]int{}
	var out []transfer
	for rows.Next() {
		var t transfer
		var role string
		var at int64
		if err := rows.Scan(&t.ticket, &role, &t.consent, &t.service, &t.subject, &t.dataset, &t.outcome, &at, &t.bytes); err != nil {
			return nil, err
		}
		t.at = fromMS(at)
		if i, ok := byTicket[t.ticket]; ok {
			if role == "dp" {
				out[i].outcome = t.outcome
			}
			continue
		}
		byTicket[t.ticket] = len(out)
		out = append(out, t)
	}
	return out, rows.Err()
}

// TransferReport counts the transfers of [from, to) by month, service and dataset.
func (f *FSM) TransferReport(from, to time.Time) ([]TransferRow, error) {
	ts, err := f.transfers(from, to)
	if err != nil {
		return nil, err
	}
	rows := map[[3]string]*TransferRow{}
	for _, t := range ts {
		k := [3]string{t.at.In(Taipei).Format("2006-01"), t.service, t.dataset}
		r := rows[k]
		if r == nil {
			r = &TransferRow{Month: k[0], Service: k[1], Dataset: k[2]}
			rows[k] = r
		}
		r.Transfers++
		switch t.outcome {
		case "delivered":
			r.Delivered++
		case "no_record":
			r.NoRecord++
		case "pending":
			r.Pending++
		case "refused":
			r.Refused++
		default:
			r.Failed++
		}
	}
	out := make([]TransferRow, 0, len(rows))
	for _, r := range rows {
		r.FailureRate = float64(r.Failed+r.Refused) / float64(r.Transfers)
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Month < b.Month || a.Month == b.Month && (a.Service < b.Service || a.Service == b.Service && a.Dataset < b.Dataset)
	})
	return out, nil
}

// ReviewRow is one transfer an SP's service received, as its yearly internal review needs it: what,
// when, for whom (the subject's keyed hash, never the national ID) and the outcome.
type ReviewRow struct {
	At      time.Time `json:"at"`
	Service string    `json:"service"`
	Dataset string    `json:"dataset"`
	Consent string    `json:"consent_id"`
	Ticket  string    `json:"ticket_id"`
	Subject string    `json:"subject_hash"`
	Outcome string    `json:"outcome"`
	Bytes   int64     `json:"bytes"`
}

// ReviewReport is the year's transfers (Taipei calendar year) to the services of organisation org.
func (f *FSM) ReviewReport(org string, year int) ([]ReviewRow, error) {
	svcs, err := f.Services()
	if err != nil {
		return nil, err
	}
	var mine []string
	for _, s := range svcs {
		if s.SPOrg == org {
			mine = append(mine, s.ID)
		}
	}
	from := time.Date(year, 1, 1, 0, 0, 0, 0, Taipei)
	ts, err := f.transfers(from, from.AddDate(1, 0, 0))
	if err != nil {
		return nil, err
	}
	out := []ReviewRow{}
	for _, t := range ts {
		if slices.Contains(mine, t.service) {
			out = append(out, ReviewRow{At: t.at, Service: t.service, Dataset: t.dataset, Consent: t.consent, Ticket: t.ticket, Subject: t.subject, Outcome: t.outcome, Bytes: t.bytes})
		}
	}
	return out, nil
}

// readOnlyOps are operator log entries that record an action but change no state.
var readOnlyOps = []string{"audit export", "backup", "report transfers", "report review", "report changes"}

// ChangeReport lists the changes of [from, to): the operator log's entries that changed the state, the
// hub's own (scheduled changes taking effect) included.
func (f *FSM) ChangeReport(from, to time.Time) ([]oplog.Entry, error) {
	all, err := f.OperatorLog(from)
	if err != nil {
		return nil, err
	}
	out := []oplog.Entry{}
	for _, e := range all {
		if e.At.Before(to) && e.Outcome == oplog.OutcomeOK && !slices.Contains(readOnlyOps, e.Op) {
			out = append(out, e)
		}
	}
	return out, nil
}
