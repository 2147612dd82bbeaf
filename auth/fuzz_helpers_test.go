package auth

// Helpers shared by the fuzz targets: a test-only structured-field
// serializer, an allocation meter, and input sanitizers that keep a fuzzed
// request inside what the test signers can sign faithfully.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// Allocation budget of a parser: a fixed base plus a constant factor of the
// input. A parser that allocates super-linearly in its input (or a fixed
// huge buffer) exceeds it.
const (
	allocBase   = 64 << 10
	allocFactor = 128
)

// heapBytes returns the bytes fn allocated on the heap. ReadMemStats stops
// the world and flushes the per-P caches, so the figure is exact up to the
// little the fuzzing worker itself allocates meanwhile.
func heapBytes(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// checkAllocs fails t when fn allocates more than the budget for n input bytes.
func checkAllocs(t *testing.T, what string, n int, fn func()) {
	t.Helper()
	if got, limit := heapBytes(fn), uint64(allocBase+allocFactor*n); got > limit {
		t.Fatalf("%s allocated %d bytes for %d input bytes (limit %d)", what, got, n, limit)
	}
}

// knownIssue skips an input that hits a bug already filed and being fixed,
// so the fuzzer keeps looking for new ones; KEYGATE_FUZZ_KNOWN=fail makes
// it a failure again (to check the fix, or once it has landed).
func knownIssue(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("KEYGATE_FUZZ_KNOWN") == "fail" {
		t.Fatalf("known issue: %s", what)
	}
	t.Skipf("known issue: %s", what)
}

// knownPanics are panics already filed, by a function on the panicking
// stack and the panic message; each entry says where the bug is described.
// (None open: the wallee JWT signature that was decoded before its length
// was checked, testdata/fuzz/FuzzWalleeJWT/7e8ba92313ef31f1, is fixed and
// its input is checked like any other.)
var knownPanics []struct{ fn, msg, issue string }

// noKnownPanic runs fn; a panic listed in knownPanics skips the input (see
// knownIssue), any other panic goes on. Once the bug is fixed the input no
// longer panics and meets the target's properties like any other.
func noKnownPanic(t *testing.T, fn func()) {
	t.Helper()
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		// Deferred calls run before the panicking frames unwind, so the
		// stack still shows where the panic came from.
		stack, msg := string(debug.Stack()), fmt.Sprint(v)
		for _, k := range knownPanics {
			if strings.Contains(stack, k.fn) && strings.Contains(msg, k.msg) {
				knownIssue(t, k.issue+": "+msg)
			}
		}
		panic(v)
	}()
	fn()
}

// wantSentinel fails t unless err wraps one of the allowed sentinels.
func wantSentinel(t *testing.T, what string, err error, allowed ...error) {
	t.Helper()
	for _, s := range allowed {
		if errors.Is(err, s) {
			return
		}
	}
	t.Fatalf("%s: error %v wraps none of %v", what, err, allowed)
}

// appendSFDictionary serializes a parsed Dictionary (RFC 8941 §4.1.2) with
// the package's item, parameter and inner-list serializers.
func appendSFDictionary(dst []byte, ms []sfMember) []byte {
	for i, m := range ms {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, m.key...)
		switch {
		case m.isList:
			dst = append(dst, '=')
			dst = appendSFInnerList(dst, m.list, m.params)
		case m.item.kind == sfBool && m.item.b:
			// A true Boolean member is written as the bare key.
			dst = appendSFParams(dst, m.params)
		default:
			dst = append(dst, '=')
			dst = appendSFItem(dst, m.item)
			dst = appendSFParams(dst, m.params)
		}
	}
	return dst
}

// sfNorm returns a comparable rendering of a parsed dictionary: integers
// by value (their source text may carry leading zeros), everything else
// exactly.
func sfNorm(ms []sfMember) string {
	var b strings.Builder
	item := func(it sfItem) {
		switch it.kind {
		case sfInteger:
			fmt.Fprintf(&b, "i(%d)", it.n)
		case sfBool:
			fmt.Fprintf(&b, "b(%v)", it.b)
		default:
			fmt.Fprintf(&b, "%d(%q)", it.kind, it.s)
		}
	}
	params := func(ps []sfParam) {
		for _, p := range ps {
			fmt.Fprintf(&b, ";%q=", p.key)
			item(p.val)
		}
	}
	for _, m := range ms {
		fmt.Fprintf(&b, "[%q list=%v ", m.key, m.isList)
		if m.isList {
			b.WriteByte('(')
			for _, in := range m.list {
				item(in.item)
				params(in.params)
				b.WriteByte(' ')
			}
			b.WriteByte(')')
		} else {
			item(m.item)
		}
		params(m.params)
		b.WriteString("]\n")
	}
	return b.String()
}

// keepBytes returns s without the bytes keep rejects, at most max long.
func keepBytes(s string, max int, keep func(c byte) bool) string {
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(b) < max; i++ {
		if keep(s[i]) {
			b = append(b, s[i])
		}
	}
	return string(b)
}

func isPrintableASCII(c byte) bool { return c >= 0x20 && c <= 0x7e }

// escapeTarget percent-encodes the bytes a request-target cannot carry
// (controls, space, non-ASCII, '#', '%'), so any fuzzed string becomes a
// target a client could send; '?' is escaped in the path part.
func escapeTarget(s string, isPath bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '#' || c == '%' || (isPath && c == '?') {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// sanitizeHost keeps a host name a client could send: lower-case letters,
// digits, '.' and '-'; never empty, and never with the default port (the
// RFC 9421 signer writes the Host as given, keygate drops ":80").
func sanitizeHost(s string) string {
	h := keepBytes(s, 64, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-'
	})
	if h == "" {
		h = "example.com"
	}
	return h
}

// sanitizeMethod keeps upper-case letters; default GET.
func sanitizeMethod(s string) string {
	m := keepBytes(s, 16, func(c byte) bool { return c >= 'A' && c <= 'Z' })
	if m == "" {
		m = "GET"
	}
	return m
}

// sanitizeUserID keeps a user id every scheme can carry literally:
// printable ASCII without the separators of any scheme's syntax.
func sanitizeUserID(s string) string {
	u := keepBytes(s, 64, func(c byte) bool {
		return isPrintableASCII(c) && !strings.ContainsRune(`"\|,/`, rune(c))
	})
	u = strings.TrimSpace(u)
	if u == "" {
		u = "app-7"
	}
	return u
}

// sanitizeLabel returns an RFC 8941 key usable as an RFC 9421 label.
func sanitizeLabel(s string) string {
	l := keepBytes(strings.ToLower(s), 16, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '*'
	})
	if l == "" || !(l[0] >= 'a' && l[0] <= 'z') {
		l = "sig" + l
	}
	return l
}
