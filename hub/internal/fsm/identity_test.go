package fsm

import (
	"path/filepath"
	"testing"
	"time"
)

func TestPasskeyCounter(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "s.db"))}
	now := time.Now()
	pk := Passkey{ID: []byte("cred"), SubjectHash: "l1:abc", SubjectSealed: []byte("sealed"), UserHandle: []byte("h"), Name: "phone", PublicKey: []byte("k"),
		SignCount: 5, Transports: []string{"internal", "hybrid"}, CreatedAt: now}
	if r := a.apply(&PasskeyAdd{Passkey: pk}); r.Code != OK {
		t.Fatal(r.Message)
	}
	if r := a.apply(&PasskeyAdd{Passkey: pk}); r.Code != Conflict {
		t.Errorf("the same passkey twice: %v", r)
	}
	for _, tc := range []struct {
		count uint32
		want  Code
	}{{6, OK}, {6, Conflict}, {3, Conflict}, {0, Conflict}, {9, OK}} {
		if r := a.apply(&PasskeyUse{ID: pk.ID, SignCount: tc.count, At: now}); r.Code != tc.want {
			t.Errorf("counter %d: %v, want code %d", tc.count, r, tc.want)
		}
	}
	got, err := a.f.PasskeyByID(pk.ID)
	if err != nil || got == nil || got.SignCount != 9 || got.Name != "phone" || len(got.Transports) != 2 || got.LastUsedAt.IsZero() {
		t.Fatalf("stored: %+v %v", got, err)
	}
	// A synced passkey counts nothing: zero after zero is fine.
	sync := Passkey{ID: []byte("synced"), SubjectHash: "l1:abc", SubjectSealed: []byte("s"), UserHandle: []byte("h"), PublicKey: []byte("k"), CreatedAt: now}
	a.apply(&PasskeyAdd{Passkey: sync})
	if r := a.apply(&PasskeyUse{ID: sync.ID, SignCount: 0, At: now}); r.Code != OK {
		t.Errorf("zero after zero: %v", r)
	}
	if list, _ := a.f.Passkeys("l1:old", "l1:abc"); len(list) != 2 {
		t.Errorf("listed %d passkeys", len(list))
	}
	a.apply(&PasskeyRemove{SubjectHash: "l1:other", ID: pk.ID})
	if p, _ := a.f.PasskeyByID(pk.ID); p == nil {
		t.Error("another citizen removed the passkey")
	}
	a.apply(&PasskeyRemove{SubjectHash: "l1:abc", ID: pk.ID})
	if p, _ := a.f.PasskeyByID(pk.ID); p != nil {
		t.Error("not removed")
	}
}

func TestThrottle(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "s.db"))}
	t0 := time.Now()
	fail := func(at time.Time) {
		a.apply(&ThrottleFail{Key: "s:x", Max: 3, Window: 10 * time.Minute, Lock: 15 * time.Minute, At: at})
	}
	fail(t0)
	fail(t0.Add(time.Minute))
	if th, _ := a.f.ThrottleOf("s:x"); th.Failures != 2 || th.LockedUntil.After(t0) {
		t.Fatalf("after two: %+v", th)
	}
	// A failure after the window starts a new count.
	fail(t0.Add(11 * time.Minute))
	if th, _ := a.f.ThrottleOf("s:x"); th.Failures != 1 || th.LockedUntil.After(t0) {
		t.Fatalf("after the window: %+v", th)
	}
	fail(t0.Add(12 * time.Minute))
	fail(t0.Add(13 * time.Minute))
	th, _ := a.f.ThrottleOf("s:x")
	if want := t0.Add(28 * time.Minute).UnixMilli(); th.LockedUntil.UnixMilli() != want {
		t.Fatalf("locked until %s, want %s", th.LockedUntil, time.UnixMilli(want))
	}
	// A success clears the count but not the lock.
	a.apply(&ThrottleClear{Keys: []string{"s:x"}})
	if th, _ := a.f.ThrottleOf("s:x"); th.Failures != 0 || th.LockedUntil.IsZero() {
		t.Errorf("after clear: %+v", th)
	}
	a.apply(&IdentityPurge{Before: t0.Add(time.Hour)})
	if th, _ := a.f.ThrottleOf("s:x"); !th.LockedUntil.IsZero() {
		t.Errorf("after purge: %+v", th)
	}
}

func TestOTPAndContacts(t *testing.T) {
	a := &applier{t: t, f: open(t, filepath.Join(t.TempDir(), "s.db"))}
	now := time.Now()
	ch := OTPChallenge{ID: "c1", SubjectHash: "l1:abc", Purpose: "login", Channel: "email", CodeHash: []byte("h"), MaxTries: 5, ExpiresAt: now.Add(5 * time.Minute)}
	if r := a.apply(&OTPPut{Challenge: ch}); r.Code != OK {
		t.Fatal(r.Message)
	}
	if r := a.apply(&OTPPut{Challenge: ch}); r.Code != Conflict {
		t.Errorf("twice: %v", r)
	}
	a.apply(&OTPTry{ID: "c1", At: now})
	a.apply(&OTPTry{ID: "c1", Success: true, At: now})
	if got, _ := a.f.OTP("c1"); got.Tries != 2 || !got.Used {
		t.Errorf("after two tries: %+v", got)
	}
	if r := a.apply(&OTPTry{ID: "none", At: now}); r.Code != NotFound {
		t.Errorf("unknown challenge: %v", r)
	}
	a.apply(&IdentityPurge{Before: now.Add(time.Hour)})
	if got, _ := a.f.OTP("c1"); got != nil {
		t.Error("an expired challenge survived the purge")
	}
	k := Contact{SubjectHash: "l1:abc", EmailSealed: []byte("e"), EmailVerifiedAt: now, Lang: "en", NotifyEmail: true, UpdatedAt: now}
	if r := a.apply(&ContactSet{Contact: k}); r.Code != OK {
		t.Fatal(r.Message)
	}
	if r := a.apply(&ContactSet{Contact: Contact{SubjectHash: "x", Lang: "fr"}}); r.Code != Invalid {
		t.Errorf("language fr: %v", r)
	}
	got, _ := a.f.ContactOf("l1:old", "l1:abc")
	if got == nil || string(got.EmailSealed) != "e" || !got.NotifyEmail || got.PhoneVerifiedAt.IsZero() == false || got.Lang != "en" {
		t.Errorf("contact: %+v", got)
	}
	if used, _ := a.f.MethodUsedBefore("two-docs", "l1:abc"); used {
		t.Error("used before anything")
	}
	a.apply(&MethodUsed{SubjectHash: "l1:abc", Method: "two-docs", At: now})
	a.apply(&MethodUsed{SubjectHash: "l1:abc", Method: "two-docs", At: now})
	if used, _ := a.f.MethodUsedBefore("two-docs", "l1:old", "l1:abc"); !used {
		t.Error("not recorded")
	}
}
