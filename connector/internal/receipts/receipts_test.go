package receipts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mydatafed/mydata/pkg/hubapi"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeHub answers receipt batches the way the hub's API does, deciding per receipt with answer. It stands
// in for the hub because what is under test is the outbox's bookkeeping of per-receipt answers; the real
// hub endpoint is exercised end to end in pkg/federationtest.
type fakeHub struct {
	mu      sync.Mutex
	batches []int          // sizes of the batches received
	got     map[string]int // ticket id -> times received
	answer  func(r hubapi.ReceiptRequest) hubapi.ReceiptResult
	whole   func(w http.ResponseWriter) bool // answers the whole request itself when it returns true
}

func (h *fakeHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req hubapi.ReceiptBatch
	if r.URL.Path != hubapi.PathReceipts || json.NewDecoder(r.Body).Decode(&req) != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batches = append(h.batches, len(req.Receipts))
	if h.whole != nil && h.whole(w) {
		return
	}
	var res hubapi.ReceiptBatchResult
	for _, rr := range req.Receipts {
		h.got[rr.TicketID]++
		res.Results = append(res.Results, h.answer(rr))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
}

func accept(hubapi.ReceiptRequest) hubapi.ReceiptResult {
	return hubapi.ReceiptResult{Status: http.StatusNoContent}
}

type row struct {
	ticket    string
	attempts  int
	lastError string
}

func rows(t *testing.T, o *Outbox) map[string]row {
	t.Helper()
	rs, err := o.db.Query(`SELECT body, attempts, last_error FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[string]row{}
	for rs.Next() {
		var body string
		var r row
		if err := rs.Scan(&body, &r.attempts, &r.lastError); err != nil {
			t.Fatal(err)
		}
		var rr hubapi.ReceiptRequest
		if err := json.Unmarshal([]byte(body), &rr); err != nil {
			t.Fatal(err)
		}
		r.ticket = rr.TicketID
		out[rr.TicketID] = r
	}
	return out
}

func TestOutboxSendsBatches(t *testing.T) {
	tests := []struct {
		name     string
		receipts int
		answer   func(hubapi.ReceiptRequest) hubapi.ReceiptResult
		whole    func(w http.ResponseWriter) bool
		// what stays in the outbox after one round: ticket id -> part of its last_error
		left     map[string]string
		accepted float64
	}{
		{name: "all accepted", receipts: 3, answer: accept, accepted: 3},
		{name: "more than one batch", receipts: 2*hubapi.MaxReceiptBatch + 7, answer: accept, accepted: 2*hubapi.MaxReceiptBatch + 7},
		{
			name: "one refused, the others recorded", receipts: 3,
			answer: func(r hubapi.ReceiptRequest) hubapi.ReceiptResult {
				if r.TicketID == "t1" {
					return hubapi.ReceiptResult{Status: http.StatusForbidden, Error: "only bank/sp1 reports as sp"}
				}
				return hubapi.ReceiptResult{Status: http.StatusNoContent}
			},
			left:     map[string]string{"t1": "only bank/sp1 reports as sp"},
			accepted: 2,
		},
		{
			name: "hub failing keeps every receipt", receipts: 2, answer: accept,
			whole: func(w http.ResponseWriter) bool {
				http.Error(w, `{"error":"this hub node is not the leader; retry"}`, http.StatusServiceUnavailable)
				return true
			},
			left: map[string]string{"t0": "not the leader", "t1": "not the leader"},
		},
		{
			name: "an answer of the wrong length keeps every receipt", receipts: 2, answer: accept,
			whole: func(w http.ResponseWriter) bool {
				json.NewEncoder(w).Encode(hubapi.ReceiptBatchResult{Results: []hubapi.ReceiptResult{{Status: http.StatusNoContent}}})
				return true
			},
			left: map[string]string{"t0": "answered 1 receipts of 2", "t1": "answered 1 receipts of 2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := &fakeHub{got: map[string]int{}, answer: tt.answer, whole: tt.whole}
			srv := httptest.NewServer(hub)
			defer srv.Close()
			reg := prometheus.NewRegistry()
			o, err := Open(filepath.Join(t.TempDir(), "outbox.db"), hubapi.NewClient(srv.URL, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			ctx := context.Background()
			for i := range tt.receipts {
				if err := o.Add(ctx, hubapi.ReceiptRequest{TicketID: fmt.Sprintf("t%d", i), ConsentID: "c", Dataset: "moi.household",
					Role: hubapi.RoleSender, Outcome: "delivered", At: time.Now()}); err != nil {
					t.Fatal(err)
				}
			}
			for o.sendDue(ctx) == 0 && hub.batchCount() < 10 {
				// a full read of the outbox asks to be called again at once
			}
			for _, n := range hub.batches {
				if n > hubapi.MaxReceiptBatch {
					t.Errorf("a batch of %d receipts; at most %d", n, hubapi.MaxReceiptBatch)
				}
			}
			left := rows(t, o)
			if len(left) != len(tt.left) {
				t.Errorf("%d receipts left in the outbox, want %d: %v", len(left), len(tt.left), left)
			}
			for id, want := range tt.left {
				r, ok := left[id]
				if !ok || r.attempts != 1 || !strings.Contains(r.lastError, want) {
					t.Errorf("receipt %s: left %v (present %v), want one failed attempt with %q", id, r, ok, want)
				}
			}
			var m dto.Metric
			if err := o.sent.WithLabelValues("accepted").Write(&m); err != nil {
				t.Fatal(err)
			}
			if got := m.GetCounter().GetValue(); got != tt.accepted {
				t.Errorf("accepted counter %v, want %v", got, tt.accepted)
			}
			for id, n := range hub.got {
				if n != 1 {
					t.Errorf("receipt %s sent %d times in one round", id, n)
				}
			}
		})
	}
}

func (h *fakeHub) batchCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.batches)
}

// A receipt that failed is sent again once its backoff is over, and a success after failures makes the
// others that wait out a backoff due at once: the hub is back.
func TestOutboxRetriesAfterAnOutage(t *testing.T) {
	var down sync.Mutex
	failing := true
	hub := &fakeHub{got: map[string]int{}, answer: accept, whole: func(w http.ResponseWriter) bool {
		down.Lock()
		defer down.Unlock()
		if failing {
			http.Error(w, "down", http.StatusBadGateway)
		}
		return failing
	}}
	srv := httptest.NewServer(hub)
	defer srv.Close()
	o, err := Open(filepath.Join(t.TempDir(), "outbox.db"), hubapi.NewClient(srv.URL, nil), slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if err := o.Add(ctx, hubapi.ReceiptRequest{TicketID: id, ConsentID: "c", Dataset: "d", Role: "sp", Outcome: "delivered", At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if wait := o.sendDue(ctx); wait < 100*time.Millisecond {
		t.Fatalf("after a failed send the outbox sleeps %v; want the backoff", wait)
	}
	if n, _ := o.Pending(ctx); n != 2 {
		t.Fatalf("pending %d after a failed send, want 2", n)
	}
	// Make one due now, as if its backoff were over; the other still waits.
	if _, err := o.db.Exec(`UPDATE outbox SET next_at = 0 WHERE body LIKE '%"ticket_id":"a"%'`); err != nil {
		t.Fatal(err)
	}
	down.Lock()
	failing = false
	down.Unlock()
	if wait := o.sendDue(ctx); wait != 0 {
		t.Fatalf("after the hub came back the outbox sleeps %v; want 0 (the rest is due now)", wait)
	}
	o.sendDue(ctx)
	if n, _ := o.Pending(ctx); n != 0 {
		t.Fatalf("pending %d after the hub came back, want 0", n)
	}
}
