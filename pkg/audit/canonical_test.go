package audit

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// fields is what canonical must distinguish: every hashed field, Time at the millisecond.
type fields struct {
	seq, ms, bytes int64
	strs           [8]string
}

func fieldsOf(e Entry) fields {
	return fields{e.Seq, e.Time.UnixMilli(), e.Bytes,
		[8]string{e.Role, e.Dataset, e.Counterpart, e.ConsentID, e.TicketID, e.Subject, e.Outcome, e.Detail}}
}

func entryOf(f fields) Entry {
	s := f.strs
	return Entry{Seq: f.seq, Time: time.UnixMilli(f.ms), Bytes: f.bytes, Role: s[0], Dataset: s[1], Counterpart: s[2],
		ConsentID: s[3], TicketID: s[4], Subject: s[5], Outcome: s[6], Detail: s[7]}
}

func TestCanonicalDistinguishes(t *testing.T) {
	base := testEntry(1)
	base.Time = t0
	tests := []struct {
		name string
		mod  func(*Entry)
	}{
		{"byte moved between adjacent strings", func(e *Entry) { e.Dataset, e.Counterpart = e.Dataset+"s", e.Counterpart[1:] }},
		{"byte moved across an empty string", func(e *Entry) { e.ConsentID, e.TicketID = "", e.ConsentID+e.TicketID }},
		{"length-prefix lookalike in a string", func(e *Entry) { e.Detail = "\x00\x00\x00\x01x" }},
		{"seq", func(e *Entry) { e.Seq++ }},
		{"time one millisecond", func(e *Entry) { e.Time = e.Time.Add(time.Millisecond) }},
		{"bytes", func(e *Entry) { e.Bytes++ }},
		{"role", func(e *Entry) { e.Role = RoleSP }},
		{"outcome", func(e *Entry) { e.Outcome = OutcomeFailed }},
		{"subject", func(e *Entry) { e.Subject = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base
			tt.mod(&e)
			if bytes.Equal(canonical(base), canonical(e)) {
				t.Fatal("two different entries encode the same")
			}
		})
	}
	// What canonical deliberately ignores: sub-millisecond time, zone, and the chain fields (hashed apart).
	e := base
	e.Time = base.Time.Add(999 * time.Microsecond).In(time.FixedZone("CST", 8*3600))
	e.PrevHash, e.Hash = "x", "y"
	if !bytes.Equal(canonical(base), canonical(e)) {
		t.Fatal("canonical depends on something it should not")
	}
}

// fuzzEntry builds an entry from arbitrary bytes: three integers, then eight strings, each cut off by a
// length byte, the last taking the rest.
func fuzzEntry(data []byte) Entry {
	var f fields
	for _, p := range []*int64{&f.seq, &f.ms, &f.bytes} {
		if len(data) >= 8 {
			*p = int64(binary.BigEndian.Uint64(data))
			data = data[8:]
		}
	}
	for i := range f.strs {
		if i == len(f.strs)-1 || len(data) == 0 {
			f.strs[i] = string(data)
			break
		}
		n := int(data[0]) % len(data)
		f.strs[i] = string(data[1 : 1+n])
		data = data[1+n:]
	}
	return entryOf(f)
}

// resplit keeps e's integers and the concatenation of its strings but moves the boundaries between them,
// the way an ambiguous encoding would be fooled.
func resplit(e Entry, cuts []byte) Entry {
	f := fieldsOf(e)
	var all string
	for _, s := range f.strs {
		all += s
	}
	for i := range f.strs {
		if i == len(f.strs)-1 || i >= len(cuts) || len(all) == 0 {
			f.strs[i] = all
			all = ""
			continue
		}
		n := int(cuts[i]) % (len(all) + 1)
		f.strs[i], all = all[:n], all[n:]
	}
	return entryOf(f)
}

func FuzzCanonical(f *testing.F) {
	e := testEntry(1)
	e.Time = t0
	seed := canonical(e) // any bytes will do; this one is long enough to fill every field
	f.Add(seed, []byte("other entry"), []byte{1, 2, 3, 4, 5, 6, 7})
	f.Add([]byte{}, []byte{}, []byte{})
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x01abcdefgh"), []byte("\x00\x00\x00\x00\x00\x00\x00\x01abcdefgh"), []byte{0, 0, 0})
	f.Fuzz(func(t *testing.T, a, b, cuts []byte) {
		ea := fuzzEntry(a)
		check := func(eb Entry) {
			same := fieldsOf(ea) == fieldsOf(eb)
			if bytes.Equal(canonical(ea), canonical(eb)) != same {
				t.Fatalf("canonical equal=%v but fields equal=%v:\n%+v\n%+v", !same, same, fieldsOf(ea), fieldsOf(eb))
			}
		}
		check(fuzzEntry(b))
		check(resplit(ea, cuts))
		check(ea)
	})
}
