package keys

import (
	"regexp"
	"testing"
	"time"
)

// accessKeyShape is the documented form of an access key, written
// independently of ParseAccessKey: kg_, 16 characters of id, '_', 52
// characters of secret, all lower-case RFC 4648 base32.
var accessKeyShape = regexp.MustCompile(`^kg_([a-z2-7]{16})_[a-z2-7]{52}$`)

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
