package tickets

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tickets.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Minute)
	steps := []struct {
		name string
		do   func() error
		want error
	}{
		{"first claim", func() error { return s.Claim(ctx, "t1", exp) }, nil},
		{"concurrent claim", func() error { return s.Claim(ctx, "t1", exp) }, ErrBusy},
		{"not ready", func() error { return s.Finish(ctx, "t1", false) }, nil},
		{"retry claim", func() error { return s.Claim(ctx, "t1", exp) }, nil},
		{"delivered", func() error { return s.Finish(ctx, "t1", true) }, nil},
		{"replay", func() error { return s.Claim(ctx, "t1", exp) }, ErrUsed},
		{"crash mid delivery", func() error { return s.Claim(ctx, "t2", exp) }, nil},
	}
	for _, st := range steps {
		if err := st.do(); !errors.Is(err, st.want) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Claim(ctx, "t2", exp); !errors.Is(err, ErrUsed) {
		t.Fatalf("a delivery cut by a restart can be replayed: %v", err)
	}
	if err := s.Claim(ctx, "t1", exp); !errors.Is(err, ErrUsed) {
		t.Fatalf("replay after restart: %v", err)
	}
	if n, err := s.Purge(ctx, exp.Add(time.Second)); err != nil || n != 2 {
		t.Fatalf("purge: %d %v", n, err)
	}
}
