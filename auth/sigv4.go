package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	sigV4Algorithm   = "AWS4-HMAC-SHA256"
	amzDateLayout    = "20060102T150405Z"
	unsignedPayload  = "UNSIGNED-PAYLOAD"
	emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	maxPresignExpiry = 7 * 24 * 60 * 60
)

var amzQueryParams = [...]string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
	"X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-Content-Sha256"}

// sigV4 is a parsed AWS Signature Version 4 credential.
type sigV4 struct {
	presigned     bool
	akid          string
	scope         string // date/region/service/aws4_request
	date, region  string
	service       string
	amzDate       string
	ts            time.Time
	expires       int64 // presigned only
	signedHeaders string
	sig           [sha256.Size]byte
}

// parseSigV4Header parses "Credential=…, SignedHeaders=…, Signature=…".
func parseSigV4Header(param string, h http.Header) (Credential, error) {
	s := &sigV4{}
	var cred, signature string
	var seen uint8
	for _, part := range strings.Split(param, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Credential{}, fmt.Errorf("sigv4: bad authorization: %w", ErrMalformed)
		}
		var bit uint8
		switch k {
		case "Credential":
			bit, cred = 1, v
		case "SignedHeaders":
			bit, s.signedHeaders = 2, v
		case "Signature":
			bit, signature = 4, v
		default:
			return Credential{}, fmt.Errorf("sigv4: unknown authorization field: %w", ErrMalformed)
		}
		if seen&bit != 0 {
			return Credential{}, fmt.Errorf("sigv4: repeated authorization field: %w", ErrMalformed)
		}
		seen |= bit
	}
	if seen != 7 {
		return Credential{}, fmt.Errorf("sigv4: incomplete authorization: %w", ErrMalformed)
	}
	amzDate, err := singleHeader(h, "X-Amz-Date")
	if err != nil {
		return Credential{}, err
	}
	if err := s.fill(cred, amzDate, signature); err != nil {
		return Credential{}, err
	}
	return Credential{Scheme: SigV4, UserID: s.akid, loc: inAuthorization, sig: s}, nil
}

// parseSigV4Query parses the presigned-URL form.
func parseSigV4Query(rawQuery string) (Credential, error) {
	get := func(name string) (string, error) {
		v, n, err := queryParam(rawQuery, name)
		if err != nil {
			return "", err
		}
		if n != 1 {
			return "", fmt.Errorf("sigv4: %s missing or repeated: %w", name, ErrMalformed)
		}
		return v, nil
	}
	var vals [6]string
	for i, n := range amzQueryParams[:6] {
		v, err := get(n)
		if err != nil {
			return Credential{}, err
		}
		vals[i] = v
	}
	if vals[0] != sigV4Algorithm {
		return Credential{}, fmt.Errorf("sigv4: unsupported algorithm: %w", ErrMalformed)
	}
	s := &sigV4{presigned: true, signedHeaders: vals[4]}
	exp, ok := parseDecimal(vals[3])
	if !ok || exp < 1 || exp > maxPresignExpiry {
		return Credential{}, fmt.Errorf("sigv4: bad X-Amz-Expires: %w", ErrMalformed)
	}
	s.expires = exp
	if err := s.fill(vals[1], vals[2], vals[5]); err != nil {
		return Credential{}, err
	}
	return Credential{Scheme: SigV4, UserID: s.akid, loc: inAmzQuery, sig: s}, nil
}

// fill parses the credential, date, signed headers and signature shared by both forms.
func (s *sigV4) fill(cred, amzDate, signature string) error {
	// AKID/date/region/service/aws4_request, split from the right.
	parts := strings.Split(cred, "/")
	if len(parts) < 5 || parts[len(parts)-1] != "aws4_request" {
		return fmt.Errorf("sigv4: bad credential: %w", ErrMalformed)
	}
	n := len(parts)
	s.akid = strings.Join(parts[:n-4], "/")
	s.date, s.region, s.service = parts[n-4], parts[n-3], parts[n-2]
	s.scope = cred[len(s.akid)+1:]
	if s.akid == "" || len(s.akid) > maxUserIDLen || len(s.date) != 8 || s.region == "" || s.service == "" {
		return fmt.Errorf("sigv4: bad credential: %w", ErrMalformed)
	}
	t, err := time.Parse(amzDateLayout, amzDate)
	if err != nil {
		return fmt.Errorf("sigv4: bad X-Amz-Date: %w", ErrMalformed)
	}
	s.amzDate, s.ts = amzDate, t
	if len(signature) != 2*sha256.Size {
		return fmt.Errorf("sigv4: bad signature: %w", ErrMalformed)
	}
	if _, err := hex.Decode(s.sig[:], []byte(signature)); err != nil {
		return fmt.Errorf("sigv4: bad signature: %w", ErrMalformed)
	}
	hs := s.signedHeaders
	if hs == "" || len(hs) > 2048 || hs != strings.ToLower(hs) || strings.Count(hs, ";") >= maxCovered {
		return fmt.Errorf("sigv4: bad signed headers: %w", ErrMalformed)
	}
	if !slices.Contains(strings.Split(hs, ";"), "host") {
		return fmt.Errorf("sigv4: host not signed: %w", ErrMalformed)
	}
	return nil
}

func (s *sigV4) verify(r *http.Request, secrets []Secret, e *env) (Verified, error) {
	// Freshness and scope first: they cost nothing.
	var ttl time.Duration
	if s.presigned {
		if time.Duration(s.expires)*time.Second > e.presign {
			return Verified{}, fmt.Errorf("sigv4: X-Amz-Expires %d s is longer than the route allows: %w", s.expires, ErrStale)
		}
		end := s.ts.Add(time.Duration(s.expires) * time.Second)
		if s.ts.After(e.now.Add(e.skew)) || e.now.After(end) {
			return Verified{}, fmt.Errorf("sigv4: %w", ErrStale)
		}
		ttl = end.Sub(e.now) + e.skew
	} else if err := checkFresh(s.ts, e.now, e.skew); err != nil {
		return Verified{}, fmt.Errorf("sigv4: %w", err)
	}
	if s.date != s.amzDate[:8] {
		return Verified{}, fmt.Errorf("sigv4: scope date: %w", ErrScopeMismatch)
	}
	if (e.region != "" && s.region != e.region) || (e.service != "" && s.service != e.service) {
		return Verified{}, fmt.Errorf("sigv4: %w", ErrScopeMismatch)
	}

	// Payload hash candidates.
	var payloads [2]string
	checkBody := ""
	ph := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case ph == unsignedPayload:
		payloads[0] = ph
	case len(ph) == 64:
		if _, err := hex.DecodeString(ph); err != nil {
			return Verified{}, fmt.Errorf("sigv4: bad x-amz-content-sha256: %w", ErrMalformed)
		}
		payloads[0], checkBody = ph, ph
	case ph != "":
		return Verified{}, fmt.Errorf("sigv4: unsupported x-amz-content-sha256: %w", ErrMalformed)
	case s.presigned:
		payloads[0] = unsignedPayload
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			payloads[1] = emptyPayloadHash
		}
	case !hasBody(r):
		payloads[0] = emptyPayloadHash
	case !e.readUndeclared:
		// The payload hash is part of what is signed: checking this
		// signature means reading and holding the body first, for anyone
		// who knows a user id. Refused before a byte is read.
		return Verified{}, fmt.Errorf("sigv4: %w", ErrUndeclaredPayload)
	default:
		body, err := readBody(r, e)
		if err != nil {
			return Verified{}, fmt.Errorf("sigv4: %w", err)
		}
		sum := sha256.Sum256(body)
		payloads[0] = hex.EncodeToString(sum[:])
	}

	bp := getBuf()
	defer putBuf(bp)
	buf := (*bp)[:0]

	// Shared parts of the canonical request.
	path, query, _ := splitTarget(e.target)
	buf = append(buf, r.Method...)
	buf = append(buf, '\n')
	uriStart := len(buf)
	buf = appendDoubleEncodedPath(buf, path)
	uriDouble := string(buf[uriStart:]) // small; needed to rebuild the S3 variant
	buf = buf[:uriStart]
	single, ok := appendSingleEncodedPath(buf[len(buf):], path)
	uriSingle := ""
	if ok && string(single) != uriDouble {
		uriSingle = string(single)
	}
	var err error
	rest := make([]byte, 0, 256)
	rest = append(rest, '\n')
	if rest, err = appendCanonicalQuery(rest, query, s.presigned); err != nil {
		return Verified{}, fmt.Errorf("sigv4: %w", err)
	}
	rest = append(rest, '\n')
	if rest, err = s.appendCanonicalHeaders(rest, r); err != nil {
		return Verified{}, fmt.Errorf("sigv4: %w", err)
	}
	rest = append(rest, '\n')
	rest = append(rest, s.signedHeaders...)
	rest = append(rest, '\n')

	// String-to-sign digests of every candidate canonical request.
	var digests [4][2 * sha256.Size]byte
	nd := 0
	for _, uri := range [2]string{uriDouble, uriSingle} {
		if uri == "" && nd > 0 {
			continue
		}
		for _, p := range payloads {
			if p == "" {
				continue
			}
			creq := append(buf[:uriStart], uri...)
			creq = append(creq, rest...)
			creq = append(creq, p...)
			sum := sha256.Sum256(creq)
			hex.Encode(digests[nd][:], sum[:])
			nd++
			buf = creq[:uriStart]
		}
	}
	*bp = buf

	sts := make([]byte, 0, 160)
	sts = append(sts, sigV4Algorithm+"\n"...)
	sts = append(sts, s.amzDate...)
	sts = append(sts, '\n')
	sts = append(sts, s.scope...)
	sts = append(sts, '\n')
	digestAt := len(sts)

	var key, sum [sha256.Size]byte
	for i, sec := range secrets {
		if sec.Value == "" {
			continue
		}
		s.signingKey(key[:0], sec.Value)
		h := hmac.New(sha256.New, key[:])
		for d := 0; d < nd; d++ {
			sts = append(sts[:digestAt], digests[d][:]...)
			h.Reset()
			h.Write(sts)
			if hmac.Equal(h.Sum(sum[:0]), s.sig[:]) {
				if checkBody != "" {
					if err := checkPayloadHash(r, checkBody, e); err != nil {
						return Verified{}, fmt.Errorf("sigv4: %w", err)
					}
				}
				return Verified{SecretID: secrets[i].ID, Timestamp: s.ts, ReplayKey: replayKey(SigV4, s.sig[:]), ReplayTTL: ttl}, nil
			}
		}
	}
	return Verified{}, fmt.Errorf("sigv4: %w", ErrBadSignature)
}

// signingKey derives the SigV4 signing key into dst[:32].
func (s *sigV4) signingKey(dst []byte, secret string) []byte {
	k := make([]byte, 0, 4+len(secret))
	k = append(append(k, "AWS4"...), secret...)
	var cur [sha256.Size]byte
	h := hmac.New(sha256.New, k)
	h.Write([]byte(s.date))
	h.Sum(cur[:0])
	for _, part := range [3]string{s.region, s.service, "aws4_request"} {
		h = hmac.New(sha256.New, cur[:])
		h.Write([]byte(part))
		h.Sum(cur[:0])
	}
	return append(dst, cur[:]...)
}

func checkPayloadHash(r *http.Request, want string, e *env) error {
	if e.noBody && !strings.EqualFold(want, emptyPayloadHash) {
		return ErrNoBody
	}
	body, err := readBody(r, e)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	var got [2 * sha256.Size]byte
	hex.Encode(got[:], sum[:])
	if !hmac.Equal(got[:], []byte(strings.ToLower(want))) {
		return fmt.Errorf("payload hash mismatch: %w", ErrBadSignature)
	}
	return nil
}

// appendDoubleEncodedPath writes the canonical URI the AWS SDKs use for
// every service but S3: the path as sent, with empty and dot segments
// removed, each segment URI-encoded once more (%20 → %2520).
func appendDoubleEncodedPath(dst []byte, path string) []byte {
	start := len(dst)
	var segs [64]string
	stack := segs[:0]
	for _, seg := range strings.Split(path, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			stack = append(stack, seg)
		}
	}
	for _, seg := range stack {
		dst = append(dst, '/')
		dst = appendEscaped(dst, seg, &awsUnreserved)
	}
	if len(dst) == start {
		return append(dst, '/')
	}
	if strings.HasSuffix(path, "/") {
		dst = append(dst, '/')
	}
	return dst
}

// appendSingleEncodedPath writes the S3-style canonical URI: the path
// decoded and encoded once, '/' kept, no normalization.
func appendSingleEncodedPath(dst []byte, path string) ([]byte, bool) {
	if path == "" {
		return append(dst, '/'), true
	}
	var tmp [256]byte
	dec, ok := appendUnescaped(tmp[:0], path, false)
	if !ok {
		return dst, false
	}
	for _, seg := range bytes.SplitAfter(dec, []byte("/")) {
		if n := len(seg); n > 0 && seg[n-1] == '/' {
			dst = appendEscaped(dst, seg[:n-1], &awsUnreserved)
			dst = append(dst, '/')
		} else {
			dst = appendEscaped(dst, seg, &awsUnreserved)
		}
	}
	return dst, true
}

type queryPair struct{ k, v []byte }

// appendCanonicalQuery writes the sorted, re-encoded query; the presigned
// form leaves out X-Amz-Signature.
func appendCanonicalQuery(dst []byte, rawQuery string, presigned bool) ([]byte, error) {
	if rawQuery == "" {
		return dst, nil
	}
	if len(rawQuery) > maxTargetLen {
		return dst, fmt.Errorf("query too long: %w", ErrMalformed)
	}
	var pairsBuf [16]queryPair
	pairs := pairsBuf[:0]
	scratch := make([]byte, 0, len(rawQuery)*3)
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		var p queryPair
		var ok bool
		for i, s := range [2]string{k, v} {
			var tmp [128]byte
			dec, good := appendUnescaped(tmp[:0], s, false)
			if !good {
				return dst, fmt.Errorf("bad query escape: %w", ErrMalformed)
			}
			start := len(scratch)
			scratch = appendEscaped(scratch, dec, &awsUnreserved)
			if i == 0 {
				p.k = scratch[start:len(scratch):len(scratch)]
			} else {
				p.v = scratch[start:len(scratch):len(scratch)]
			}
			ok = true
		}
		if ok {
			pairs = append(pairs, p)
		}
	}
	slices.SortFunc(pairs, func(a, b queryPair) int {
		if c := bytes.Compare(a.k, b.k); c != 0 {
			return c
		}
		return bytes.Compare(a.v, b.v)
	})
	for i, p := range pairs {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, p.k...)
		dst = append(dst, '=')
		dst = append(dst, p.v...)
	}
	return dst, nil
}

// appendCanonicalHeaders writes "name:value\n" for each signed header:
// values trimmed, inner runs of spaces collapsed, repeats joined with ','.
func (s *sigV4) appendCanonicalHeaders(dst []byte, r *http.Request) ([]byte, error) {
	rest := s.signedHeaders
	for rest != "" {
		var name string
		name, rest, _ = strings.Cut(rest, ";")
		if name == "" {
			return dst, fmt.Errorf("bad signed headers: %w", ErrMalformed)
		}
		dst = append(dst, name...)
		dst = append(dst, ':')
		vs := r.Header[http.CanonicalHeaderKey(name)]
		switch {
		case len(vs) > 0:
		case name == "host":
			vs = []string{r.Host}
		case name == "content-length" && r.ContentLength >= 0:
			vs = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			return dst, fmt.Errorf("signed header %s missing: %w", name, ErrMalformed)
		}
		for i, v := range vs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendCollapsed(dst, v)
		}
		dst = append(dst, '\n')
	}
	return dst, nil
}

// appendCollapsed appends v trimmed, with runs of spaces and tabs as one space.
func appendCollapsed(dst []byte, v string) []byte {
	v = strings.Trim(v, " \t")
	space := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' || c == '\t' {
			space = true
			continue
		}
		if space {
			dst = append(dst, ' ')
			space = false
		}
		dst = append(dst, c)
	}
	return dst
}
