package counter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Staff accounts are bcrypt hashes rather than argon2id: bcrypt's hash is one self-describing string
// (algorithm, cost and salt in it) that x/crypto both makes and checks in constant time, and the lines are
// the same as `htpasswd -nB NAME` writes, so an agency can make them with tools it already has. argon2 in
// x/crypto gives the raw function only; its encoded form and the parameter checks would be ours to write.

// MinCost is the least bcrypt cost a staff file may use; PasswdCost is what `counter passwd` uses.
const (
	MinCost    = 10
	PasswdCost = 12
	// MinPassword and MaxPassword bound a staff password in bytes; bcrypt reads no more than 72.
	MinPassword = 10
	MaxPassword = 72
	// maxStaffFile bounds the staff file, which is read whole.
	maxStaffFile = 1 << 20
)

// hashCost is PasswdCost; the tests lower it, since bcrypt under the race detector is slow.
var hashCost = PasswdCost

// validName is a staff account's name: 1 to 64 of a-z, A-Z, 0-9, '.', '_', '-' and '@'.
func validName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("a name is 1 to 64 characters")
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)
		if !ok {
			return fmt.Errorf("a name is made of letters, digits and . _ - @; %q is not", r)
		}
	}
	return nil
}

// ParseStaff reads a staff file: one "name:hash" line per account, blank lines and lines starting with #
// ignored. Every problem is reported with its line number; the hash itself is never repeated.
func ParseStaff(data []byte) (map[string][]byte, error) {
	if len(data) > maxStaffFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStaffFile)
	}
	out := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxStaffFile)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(strings.TrimSuffix(sc.Text(), "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want name:hash", n)
		}
		if err := validName(name); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", n, name)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil || !strings.HasPrefix(hash, "$2") || len(hash) != 60 {
			return nil, fmt.Errorf("line %d: %s: the hash is not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters)", n, name)
		}
		if cost < MinCost {
			return nil, fmt.Errorf("line %d: %s: bcrypt cost %d is below %d; make the line again with `mydata-connector counter passwd`", n, name, cost, MinCost)
		}
		out[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// HashLine makes a staff file line for name and password.
func HashLine(name string, password []byte) (string, error) {
	if err := validName(name); err != nil {
		return "", err
	}
	if len(password) < MinPassword || len(password) > MaxPassword {
		return "", fmt.Errorf("a password is %d to %d bytes", MinPassword, MaxPassword)
	}
	h, err := bcrypt.GenerateFromPassword(password, hashCost)
	if err != nil {
		return "", err
	}
	return name + ":" + string(h), nil
}

// staffFile is the staff file as last read; it is read again when its size or time changes, so that an
// account added or removed there counts from the next request on.
type staffFile struct {
	path string

	mu       sync.Mutex
	accounts map[string][]byte
	mod      time.Time
	size     int64
}

func openStaff(path string) (*staffFile, error) {
	s := &staffFile{path: path}
	if err := s.reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// reload reads the file if it changed. A file that has become unreadable or bad keeps no account:
// failing closed, and loudly, beats logging staff in against a file the operator is halfway through.
func (s *staffFile) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.path)
	if err != nil {
		s.accounts = nil
		return fmt.Errorf("counter.staff_file: %w", err)
	}
	if s.accounts != nil && fi.ModTime().Equal(s.mod) && fi.Size() == s.size {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		s.accounts = nil
		return fmt.Errorf("counter.staff_file: %w", err)
	}
	acc, err := ParseStaff(data)
	if err != nil {
		s.accounts = nil
		return fmt.Errorf("counter.staff_file %s: %w", s.path, err)
	}
	s.accounts, s.mod, s.size = acc, fi.ModTime(), fi.Size()
	return nil
}

// dummyHash is checked against when the name is unknown, so that a wrong name takes as long as a wrong
// password and the timing tells nothing about which accounts exist.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such account, no such password"), hashCost)
	return h
})

// check says whether name and password match an account.
func (s *staffFile) check(name, password string) bool {
	s.mu.Lock()
	hash, ok := s.accounts[name]
	s.mu.Unlock()
	if !ok || len(password) > MaxPassword {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// exists says whether name is still an account.
func (s *staffFile) exists(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.accounts[name]
	return ok
}
