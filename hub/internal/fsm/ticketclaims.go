package fsm

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
)

// Connector HA. A dataset served by several connectors gets tickets that any of them may serve, once in
// all. Each connector keeps its own record of the tickets it served, which is enough when one connector
// serves a ticket; across several, single use is decided here, in the raft log: a connector claims the
// ticket before it reads the agency's data, the first claim wins, and a claim is released only when
// nothing was sent (the agency failed or was not ready), so that the SP may try the next connector.

// TicketClaim claims a ticket for one of its connectors.
type TicketClaim struct {
	TicketID string    `json:"ticket_id"`
	DP       string    `json:"dp"` // the claiming connector's SPIFFE ID
	Expires  time.Time `json:"expires"`
	Now      time.Time `json:"now"`
}

// TicketRelease ends a claim: Spent says the connector sent the ticket's data, or began to; otherwise the
// claim is removed and another connector may serve the ticket.
type TicketRelease struct {
	TicketID string    `json:"ticket_id"`
	DP       string    `json:"dp"`
	Spent    bool      `json:"spent"`
	Now      time.Time `json:"now"`
}

func (c *TicketClaim) Validate() error {
	switch {
	case c.TicketID == "" || len(c.TicketID) > 64 || c.DP == "" || len(c.DP) > 2048:
		return errors.New("ticket claim: ticket id and dp are required")
	case !c.Expires.After(c.Now):
		return fmt.Errorf("ticket claim %s: the ticket has expired", c.TicketID)
	}
	return nil
}

func (c *TicketRelease) Validate() error {
	if c.TicketID == "" || len(c.TicketID) > 64 || c.DP == "" || len(c.DP) > 2048 {
		return errors.New("ticket release: ticket id and dp are required")
	}
	return nil
}

// claimRetention is how long a claim outlives its ticket. Now is the proposing node's clock, and a
// connector accepts a ticket a little past its expiry by its own: a claim dropped at the very expiry, by a
// node whose clock runs ahead, could let another connector serve the ticket again. Connectors keep their
// own records of served tickets an hour past expiry too.
const claimRetention = time.Hour

func applyTicketClaim(tx *sql.Tx, c *TicketClaim) (Result, bool, error) {
	// Claims of expired tickets go as new ones come: a ticket lives at most 90 minutes.
	if _, err := tx.Exec(`DELETE FROM ticket_claims WHERE expires < ?`, ms(c.Now.Add(-claimRetention))); err != nil {
		return Result{}, false, err
	}
	var dp string
	var spent bool
	err := tx.QueryRow(`SELECT dp, spent FROM ticket_claims WHERE ticket_id = ?`, c.TicketID).Scan(&dp, &spent)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		_, err = tx.Exec(`INSERT INTO ticket_claims(ticket_id, dp, spent, expires, claimed_at) VALUES (?, ?, 0, ?, ?)`,
			c.TicketID, c.DP, ms(c.Expires), ms(c.Now))
		return Result{}, false, err
	case err != nil:
		return Result{}, false, err
	case spent:
		return refuse(Gone, "ticket %s was already used by %s", c.TicketID, dp), false, nil
	case dp != c.DP:
		return refuse(Conflict, "ticket %s is being served by %s", c.TicketID, dp), false, nil
	}
	// The same connector claiming again (its answer to an earlier claim was lost) holds the claim still.
	return Result{}, false, nil
}

func applyTicketRelease(tx *sql.Tx, c *TicketRelease) (Result, bool, error) {
	var dp string
	var spent bool
	err := tx.QueryRow(`SELECT dp, spent FROM ticket_claims WHERE ticket_id = ?`, c.TicketID).Scan(&dp, &spent)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return refuse(NotFound, "ticket %s is not claimed", c.TicketID), false, nil
	case err != nil:
		return Result{}, false, err
	case dp != c.DP:
		return refuse(Forbidden, "ticket %s is claimed by %s, not %s", c.TicketID, dp, c.DP), false, nil
	case spent:
		return refuse(Gone, "ticket %s was already used", c.TicketID), false, nil
	case c.Spent:
		_, err = tx.Exec(`UPDATE ticket_claims SET spent = 1 WHERE ticket_id = ?`, c.TicketID)
	default:
		_, err = tx.Exec(`DELETE FROM ticket_claims WHERE ticket_id = ?`, c.TicketID)
	}
	return Result{}, false, err
}

// ConnectorsSeen records that hub nodes heard from connectors (each holds the directory's long-poll
// open). It touches only the liveness table, which no lookup caches, so the nodes may report often.
type ConnectorsSeen struct {
	// Connectors are "org/name".
	Connectors []string  `json:"connectors"`
	Now        time.Time `json:"now"`
}

// ConnectorsLiveness marks down the active connectors no hub node has heard from since Before, and up
// again those marked down that were heard from since: the directory says which are up.
type ConnectorsLiveness struct {
	Before time.Time `json:"before"`
	Now    time.Time `json:"now"`
}

func (c *ConnectorsSeen) Validate() error {
	if len(c.Connectors) == 0 || len(c.Connectors) > 10000 {
		return errors.New("connectors seen: between 1 and 10000 connectors")
	}
	for _, id := range c.Connectors {
		if org, name, ok := strings.Cut(id, "/"); !ok || org == "" || name == "" {
			return fmt.Errorf("connectors seen: %q is not org/name", id)
		}
	}
	return nil
}

func (c *ConnectorsLiveness) Validate() error {
	if !c.Before.Before(c.Now) {
		return errors.New("connectors liveness: before must be earlier than now")
	}
	return nil
}

func applyConnectorsSeen(tx *sql.Tx, c *ConnectorsSeen) (Result, bool, error) {
	for _, id := range c.Connectors {
		org, name, _ := strings.Cut(id, "/")
		if _, err := tx.Exec(`INSERT INTO connector_seen(org, name, last_seen) VALUES (?, ?, ?)
			ON CONFLICT(org, name) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`, org, name, ms(c.Now)); err != nil {
			return Result{}, false, err
		}
	}
	return Result{}, false, nil
}

// Which connectors change state at a liveness check: active ones not heard from since ? (nor created
// since) go down; down ones heard from since ? come up.
const (
	goingDown = `status = ? AND down = 0 AND created_at < ? AND coalesce((SELECT last_seen FROM connector_seen s WHERE s.org = connectors.org AND s.name = connectors.name), 0) < ?`
	comingUp  = `down = 1 AND coalesce((SELECT last_seen FROM connector_seen s WHERE s.org = connectors.org AND s.name = connectors.name), 0) >= ?`
)

func applyConnectorsLiveness(tx *sql.Tx, c *ConnectorsLiveness) (Result, bool, error) {
	before := ms(c.Before)
	down, err := tx.Exec(`UPDATE connectors SET down = 1 WHERE `+goingDown, hubapi.StatusActive, before, before)
	if err != nil {
		return Result{}, false, err
	}
	up, err := tx.Exec(`UPDATE connectors SET down = 0 WHERE `+comingUp, before)
	if err != nil {
		return Result{}, false, err
	}
	nd, _ := down.RowsAffected()
	nu, _ := up.RowsAffected()
	return Result{}, nd+nu > 0, nil
}

// LivenessDue says whether ConnectorsLiveness{Before: before} would change any connector: the leader
// proposes it only then, so an idle federation writes nothing.
func (f *FSM) LivenessDue(before time.Time) (bool, error) {
	var n int
	err := f.db.QueryRow(`SELECT (SELECT count(*) FROM connectors WHERE `+goingDown+`) + (SELECT count(*) FROM connectors WHERE `+comingUp+`)`,
		hubapi.StatusActive, ms(before), ms(before), ms(before)).Scan(&n)
	return n > 0, err
}
