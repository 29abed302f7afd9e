package otp

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// memStore is the Store the tests use: a map behind a mutex, which makes RecordTry atomic as the hub's
// replicated state does. It keeps every challenge ever put, so a test can look for the code in them.
type memStore struct {
	mu   sync.Mutex
	m    map[string]*Challenge
	puts []Challenge
}

func newMemStore() *memStore { return &memStore{m: map[string]*Challenge{}} }

func (s *memStore) PutChallenge(c Challenge) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.CodeHash = bytes.Clone(c.CodeHash)
	s.m[c.ID] = &c
	s.puts = append(s.puts, c)
	return nil
}

func (s *memStore) Challenge(id string) (*Challenge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[id]
	if !ok {
		return nil, nil
	}
	cp := *c
	return &cp, nil
}

func (s *memStore) RecordTry(id string, success bool, _ time.Time) (*Challenge, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[id]
	if !ok {
		return nil, nil
	}
	c.Tries++
	if success {
		c.Used = true
	}
	cp := *c
	return &cp, nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var testKey = bytes.Repeat([]byte{0x42}, 32)

func newService(t *testing.T) (*Service, *memStore, *clock) {
	t.Helper()
	st := newMemStore()
	clk := &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	s, err := New(Config{Store: st, Key: testKey, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	return s, st, clk
}

// wrongCode is a valid code other than code.
func wrongCode(code string) string {
	if code == "000000" {
		return "000001"
	}
	return "000000"
}

func TestCheck(t *testing.T) {
	const (
		subj    = "subject-hash-a"
		purpose = "login"
	)
	type step struct {
		advance  time.Duration
		subject  string // default subj
		purpose  string // default purpose
		right    bool   // type the issued code, else a wrong one
		typed    string // if set, typed as is
		want     error
		leftWant int // for ErrWrong
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"right code once, then used", []step{
			{right: true},
			{right: true, want: ErrUsed},
		}},
		{"full-width digits and spaces", []step{
			{typed: "fullwidth", want: nil},
		}},
		{"wrong code counts down, then right code", []step{
			{want: ErrWrong, leftWant: 4},
			{want: ErrWrong, leftWant: 3},
			{right: true},
		}},
		{"five wrong, then refused even with the right code", []step{
			{want: ErrWrong, leftWant: 4},
			{want: ErrWrong, leftWant: 3},
			{want: ErrWrong, leftWant: 2},
			{want: ErrWrong, leftWant: 1},
			{want: ErrWrong, leftWant: 0},
			{right: true, want: ErrTooManyTries},
			{want: ErrTooManyTries},
		}},
		{"right code on the fifth try", []step{
			{want: ErrWrong, leftWant: 4},
			{want: ErrWrong, leftWant: 3},
			{want: ErrWrong, leftWant: 2},
			{want: ErrWrong, leftWant: 1},
			{right: true},
		}},
		{"just before expiry", []step{
			{advance: DefaultTTL - time.Nanosecond, right: true},
		}},
		{"expired", []step{
			{advance: DefaultTTL, right: true, want: ErrExpired},
		}},
		{"expired after a wrong try", []step{
			{want: ErrWrong, leftWant: 4},
			{advance: 6 * time.Minute, right: true, want: ErrExpired},
		}},
		{"another subject's challenge", []step{
			{subject: "subject-hash-b", right: true, want: ErrUnknown},
			{right: true}, // and it cost the owner nothing
		}},
		{"another purpose's challenge", []step{
			{purpose: "second-factor", right: true, want: ErrUnknown},
			{right: true},
		}},
		{"malformed is not a try", []step{
			{typed: "12345", want: ErrMalformed},
			{typed: "1234567", want: ErrMalformed},
			{typed: "12a456", want: ErrMalformed},
			{typed: "", want: ErrMalformed},
			{want: ErrWrong, leftWant: 4},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, clk := newService(t)
			id, code, err := s.Issue(subj, purpose, "sms")
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				clk.advance(st.advance)
				sub, pur := subj, purpose
				if st.subject != "" {
					sub = st.subject
				}
				if st.purpose != "" {
					pur = st.purpose
				}
				typed := wrongCode(code)
				switch {
				case st.typed == "fullwidth":
					typed = "\u3000 " + toFullWidth(code) + " "
				case st.typed != "" || st.want == ErrMalformed:
					typed = st.typed
				case st.right:
					typed = code
				}
				err := s.Check(id, sub, pur, typed)
				if !errors.Is(err, st.want) || (st.want == nil && err != nil) {
					t.Fatalf("step %d: Check = %v, want %v", i, err, st.want)
				}
				if st.want == ErrWrong {
					var we *WrongCodeError
					if !errors.As(err, &we) || we.TriesLeft != st.leftWant {
						t.Fatalf("step %d: Check = %v, want %d tries left", i, err, st.leftWant)
					}
				}
			}
		})
	}
}

func toFullWidth(code string) string {
	var b strings.Builder
	for _, r := range code {
		b.WriteRune(r - '0' + '０')
	}
	return b.String()
}

func TestCheckUnknownID(t *testing.T) {
	s, _, _ := newService(t)
	if err := s.Check("nope", "s", "login", "123456"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Check = %v, want ErrUnknown", err)
	}
}

// A challenge checked on another node: a second Service on the same store with the same key.
func TestCheckOnAnotherNode(t *testing.T) {
	a, st, clk := newService(t)
	b, err := New(Config{Store: st, Key: testKey, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	id, code, err := a.Issue("s", "login", "email")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(id, "s", "login", code); err != nil {
		t.Fatalf("Check on the other node = %v", err)
	}
	// A node with another key can not confirm any code.
	c, _ := New(Config{Store: st, Key: bytes.Repeat([]byte{1}, 32), Now: clk.now})
	id, code, _ = a.Issue("s", "login", "email")
	if err := c.Check(id, "s", "login", code); !errors.Is(err, ErrWrong) {
		t.Fatalf("Check with another key = %v, want ErrWrong", err)
	}
}

func TestStoreNeverSeesCode(t *testing.T) {
	s, st, _ := newService(t)
	for range 20 {
		id, code, err := s.Issue("subject-hash", "login", "sms")
		if err != nil {
			t.Fatal(err)
		}
		if len(code) != Digits || strings.Trim(code, "0123456789") != "" {
			t.Fatalf("code %q is not %d digits", code, Digits)
		}
		c := st.puts[len(st.puts)-1]
		if c.ID != id {
			t.Fatalf("stored id %q, issued %q", c.ID, id)
		}
		sum := sha256.Sum256([]byte(code))
		for _, f := range []string{c.ID, c.Subject, c.Purpose, c.Channel} {
			if strings.Contains(f, code) {
				t.Fatalf("a challenge field holds the code: %q", f)
			}
		}
		switch {
		case len(c.CodeHash) != sha256.Size:
			t.Fatalf("CodeHash is %d bytes", len(c.CodeHash))
		case bytes.Contains(c.CodeHash, []byte(code)):
			t.Fatal("CodeHash contains the code")
		case bytes.Equal(c.CodeHash, sum[:]):
			t.Fatal("CodeHash is the unkeyed SHA-256 of the code")
		case c.Tries != 0 || c.MaxTries != DefaultMaxTries || c.Used:
			t.Fatalf("new challenge %+v", c)
		}
	}
}

// Two requests with the right code at once (a double click, or a replay racing the citizen): one wins.
func TestConcurrentRightCodes(t *testing.T) {
	s, _, _ := newService(t)
	id, code, _ := s.Issue("s", "login", "sms")
	const n = 16
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { errs <- s.Check(id, "s", "login", code) })
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrUsed), errors.Is(err, ErrTooManyTries):
		default:
			t.Errorf("Check = %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d checks succeeded, want exactly 1", ok)
	}
}

// Many guesses sent in parallel all pass the checks before any try is recorded; only MaxTries of them
// may get an answer.
func TestParallelGuessesAnswerAtMostMaxTries(t *testing.T) {
	s, st, _ := newService(t)
	id, code, _ := s.Issue("s", "login", "sms")
	const n = 40
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		guess := strings.Repeat("0", Digits-2) + string(rune('0'+i/10)) + string(rune('0'+i%10))
		if guess == code {
			guess = "999999"
		}
		wg.Go(func() { errs <- s.Check(id, "s", "login", guess) })
	}
	wg.Wait()
	close(errs)
	answered := 0
	for err := range errs {
		if errors.Is(err, ErrWrong) {
			answered++
		} else if !errors.Is(err, ErrTooManyTries) {
			t.Errorf("Check = %v", err)
		}
	}
	if answered > DefaultMaxTries {
		t.Fatalf("%d guesses were answered, want at most %d", answered, DefaultMaxTries)
	}
	if err := s.Check(id, "s", "login", code); !errors.Is(err, ErrTooManyTries) {
		t.Fatalf("right code after the flood = %v, want ErrTooManyTries", err)
	}
	if c, _ := st.Challenge(id); c.Used {
		t.Fatal("challenge used")
	}
}

func TestNew(t *testing.T) {
	st := newMemStore()
	for _, cfg := range []Config{
		{Key: testKey},
		{Store: st, Key: testKey[:31]},
		{Store: st, Key: testKey, TTL: -time.Second},
		{Store: st, Key: testKey, MaxTries: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	s, err := New(Config{Store: st, Key: testKey, TTL: time.Minute, MaxTries: 3})
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := s.Issue("s", "login", "sms")
	if c, _ := st.Challenge(id); c.MaxTries != 3 {
		t.Fatalf("MaxTries = %d", c.MaxTries)
	}
	if _, _, err := s.Issue("", "login", "sms"); err == nil {
		t.Fatal("Issue without a subject succeeded")
	}
}

func TestCodeBound(t *testing.T) {
	if bound%codeSpace != 0 || bound > 1<<32-1 || (1<<32)-bound >= codeSpace {
		t.Fatalf("bound %d is not the largest multiple of %d below 2^32", bound, codeSpace)
	}
	// Every digit shows up in every position over a few thousand codes; a stuck or biased generator
	// would not. (Not a statistical test: the rejection sampling is what removes the bias.)
	seen := [Digits][10]bool{}
	for range 2000 {
		c, err := newCode()
		if err != nil {
			t.Fatal(err)
		}
		for i := range Digits {
			seen[i][c[i]-'0'] = true
		}
	}
	for i := range Digits {
		for d := range 10 {
			if !seen[i][d] {
				t.Fatalf("digit %d never in position %d", d, i)
			}
		}
	}
}
