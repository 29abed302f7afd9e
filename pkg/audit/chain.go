package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// canonVersion is a domain-separation tag at the start of every canonical encoding, so that a future change
// of layout (v2) can never produce the bytes of a v1 entry.
const canonVersion = "mydata-audit-v1"

// genesisHash is the PrevHash of the first entry of a log that has never been purged.
var genesisHash = strings.Repeat("0", 2*sha256.Size)

// canonical is the byte string the chain hashes for an entry. JSON is not used because its field order and
// escaping are up to the encoder; here every integer is a fixed 8 bytes and every string is prefixed with
// its 4-byte length, so two different field tuples can never give the same bytes. Time is taken at
// millisecond precision, the precision the database keeps.
func canonical(e Entry) []byte {
	strs := [...]string{e.Role, e.Dataset, e.Counterpart, e.ConsentID, e.TicketID, e.Subject, e.Outcome, e.Detail}
	n := 4 + len(canonVersion) + 3*8
	for _, s := range strs {
		n += 4 + len(s)
	}
	b := make([]byte, 0, n)
	b = appendString(b, canonVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixMilli()))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Bytes))
	for _, s := range strs {
		b = appendString(b, s)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// chainHash is Hash_n = SHA-256(PrevHash_n || canonical(entry_n)), hex. prev must be the 32 bytes the hex
// PrevHash stands for; callers compare the stored hex with the expected hex before relying on it.
func chainHash(prev [sha256.Size]byte, e Entry) string {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(canonical(e))
	return hex.EncodeToString(h.Sum(nil))
}

// decodeHash turns a stored hex hash back into bytes; ok is false for anything that is not 64 lower-case
// hex digits, which only tampering produces.
func decodeHash(s string) (b [sha256.Size]byte, ok bool) {
	if !isHash(s) {
		return b, false
	}
	_, err := hex.Decode(b[:], []byte(s))
	return b, err == nil
}

// isHash reports whether s is 64 lower-case hex digits, the form of every hash this package writes.
func isHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
