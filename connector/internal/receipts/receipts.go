// Package receipts is a connector's outbox of transfer receipts for the hub: each transfer's metadata is
// written here in the same breath as the audit log, then sent, and retried with backoff until the hub
// accepts it, across restarts and hub outages.
package receipts

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/mydatafed/mydata/pkg/sqlitedb"
	"github.com/prometheus/client_golang/prometheus"
)

// Outbox holds receipts until the hub takes them.
type Outbox struct {
	db   *sql.DB
	hub  *hubapi.Client
	log  *slog.Logger
	wake chan struct{}
	sent *prometheus.CounterVec
}

// Open opens the outbox at path.
func Open(path string, hub *hubapi.Client, log *slog.Logger, reg prometheus.Registerer) (*Outbox, error) {
	// One connection: every transfer adds to it while batches leave it.
	db, err := sqlitedb.Open(path, sqlitedb.Options{OneConn: true})
	if err != nil {
		return nil, err
	}
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS outbox (
		id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
		next_at INTEGER NOT NULL, last_error TEXT NOT NULL DEFAULT '')`); err != nil {
		db.Close()
		return nil, err
	}
	o := &Outbox{db: db, hub: hub, log: log, wake: make(chan struct{}, 1)}
	o.sent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mydata_connector_receipts_sent_total",
		Help: "Receipt deliveries to the hub by result (accepted, retry).",
	}, []string{"result"})
	if reg != nil {
		backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "mydata_connector_receipts_backlog",
			Help: "Receipts waiting to be accepted by the hub.",
		}, func() float64 { n, _ := o.Pending(context.Background()); return float64(n) })
		for _, c := range []prometheus.Collector{o.sent, backlog} {
			if err := reg.Register(c); err != nil {
				db.Close()
				return nil, err
			}
		}
	}
	return o, nil
}

// Close closes the outbox.
func (o *Outbox) Close() error { return o.db.Close() }

// Add queues a receipt and wakes the sender.
func (o *Outbox) Add(ctx context.Context, r hubapi.ReceiptRequest) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := o.db.ExecContext(ctx, `INSERT INTO outbox(body, next_at) VALUES (?, ?)`, string(b), time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("queue receipt: %w", err)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return nil
}

// Pending counts receipts not yet accepted.
func (o *Outbox) Pending(ctx context.Context) (int, error) {
	var n int
	err := o.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
	return n, err
}

// Run sends due receipts until ctx ends.
func (o *Outbox) Run(ctx context.Context) error {
	for {
		wait := o.sendDue(ctx)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-o.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// sendDue sends what is due and says how long to sleep.
func (o *Outbox) sendDue(ctx context.Context) time.Duration {
	now := time.Now().UnixMilli()
	rows, err := o.db.QueryContext(ctx, `SELECT id, body, attempts FROM outbox WHERE next_at <= ? ORDER BY id LIMIT ?`, now, batchesAtOnce*hubapi.MaxReceiptBatch)
	if err != nil {
		return 5 * time.Second
	}
	var due []item
	for rows.Next() {
		var it item
		if rows.Scan(&it.id, &it.body, &it.attempts) == nil {
			due = append(due, it)
		}
	}
	rows.Close()
	// Batches rather than one request per receipt: each request costs the hub a raft entry, and one at a
	// time the outbox fell behind the transfers it reports (measured: receipts arrived 3 s after the last
	// exchange at 230 exchanges/s). What comes due while a batch is in flight goes in the next one.
	var wg sync.WaitGroup
	var recovered atomic.Bool
	for batch := range slices.Chunk(due, hubapi.MaxReceiptBatch) {
		wg.Go(func() {
			if o.send(ctx, batch) {
				recovered.Store(true)
			}
		})
	}
	wg.Wait()
	if recovered.Load() {
		// The hub is back: what waited out its backoff during the outage is due now.
		o.db.ExecContext(ctx, `UPDATE outbox SET next_at = ? WHERE next_at > ?`, now, now)
		return 0
	}
	if len(due) == batchesAtOnce*hubapi.MaxReceiptBatch {
		return 0
	}
	var next sql.NullInt64
	o.db.QueryRowContext(ctx, `SELECT min(next_at) FROM outbox`).Scan(&next)
	if !next.Valid {
		return time.Minute
	}
	return max(time.Until(time.UnixMilli(next.Int64)), 10*time.Millisecond)
}

// batchesAtOnce is how many batches the outbox has in flight at most.
const batchesAtOnce = 4

// item is a receipt in the outbox.
type item struct {
	id       int64
	body     string
	attempts int
}

// send posts one batch. Accepted receipts leave the outbox; the others wait out a backoff. It reports
// whether the hub accepted a receipt that had failed before, which means an outage has ended.
func (o *Outbox) send(ctx context.Context, batch []item) (recovered bool) {
	var req hubapi.ReceiptBatch
	var sent []item
	for _, it := range batch {
		var r hubapi.ReceiptRequest
		if err := json.Unmarshal([]byte(it.body), &r); err != nil {
			o.log.Error("dropping an unreadable receipt", "id", it.id, "err", err)
			o.db.ExecContext(ctx, `DELETE FROM outbox WHERE id = ?`, it.id)
			continue
		}
		req.Receipts = append(req.Receipts, r)
		sent = append(sent, it)
	}
	if len(sent) == 0 {
		return false
	}
	var res hubapi.ReceiptBatchResult
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err := o.hub.Do(rctx, http.MethodPost, hubapi.PathReceipts, req, &res)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	if err == nil && len(res.Results) != len(sent) {
		err = fmt.Errorf("the hub answered %d receipts of %d", len(res.Results), len(sent))
	}
	var done []any
	for i, it := range sent {
		why := err
		if why == nil && res.Results[i].Status != http.StatusNoContent {
			why = &hubapi.Error{Status: res.Results[i].Status, Message: res.Results[i].Error}
		}
		if why == nil {
			done = append(done, it.id)
			recovered = recovered || it.attempts > 0
			continue
		}
		o.sent.WithLabelValues("retry").Inc()
		backoff := min(time.Second<<min(it.attempts, 10), 10*time.Minute)
		backoff = backoff/2 + rand.N(backoff/2+1)
		if err == nil { // a failed request is logged once below, not once per receipt
			o.log.Warn("receipt not accepted yet; will retry", "ticket", req.Receipts[i].TicketID, "attempt", it.attempts+1, "retry_in", backoff, "err", why)
		}
		o.db.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?`,
			time.Now().Add(backoff).UnixMilli(), why.Error(), it.id)
	}
	if err != nil {
		o.log.Warn("receipts not accepted yet; will retry", "receipts", len(sent), "err", err)
	}
	if len(done) > 0 {
		o.sent.WithLabelValues("accepted").Add(float64(len(done)))
		o.db.ExecContext(ctx, `DELETE FROM outbox WHERE id IN (?`+strings.Repeat(", ?", len(done)-1)+`)`, done...)
	}
	return recovered
}
