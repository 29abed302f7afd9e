// Package oplog is the form of the hub's operator log: every operator action, hash-chained so that an
// edited, removed, inserted or reordered entry is found. The state machine (fsm) appends the entries, in
// the same transaction as the change each records; this package holds what the state machine, the API and
// the CLI share: the entry, its canonical encoding and hash, and the walk that verifies a chain.
//
// The chain follows the connectors' audit log (pkg/audit): Hash_n = SHA-256(Hash_{n-1} || canonical(entry_n))
// with a length-prefixed canonical encoding under its own domain tag, the first entry linking to 64 zeros,
// and the head (last seq and hash) kept outside the rows so that a removed last entry is found too.
package oplog

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// canonVersion separates this encoding from every other the federation hashes, pkg/audit's included.
const canonVersion = "mydata-oplog-v1"

// Genesis is the PrevHash of the first entry.
var Genesis = strings.Repeat("0", 2*sha256.Size)

// Outcomes of an entry.
const (
	OutcomeOK = "ok"
	// OutcomeRefused is an action the state refused (a conflict, a missing row); Detail says why. An action
	// refused for want of a role never reaches the log: it changes nothing, and an operator without the role
	// must not be able to fill the log.
	OutcomeRefused = "refused"
)

// Entry is one operator action.
type Entry struct {
	Seq int64     `json:"seq"`
	At  time.Time `json:"at"` // the leader's clock when the action was proposed, ms precision
	// Actor is the operator's SPIFFE ID, Roles the roles it held for the action.
	Actor string   `json:"actor"`
	Roles []string `json:"roles"`
	// Op names the action ("org add", "backup"); Params are its parameters, never a secret.
	Op     string            `json:"op"`
	Params map[string]string `json:"params,omitempty"`
	// Outcome is ok or refused; Detail is the refusal's message.
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
	// Before and After are the changed row as JSON, where the action changes one; empty for none.
	Before   string `json:"before,omitempty"`
	After    string `json:"after,omitempty"`
	PrevHash string `json:"prev_hash"`
	Hash     string `json:"hash"`
}

// canonical is the byte string the chain hashes: fixed-width integers and length-prefixed strings, so
// two different entries never encode alike. Params are encoded sorted by key.
func canonical(e Entry) []byte {
	b := appendString(nil, canonVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(e.At.UnixMilli()))
	b = appendString(b, e.Actor)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Roles)))
	for _, r := range e.Roles {
		b = appendString(b, r)
	}
	b = appendString(b, e.Op)
	keys := slices.Sorted(maps.Keys(e.Params))
	b = binary.BigEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, e.Params[k])
	}
	for _, s := range []string{e.Outcome, e.Detail, e.Before, e.After} {
		b = appendString(b, s)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// Hash is the entry's chain hash given its PrevHash; ok is false when PrevHash is not a hash.
func Hash(e Entry) (h string, ok bool) {
	prev, err := hex.DecodeString(e.PrevHash)
	if err != nil || len(prev) != sha256.Size || strings.ToLower(e.PrevHash) != e.PrevHash {
		return "", false
	}
	d := sha256.New()
	d.Write(prev)
	d.Write(canonical(e))
	return hex.EncodeToString(d.Sum(nil)), true
}

// Head is the end of a chain: its last seq and hash (0 and Genesis for an empty chain).
type Head struct {
	Seq  int64  `json:"seq"`
	Hash string `json:"hash"`
}

// Report is the result of a verification.
type Report struct {
	Entries int64 `json:"entries"`
	OK      bool  `json:"ok"`
	// BadSeq is the first entry that is wrong or missing; 0 when OK or when the fault is not one entry's.
	BadSeq  int64  `json:"bad_seq,omitempty"`
	Problem string `json:"problem,omitempty"`
	Head    Head   `json:"head"`
}

// Verifier checks entries fed to it in seq order, from a known start.
type Verifier struct {
	prev  Head
	n     int64
	first *Report
}

// NewVerifier starts a walk after from: Head{0, Genesis} for a whole chain, or the entry before an
// export's first.
func NewVerifier(from Head) *Verifier { return &Verifier{prev: from} }

func (v *Verifier) fail(seq int64, format string, args ...any) {
	if v.first == nil {
		v.first = &Report{BadSeq: seq, Problem: fmt.Sprintf(format, args...)}
	}
}

// Add checks the next entry.
func (v *Verifier) Add(e Entry) {
	v.n++
	defer func() { v.prev = Head{Seq: e.Seq, Hash: e.Hash} }()
	if v.first != nil {
		return
	}
	switch {
	case e.Seq == v.prev.Seq+2:
		v.fail(v.prev.Seq+1, "entry %d is missing: it was deleted", v.prev.Seq+1)
	case e.Seq > v.prev.Seq+2:
		v.fail(v.prev.Seq+1, "entries %d..%d are missing: they were deleted", v.prev.Seq+1, e.Seq-1)
	case e.Seq <= v.prev.Seq:
		v.fail(e.Seq, "entry %d comes after entry %d: entries were reordered or inserted", e.Seq, v.prev.Seq)
	case e.PrevHash != v.prev.Hash:
		v.fail(e.Seq, "entry %d does not link to entry %d (its prev_hash differs): entries were reordered, replaced or inserted", e.Seq, v.prev.Seq)
	default:
		if h, ok := Hash(e); !ok || h != e.Hash {
			v.fail(e.Seq, "entry %d does not match its hash: a field of it was changed", e.Seq)
		}
	}
}

// Finish compares the chain's end with the head kept beside it (nil when the caller has none, as for an
// export) and reports.
func (v *Verifier) Finish(head *Head) Report {
	r := Report{OK: true}
	if v.first != nil {
		r = *v.first
	}
	if r.OK && head != nil && *head != v.prev {
		r.OK = false
		switch {
		case head.Seq > v.prev.Seq:
			r.BadSeq = v.prev.Seq + 1
			r.Problem = fmt.Sprintf("the log ends at entry %d but its head says %d: entries %d..%d were deleted", v.prev.Seq, head.Seq, v.prev.Seq+1, head.Seq)
		case head.Seq < v.prev.Seq:
			r.BadSeq = head.Seq + 1
			r.Problem = fmt.Sprintf("the log ends at entry %d but its head says %d: entries after %d were added outside the hub", v.prev.Seq, head.Seq, head.Seq)
		default:
			r.BadSeq = head.Seq
			r.Problem = fmt.Sprintf("entry %d's hash differs from the head's: the entry or the head was changed", head.Seq)
		}
	}
	r.Entries, r.Head = v.n, v.prev
	return r
}

// Verify checks a whole chain (entries in seq order, from the first) against its head.
func Verify(entries []Entry, head *Head) Report {
	v := NewVerifier(Head{Seq: 0, Hash: Genesis})
	for _, e := range entries {
		v.Add(e)
	}
	return v.Finish(head)
}
