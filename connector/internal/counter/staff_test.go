package counter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestMain(m *testing.M) {
	hashCost = MinCost
	os.Exit(m.Run())
}

// testHash is a cost-10 hash of "correct horse battery" (the least cost a staff file may use, to keep the
// tests quick).
var testHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("correct horse battery"), MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

func TestParseStaff(t *testing.T) {
	low, _ := bcrypt.GenerateFromPassword([]byte("correct horse battery"), bcrypt.MinCost)
	// htpasswd -nbB writes $2y$; the same hash with $2y$ must read.
	y := "$2y$" + testHash[4:]
	tests := []struct {
		name, file string
		want       []string
		wantErr    string
	}{
		{"one", "alice:" + testHash + "\n", []string{"alice"}, ""},
		{"comments, blanks, CRLF and no final newline", "# staff\n\nalice:" + testHash + "\r\n  bob.chen@branch-1:" + y, []string{"alice", "bob.chen@branch-1"}, ""},
		{"empty", "", nil, ""},
		{"no colon", "alice " + testHash + "\n", nil, "line 1: want name:hash"},
		{"bad name", "al ice:" + testHash + "\n", nil, "line 1: a name is made of letters"},
		{"empty name", ":" + testHash + "\n", nil, "line 1: a name is 1 to 64 characters"},
		{"twice", "a:" + testHash + "\n#\na:" + testHash + "\n", nil, "line 3: a is listed twice"},
		{"not bcrypt", "a:$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA\n", nil, "line 1: a: the hash is not a bcrypt hash"},
		{"plain password", "a:hunter2\n", nil, "the hash is not a bcrypt hash"},
		{"truncated hash", "a:" + testHash[:50] + "\n", nil, "the hash is not a bcrypt hash"},
		{"cheap hash", "a:" + string(low) + "\n", nil, "line 1: a: bcrypt cost 4 is below 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStaff([]byte(tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), testHash[7:20]) || strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("the error repeats the hash: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("accounts %v, want %v", got, tt.want)
			}
			for _, n := range tt.want {
				if bcrypt.CompareHashAndPassword(got[n], []byte("correct horse battery")) != nil {
					t.Fatalf("%s: the hash does not check", n)
				}
			}
		})
	}
}

// FuzzStaffFile: the parser never panics, and every account it accepts has a valid name and a bcrypt hash
// of at least MinCost.
func FuzzStaffFile(f *testing.F) {
	for _, seed := range []string{
		"alice:" + testHash + "\n",
		"# c\n\nbob:" + testHash + "\r\n",
		"a:b:c\n", ":\n", "a:\n", "\xff:\xfe\n", "a:$2a$99$" + strings.Repeat(".", 53) + "\n",
		"a:$2a$10$" + strings.Repeat("/", 53), strings.Repeat("a:", 1000),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		acc, err := ParseStaff(data)
		if err != nil {
			return
		}
		for name, hash := range acc {
			if validName(name) != nil {
				t.Fatalf("accepted name %q", name)
			}
			if c, err := bcrypt.Cost(hash); err != nil || c < MinCost {
				t.Fatalf("accepted hash of %q: cost %d, %v", name, c, err)
			}
		}
	})
}

func TestHashLine(t *testing.T) {
	if _, err := HashLine("alice", []byte("short")); err == nil {
		t.Fatal("a short password took")
	}
	if _, err := HashLine("alice", []byte(strings.Repeat("x", 73))); err == nil {
		t.Fatal("a password past bcrypt's 72 bytes took")
	}
	if _, err := HashLine("a:b", []byte("long enough password")); err == nil {
		t.Fatal("a name with a colon took")
	}
	line, err := HashLine("alice", []byte("long enough password"))
	if err != nil {
		t.Fatal(err)
	}
	acc, err := ParseStaff([]byte(line + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := bcrypt.Cost(acc["alice"]); c != hashCost {
		t.Fatalf("cost %d", c)
	}
}

// TestStaffReload: an account removed from the file is gone at the next look; a file that goes bad keeps
// no account.
func TestStaffReload(t *testing.T) {
	p := filepath.Join(t.TempDir(), "staff")
	os.WriteFile(p, []byte("alice:"+testHash+"\nbob:"+testHash+"\n"), 0o600)
	s, err := openStaff(p)
	if err != nil {
		t.Fatal(err)
	}
	if !s.check("bob", "correct horse battery") || s.check("bob", "wrong password!") || s.check("carol", "correct horse battery") {
		t.Fatal("check")
	}
	os.WriteFile(p, []byte("alice:"+testHash+"\n"), 0o600)
	os.Chtimes(p, time.Now().Add(time.Minute), time.Now().Add(time.Minute))
	if err := s.reload(); err != nil {
		t.Fatal(err)
	}
	if s.exists("bob") || !s.exists("alice") {
		t.Fatal("bob was removed from the file")
	}
	os.WriteFile(p, []byte("alice\n"), 0o600)
	os.Chtimes(p, time.Now().Add(2*time.Minute), time.Now().Add(2*time.Minute))
	if err := s.reload(); err == nil || s.exists("alice") {
		t.Fatalf("a bad file: err %v, alice still there %v", err, s.exists("alice"))
	}
}
