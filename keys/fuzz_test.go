package keys

import (
	"encoding/base32"
	"encoding/binary"
	"hash/crc32"
	"regexp"
	"strings"
	"testing"
	"time"
)

// accessKeyShape is the documented form of an access key, written
// independently of ParseAccessKey: kg_, 16 characters of id, '_', 52
// characters of secret (keys issued before checksums), or 59 whose last 7
// are the checksum, all lower-case RFC 4648 base32.
var accessKeyShape = regexp.MustCompile(`^kg_([a-z2-7]{16})_(?:[a-z2-7]{52}|([a-z2-7]{52})([a-z2-7]{7}))$`)

// checksumOf is the documented checksum, computed independently: CRC-32
// (IEEE) of the key up to the checksum, big-endian, lower-case base32.
func checksumOf(body string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.ChecksumIEEE([]byte(body)))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// FuzzParseAccessKey checks the parser of presented access keys: it agrees
// with the documented shape (a regular expression) on every input, the id
// it returns is the key's id part, it does not allocate, and a hash of the
// key verifies only for that exact key.
func FuzzParseAccessKey(f *testing.F) {
	for _, s := range []string{
		"kg_aaaaaaaaaaaaaaaa_" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"kg_", "kg_nope", "kg_bad", "kg_x", `kg_!!\`, "kg_aaaaaaaaaaaaaaaa_",
		"kg_AAAAAAAAAAAAAAAA_" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		"kg_aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb_",
		"Bearer kg_x",
	} {
		f.Add(s)
	}
	k, _ := NewAccessKey(NewHasher(nil), "u", "t", "n", time.Now())
	f.Add(k)
	h := NewHasher([]byte("pepper"))
	f.Fuzz(func(t *testing.T, s string) {
		var (
			id string
			ok bool
		)
		if n := testing.AllocsPerRun(3, func() { id, ok = ParseAccessKey(s) }); n != 0 {
			t.Fatalf("ParseAccessKey allocates %v times", n)
		}
		m := accessKeyShape.FindStringSubmatch(s)
		if m != nil && m[3] != "" && checksumOf(s[:len(s)-7]) != m[3] {
			m = nil // the checksummed form with a wrong checksum
		}
		if ok != (m != nil) {
			t.Fatalf("ParseAccessKey(%q) ok = %v, shape says %v", s, ok, m != nil)
		}
		if ok && id != m[1] {
			t.Fatalf("id %q, want %q", id, m[1])
		}
		sum := h.Sum(s)
		if !h.Verify(s, sum) {
			t.Fatal("a key does not verify against its own hash")
		}
		if h.Verify(s+"x", sum) || (len(s) > 0 && h.Verify(s[:len(s)-1], sum)) {
			t.Fatal("another key verifies against the hash")
		}
	})
}

// TestKeyChecksum: new keys carry a valid checksum, any one-character
// change of a key is refused by the parser, and keys of the old format
// (no checksum) still parse.
func TestKeyChecksum(t *testing.T) {
	k, rec := NewAccessKey(NewHasher(nil), "u", "t", "n", time.Now())
	if len(k) != 3+16+1+59 || !KeyChecksumValid(k) {
		t.Fatalf("new key %d chars, checksum valid %v", len(k), KeyChecksumValid(k))
	}
	if id, ok := ParseAccessKey(k); !ok || id != rec.ID {
		t.Fatalf("ParseAccessKey(new) = %q, %v", id, ok)
	}
	if got := checksumOf(k[:len(k)-7]); got != k[len(k)-7:] {
		t.Fatalf("checksum %q, independent computation %q", k[len(k)-7:], got)
	}
	refused := 0
	for i := len("kg_"); i < len(k); i++ {
		if k[i] == '_' {
			continue
		}
		c := byte('a')
		if k[i] == 'a' {
			c = 'b'
		}
		bad := k[:i] + string(c) + k[i+1:]
		if _, ok := ParseAccessKey(bad); !ok {
			refused++
		}
	}
	if want := len(k) - len("kg_") - 1; refused != want {
		t.Fatalf("%d of %d one-character changes refused", refused, want)
	}
	legacy := "kg_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)
	if id, ok := ParseAccessKey(legacy); !ok || id != "aaaaaaaaaaaaaaaa" || KeyChecksumValid(legacy) {
		t.Fatalf("legacy key: %q %v", id, ok)
	}
	// A new key cut to the old length is an old-format key (a lookup that
	// fails on the hash), never the new key.
	cut := k[:len(k)-7]
	h := NewHasher(nil)
	if h.Verify(cut, rec.Hash) {
		t.Fatal("the key without its checksum verifies")
	}
}

// BenchmarkParseAccessKey: the checksum's cost on the request path (the
// old format has none to check).
func BenchmarkParseAccessKey(b *testing.B) {
	k, _ := NewAccessKey(NewHasher(nil), "u", "t", "n", time.Now())
	for name, s := range map[string]string{"checksummed": k, "legacy": k[:len(k)-7]} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := ParseAccessKey(s); !ok {
					b.Fatal("refused")
				}
			}
		})
	}
}

// TestCRCString: the string CRC equals crc32.ChecksumIEEE at every length.
func TestCRCString(t *testing.T) {
	s := strings.Repeat("kg_abcdefghijklmnop_qrstuvwxyz234567", 4)
	for n := 0; n <= len(s); n++ {
		if got, want := crcString(s[:n]), crc32.ChecksumIEEE([]byte(s[:n])); got != want {
			t.Fatalf("length %d: %08x, want %08x", n, got, want)
		}
	}
}

// sessionShape is the documented form of a console session token: kgs_,
// 16 characters of id, '_', 52 characters of secret, lower-case base32.
var sessionShape = regexp.MustCompile(`^kgs_([a-z2-7]{16})_[a-z2-7]{52}$`)

// FuzzParseSession checks the parser of presented console session tokens:
// it agrees with the documented shape on every input, returns the id part,
// and never takes an access key (or anything else) for a session.
func FuzzParseSession(f *testing.F) {
	k, key := NewAccessKey(NewHasher(nil), "u", "t", "n", time.Now())
	tok, _ := NewSession(NewHasher(nil), &key, time.Now())
	for _, s := range []string{tok, k, "kgs_", "kgs_x", "kgs__", "kg_s_", "KGS_" + tok[4:], tok + "a", tok[:len(tok)-1]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := ParseSession(s)
		m := sessionShape.FindStringSubmatch(s)
		if ok != (m != nil) {
			t.Fatalf("ParseSession(%q) ok = %v, shape says %v", s, ok, m != nil)
		}
		if ok && id != m[1] {
			t.Fatalf("id %q, want %q", id, m[1])
		}
		if _, isKey := ParseAccessKey(s); ok && isKey {
			t.Fatalf("%q parses as both a session and an access key", s)
		}
	})
}
