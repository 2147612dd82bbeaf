package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"hash"
	"net/http"
	"strings"
	"time"
)

const maxCovered = 32 // covered components per signature

// cavageSig is a parsed draft-cavage-http-signatures-12 signature.
type cavageSig struct {
	keyID   string
	sha512  bool // hs2019 (HMAC-SHA512) rather than hmac-sha256
	headers []string
	created string // as sent; empty when absent
	expires string
	sig     []byte
}

// parseCavage parses the parameters of a cavage Signature header or the
// part of an Authorization header after "Signature".
func parseCavage(v string, loc location) (Credential, error) {
	if len(v) > maxHeaderLen {
		return Credential{}, fmt.Errorf("http signature: %w", ErrMalformed)
	}
	c := &cavageSig{}
	var algorithm, headers, signature string
	var seen uint8
	rest := v
	for {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		name, after, ok := strings.Cut(rest, "=")
		if !ok {
			return Credential{}, fmt.Errorf("http signature: bad parameter: %w", ErrMalformed)
		}
		name = strings.TrimSpace(name)
		var val string
		if strings.HasPrefix(after, `"`) {
			end := strings.IndexByte(after[1:], '"')
			if end < 0 {
				return Credential{}, fmt.Errorf("http signature: unterminated string: %w", ErrMalformed)
			}
			val, rest = after[1:1+end], after[2+end:]
		} else {
			end := strings.IndexAny(after, ", \t")
			if end < 0 {
				end = len(after)
			}
			val, rest = after[:end], after[end:]
		}
		var bit uint8
		switch strings.ToLower(name) {
		case "keyid":
			bit, c.keyID = 1, val
		case "algorithm":
			bit, algorithm = 2, val
		case "headers":
			bit, headers = 4, val
		case "signature":
			bit, signature = 8, val
		case "created":
			bit, c.created = 16, val
		case "expires":
			bit, c.expires = 32, val
		default:
			continue // unknown parameters are ignored (draft-cavage-12 §2.2)
		}
		if seen&bit != 0 {
			return Credential{}, fmt.Errorf("http signature: repeated parameter: %w", ErrMalformed)
		}
		seen |= bit
	}
	if c.keyID == "" || signature == "" || len(c.keyID) > maxUserIDLen {
		return Credential{}, fmt.Errorf("http signature: missing keyId or signature: %w", ErrMalformed)
	}
	switch strings.ToLower(algorithm) {
	case "", "hs2019":
		c.sha512 = true
	case "hmac-sha256":
	default:
		return Credential{}, fmt.Errorf("http signature: unsupported algorithm: %w", ErrMalformed)
	}
	for _, p := range [2]string{c.created, c.expires} {
		if p != "" {
			if _, ok := parseDecimal(p); !ok {
				return Credential{}, fmt.Errorf("http signature: bad created/expires: %w", ErrMalformed)
			}
		}
	}
	if headers == "" {
		// draft-cavage-12: the default is (created); earlier drafts used date.
		if c.created != "" {
			headers = "(created)"
		} else {
			headers = "date"
		}
	}
	c.headers = strings.Fields(strings.ToLower(headers))
	if len(c.headers) == 0 || len(c.headers) > maxCovered {
		return Credential{}, fmt.Errorf("http signature: bad headers: %w", ErrMalformed)
	}
	sig, err := base64.StdEncoding.Strict().DecodeString(signature)
	want := sha256.Size
	if c.sha512 {
		want = sha512.Size
	}
	if err != nil || len(sig) != want {
		return Credential{}, fmt.Errorf("http signature: bad signature encoding: %w", ErrMalformed)
	}
	c.sig = sig
	return Credential{Scheme: HTTPSignature, UserID: c.keyID, loc: loc, sig: c}, nil
}

// appendFieldValue appends the values of header name, trimmed and joined
// with ", ". It reports false when the header is absent.
func appendFieldValue(dst []byte, r *http.Request, name string) ([]byte, bool) {
	vs := r.Header[http.CanonicalHeaderKey(name)]
	if len(vs) == 0 {
		switch name {
		case "host":
			if r.Host == "" {
				return dst, false
			}
			return append(dst, r.Host...), true
		case "content-length":
			if r.ContentLength < 0 || (r.ContentLength == 0 && r.Body != nil && r.Body != http.NoBody) {
				return dst, false
			}
			return appendInt(dst, r.ContentLength), true
		}
		return dst, false
	}
	for i, v := range vs {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = append(dst, strings.TrimSpace(v)...)
	}
	return dst, true
}

func appendInt(dst []byte, n int64) []byte {
	var b [20]byte
	i := len(b)
	if n == 0 {
		return append(dst, '0')
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, b[i:]...)
}

func (c *cavageSig) verify(r *http.Request, secrets []Secret, e *env) (Verified, error) {
	if err := checkCavageCoverage(c.headers, r, e); err != nil {
		return Verified{}, err
	}
	var (
		ts                  time.Time
		haveTS              bool
		coversDigest        bool
		createdCov, dateCov bool
	)
	bp := getBuf()
	defer putBuf(bp)
	buf := (*bp)[:0]
	for i, h := range c.headers {
		if i > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, h...)
		buf = append(buf, ": "...)
		switch h {
		case "(request-target)":
			buf = append(buf, strings.ToLower(r.Method)...)
			buf = append(buf, ' ')
			buf = append(buf, e.target...)
		case "(created)":
			if c.created == "" {
				return Verified{}, fmt.Errorf("http signature: (created) without created: %w", ErrMalformed)
			}
			buf = append(buf, c.created...)
			createdCov = true
		case "(expires)":
			if c.expires == "" {
				return Verified{}, fmt.Errorf("http signature: (expires) without expires: %w", ErrMalformed)
			}
			buf = append(buf, c.expires...)
		default:
			var ok bool
			if buf, ok = appendFieldValue(buf, r, h); !ok {
				return Verified{}, fmt.Errorf("http signature: covered header %s missing: %w", h, ErrMalformed)
			}
			switch h {
			case "date":
				dateCov = true
			case "digest":
				coversDigest = true
			}
		}
	}
	*bp = buf
	switch {
	case createdCov:
		n, _ := parseDecimal(c.created)
		ts, haveTS = time.Unix(n, 0), true
	case dateCov:
		t, err := http.ParseTime(r.Header.Get("Date"))
		if err != nil {
			return Verified{}, fmt.Errorf("http signature: bad date: %w", ErrMalformed)
		}
		ts, haveTS = t, true
	}
	if !haveTS {
		return Verified{}, fmt.Errorf("http signature: no signed timestamp: %w", ErrMalformed)
	}
	if err := checkFresh(ts, e.now, e.skew); err != nil {
		return Verified{}, fmt.Errorf("http signature: %w", err)
	}
	if c.expires != "" {
		n, _ := parseDecimal(c.expires)
		if e.now.After(time.Unix(n, 0)) {
			return Verified{}, fmt.Errorf("http signature: expired: %w", ErrStale)
		}
	}
	newHash := sha256.New
	if c.sha512 {
		newHash = sha512.New
	}
	i, ok := matchHMAC(newHash, secrets, buf, c.sig)
	if !ok {
		return Verified{}, fmt.Errorf("http signature: %w", ErrBadSignature)
	}
	if coversDigest {
		if err := checkDigestHeader(r, e); err != nil {
			return Verified{}, fmt.Errorf("http signature: %w", err)
		}
	}
	return Verified{SecretID: secrets[i].ID, Timestamp: ts, ReplayKey: replayKey(HTTPSignature, c.sig)}, nil
}

// matchHMAC returns the index of the secret (used as its string bytes)
// whose HMAC of msg equals want.
func matchHMAC(newHash func() hash.Hash, secrets []Secret, msg, want []byte) (int, bool) {
	var sum [sha512.Size]byte
	for i, s := range secrets {
		if s.Value == "" {
			continue
		}
		h := hmac.New(newHash, []byte(s.Value))
		h.Write(msg)
		if hmac.Equal(h.Sum(sum[:0]), want) {
			return i, true
		}
	}
	return -1, false
}

// sumBody returns the digest of body with alg ("sha-256" or "sha-512",
// lower case), and false for an algorithm keygate does not check.
func sumBody(alg string, body []byte) ([]byte, bool) {
	switch alg {
	case "sha-256":
		s := sha256.Sum256(body)
		return s[:], true
	case "sha-512":
		s := sha512.Sum512(body)
		return s[:], true
	}
	return nil, false
}

// matchDigest compares a base64 digest as sent with sum, in constant time;
// what names the header in errors.
func matchDigest(what, b64 string, sum []byte) error {
	got, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("%s: %w", what, ErrMalformed)
	}
	if !hmac.Equal(got, sum) {
		return fmt.Errorf("%s mismatch: %w", what, ErrBadSignature)
	}
	return nil
}

// checkDigestHeader verifies the legacy Digest header (RFC 3230) against
// the body: every SHA-256 / SHA-512 entry must match, and one must exist.
func checkDigestHeader(r *http.Request, e *env) error {
	if e.noBody {
		return ErrNoBody
	}
	body, err := readBody(r, e)
	if err != nil {
		return err
	}
	known := 0
	for _, line := range r.Header.Values("Digest") {
		for _, item := range strings.Split(line, ",") {
			alg, val, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok {
				return fmt.Errorf("digest: %w", ErrMalformed)
			}
			sum, ok := sumBody(strings.ToLower(alg), body)
			if !ok {
				continue
			}
			if err := matchDigest("digest", val, sum); err != nil {
				return err
			}
			known++
		}
	}
	if known == 0 {
		return fmt.Errorf("digest: no supported algorithm: %w", ErrMalformed)
	}
	return nil
}
