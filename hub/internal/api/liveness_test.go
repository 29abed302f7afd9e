package api

import (
	"slices"
	"testing"
	"time"
)

// TestLivenessDue: a connector with a poll open is reported every interval; one heard from and gone is
// reported once more, then forgotten; nothing is reported twice within an interval.
func TestLivenessDue(t *testing.T) {
	var l liveness
	t0 := time.Unix(1_800_000_000, 0)
	every := 10 * time.Second
	l.begin("moi/dp1", t0) // holds its poll open
	l.begin("moi/dp2", t0)
	l.end("moi/dp2", t0.Add(time.Second)) // polled once, then went away
	steps := []struct {
		at   time.Duration
		want []string
	}{
		{2 * time.Second, []string{"moi/dp1", "moi/dp2"}},
		{5 * time.Second, nil},                  // both reported within the interval
		{13 * time.Second, []string{"moi/dp1"}}, // dp2 not heard from since it was reported: forgotten
		{20 * time.Second, nil},
		{24 * time.Second, []string{"moi/dp1"}},
	}
	for _, s := range steps {
		now := t0.Add(s.at)
		got := l.due(now, every)
		if !slices.Equal(got, s.want) {
			t.Fatalf("at %s: due %v, want %v", s.at, got, s.want)
		}
		l.markReported(got, now)
	}
	// dp1 ends its poll; it is reported once more (heard from at its end), then no more.
	l.end("moi/dp1", t0.Add(30*time.Second))
	if got := l.due(t0.Add(35*time.Second), every); !slices.Equal(got, []string{"moi/dp1"}) {
		t.Fatalf("after its poll ended: %v", got)
	}
	l.markReported([]string{"moi/dp1"}, t0.Add(35*time.Second))
	for _, at := range []time.Duration{46 * time.Second, 60 * time.Second} {
		if got := l.due(t0.Add(at), every); len(got) != 0 {
			t.Fatalf("at %s, after it went away: %v", at, got)
		}
	}
}
