package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

var macHeaders = [...]string{"X-Mac-Version", "X-Mac-Userid", "X-Mac-Timestamp", "X-Mac-Value"}

func hasAnyMACHeader(h http.Header) bool {
	for _, n := range macHeaders {
		if _, ok := h[n]; ok {
			return true
		}
	}
	return false
}

// walleeMAC is a parsed wallee MAC credential.
type walleeMAC struct {
	userID string
	ts     string // decimal seconds, as sent (it is part of the signed string)
	tsUnix int64
	mac    [sha512.Size]byte
}

func parseWalleeMAC(h http.Header) (Credential, error) {
	var vals [4]string
	for i, n := range macHeaders {
		v, err := singleHeader(h, n)
		if err != nil {
			return Credential{}, err
		}
		if v == "" {
			return Credential{}, fmt.Errorf("wallee mac: missing %s: %w", n, ErrMalformed)
		}
		vals[i] = v
	}
	if vals[0] != "1" {
		return Credential{}, fmt.Errorf("wallee mac: unsupported version: %w", ErrMalformed)
	}
	m := &walleeMAC{userID: vals[1], ts: vals[2]}
	if len(m.userID) > maxUserIDLen || strings.IndexByte(m.userID, '|') >= 0 {
		return Credential{}, fmt.Errorf("wallee mac: bad user id: %w", ErrMalformed)
	}
	ts, ok := parseDecimal(m.ts)
	if !ok {
		return Credential{}, fmt.Errorf("wallee mac: bad timestamp: %w", ErrMalformed)
	}
	m.tsUnix = ts
	if base64.StdEncoding.DecodedLen(len(vals[3])) > len(m.mac)+2 {
		return Credential{}, fmt.Errorf("wallee mac: bad mac length: %w", ErrMalformed)
	}
	var buf [sha512.Size + 3]byte
	n, err := base64.StdEncoding.Decode(buf[:], []byte(vals[3]))
	if err != nil || n != sha512.Size {
		return Credential{}, fmt.Errorf("wallee mac: bad mac encoding: %w", ErrMalformed)
	}
	copy(m.mac[:], buf[:n])
	return Credential{Scheme: WalleeMAC, UserID: m.userID, loc: inMACHeaders, sig: m}, nil
}

// parseDecimal parses 1–18 ASCII digits.
func parseDecimal(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// decodeSecret base64-decodes a secret as the wallee SDKs do.
func decodeSecret(dst []byte, v string) ([]byte, bool) {
	if base64.StdEncoding.DecodedLen(len(v)) > cap(dst) {
		return nil, false
	}
	dst = dst[:cap(dst)]
	n, err := base64.StdEncoding.Decode(dst, []byte(v))
	if err != nil {
		return nil, false
	}
	return dst[:n], true
}

// appendAltTarget appends target with its query re-encoded the
// encodeURIComponent way. It reports false when that gives nothing new
// (no query, a broken escape, or the same bytes).
func appendAltTarget(dst []byte, target string) ([]byte, bool) {
	path, query, hasQuery := splitTarget(target)
	if !hasQuery {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, path...)
	if query != "" {
		dst = append(dst, '?')
		var good bool
		if dst, good = appendURIComponentQuery(dst, query); !good {
			return dst[:start], false
		}
	}
	if string(dst[start:]) == target {
		return dst[:start], false
	}
	return dst, true
}

func (m *walleeMAC) verify(r *http.Request, secrets []Secret, e *env) (Verified, error) {
	ts := time.Unix(m.tsUnix, 0)
	if err := checkFresh(ts, e.now, e.skew); err != nil {
		return Verified{}, fmt.Errorf("wallee mac: %w", err)
	}
	bp, bp2 := getBuf(), getBuf()
	defer putBuf(bp)
	defer putBuf(bp2)
	msg := append((*bp)[:0], "1|"...)
	msg = append(msg, m.userID...)
	msg = append(msg, '|')
	msg = append(msg, m.ts...)
	msg = append(msg, '|')
	msg = append(msg, r.Method...)
	msg = append(msg, '|')
	prefix := len(msg)
	first := append(msg, e.target...)
	*bp = first
	second, hasAlt := appendAltTarget(append((*bp2)[:0], first[:prefix]...), e.target)
	*bp2 = second
	if !hasAlt {
		second = nil
	}
	var keyBuf [64]byte
	var sum [sha512.Size]byte
	for _, s := range secrets {
		key, ok := decodeSecret(keyBuf[:0], s.Value)
		if !ok {
			continue
		}
		h := hmac.New(sha512.New, key)
		for _, cand := range [2][]byte{first, second} {
			if cand == nil {
				continue
			}
			h.Reset()
			h.Write(cand)
			if hmac.Equal(h.Sum(sum[:0]), m.mac[:]) {
				return Verified{SecretID: s.ID, Timestamp: ts, ReplayKey: replayKey(WalleeMAC, m.mac[:])}, nil
			}
		}
	}
	return Verified{}, fmt.Errorf("wallee mac: %w", ErrBadSignature)
}

// walleeJWT is a parsed wallee JWT.
type walleeJWT struct {
	signingInput string // header.payload
	sig          [sha256.Size]byte
	iat          int64
	exp          int64 // 0 when absent
	path         string
	method       string
	hasJTI       bool
}

type jwtHeader struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Type string          `json:"type"`
	Kid  string          `json:"kid"`
	Ver  json.RawMessage `json:"ver"`
	Crit json.RawMessage `json:"crit"`
}

type jwtClaims struct {
	Sub           json.RawMessage `json:"sub"`
	Iat           json.Number     `json:"iat"`
	Exp           json.Number     `json:"exp"`
	RequestPath   *string         `json:"requestPath"`
	RequestMethod *string         `json:"requestMethod"`
	JTI           string          `json:"jti"`
}

// splitJWT splits a compact JWS into its three parts.
func splitJWT(tok string) (h, p, s string, ok bool) {
	h, rest, ok1 := strings.Cut(tok, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || p == "" || s == "" || strings.IndexByte(s, '.') >= 0 {
		return "", "", "", false
	}
	return h, p, s, true
}

// decodeJSONPart base64url-decodes (unpadded) and unmarshals one JWT part.
func decodeJSONPart(part string, v any) bool {
	if len(part) > maxHeaderLen {
		return false
	}
	buf := make([]byte, base64.RawURLEncoding.DecodedLen(len(part)))
	n, err := base64.RawURLEncoding.Strict().Decode(buf, []byte(part))
	if err != nil {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(buf[:n]))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return false
	}
	// Only white space may follow the value: dec.More would let a stray
	// ']' or '}' through.
	return len(bytes.TrimLeft(buf[dec.InputOffset():n], " \t\r\n")) == 0
}

// parseBearerJWT classifies a Bearer value that is not an access key.
// ok is false when the token belongs to a disabled scheme.
func (d *Detector) parseBearerJWT(tok string) (Credential, bool, error) {
	hp, pp, sp, ok := splitJWT(tok)
	if !ok {
		return Credential{}, false, fmt.Errorf("bearer token: %w", ErrMalformed)
	}
	var hdr jwtHeader
	if !decodeJSONPart(hp, &hdr) {
		return Credential{}, false, fmt.Errorf("bearer token header: %w", ErrMalformed)
	}
	if hdr.Kid != "" && d.IsTokenKID != nil && d.IsTokenKID(hdr.Kid) {
		if !d.Schemes.Has(AccessToken) {
			return Credential{}, false, nil
		}
		return Credential{Scheme: AccessToken, Token: tok, loc: inAuthorization}, true, nil
	}
	if !d.Schemes.Has(WalleeJWT) {
		return Credential{}, false, nil
	}
	c, err := parseWalleeJWT(hdr, hp, pp, sp, tok)
	return c, err == nil, err
}

func parseWalleeJWT(hdr jwtHeader, hp, pp, sp, tok string) (Credential, error) {
	if hdr.Alg != "HS256" {
		return Credential{}, fmt.Errorf("wallee jwt: unsupported alg: %w", ErrMalformed)
	}
	if len(hdr.Crit) > 0 {
		return Credential{}, fmt.Errorf("wallee jwt: crit header: %w", ErrMalformed)
	}
	for _, t := range [2]string{hdr.Typ, hdr.Type} {
		if t != "" && !strings.EqualFold(t, "JWT") {
			return Credential{}, fmt.Errorf("wallee jwt: bad type: %w", ErrMalformed)
		}
	}
	if v := string(hdr.Ver); v != "" && v != "1" && v != `"1"` {
		return Credential{}, fmt.Errorf("wallee jwt: unsupported ver: %w", ErrMalformed)
	}
	var cl jwtClaims
	if !decodeJSONPart(pp, &cl) {
		return Credential{}, fmt.Errorf("wallee jwt claims: %w", ErrMalformed)
	}
	j := &walleeJWT{signingInput: tok[:len(hp)+1+len(pp)], hasJTI: cl.JTI != ""}
	// The length first: Decode writes past j.sig for a longer part.
	if len(sp) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return Credential{}, fmt.Errorf("wallee jwt signature: %w", ErrMalformed)
	}
	if n, err := base64.RawURLEncoding.Strict().Decode(j.sig[:], []byte(sp)); err != nil || n != sha256.Size {
		return Credential{}, fmt.Errorf("wallee jwt signature: %w", ErrMalformed)
	}
	sub, ok := claimString(cl.Sub)
	if !ok || sub == "" || len(sub) > maxUserIDLen {
		return Credential{}, fmt.Errorf("wallee jwt: bad sub: %w", ErrMalformed)
	}
	iat, ok := numericDate(cl.Iat)
	if !ok {
		return Credential{}, fmt.Errorf("wallee jwt: bad iat: %w", ErrMalformed)
	}
	j.iat = iat
	if cl.Exp != "" {
		if j.exp, ok = numericDate(cl.Exp); !ok {
			return Credential{}, fmt.Errorf("wallee jwt: bad exp: %w", ErrMalformed)
		}
	}
	if cl.RequestPath == nil || cl.RequestMethod == nil {
		return Credential{}, fmt.Errorf("wallee jwt: missing request claims: %w", ErrMalformed)
	}
	j.path, j.method = *cl.RequestPath, *cl.RequestMethod
	return Credential{Scheme: WalleeJWT, UserID: sub, loc: inAuthorization, sig: j}, nil
}

// claimString accepts a JSON string or an integer (SDKs type user ids as numbers).
func claimString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	if _, ok := parseDecimal(string(raw)); ok {
		return string(raw), true
	}
	return "", false
}

// numericDate reads a JWT NumericDate (seconds, possibly fractional).
func numericDate(n json.Number) (int64, bool) {
	if n == "" {
		return 0, false
	}
	if i, err := n.Int64(); err == nil {
		return i, i > 0
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f <= 0 || f > 1e12 {
		return 0, false
	}
	return int64(f), true
}

func (j *walleeJWT) verify(r *http.Request, secrets []Secret, e *env) (Verified, error) {
	ts := time.Unix(j.iat, 0)
	if err := checkFresh(ts, e.now, e.skew); err != nil {
		return Verified{}, fmt.Errorf("wallee jwt: %w", err)
	}
	if j.exp != 0 && e.now.After(time.Unix(j.exp, 0)) {
		return Verified{}, fmt.Errorf("wallee jwt: expired: %w", ErrStale)
	}
	var keyBuf [64]byte
	var sum [sha256.Size]byte
	matched := -1
	for i, s := range secrets {
		key, ok := decodeSecret(keyBuf[:0], s.Value)
		if !ok {
			continue
		}
		h := hmac.New(sha256.New, key)
		h.Write([]byte(j.signingInput))
		if hmac.Equal(h.Sum(sum[:0]), j.sig[:]) {
			matched = i
			break
		}
	}
	if matched < 0 {
		return Verified{}, fmt.Errorf("wallee jwt: %w", ErrBadSignature)
	}
	if j.method != r.Method {
		return Verified{}, fmt.Errorf("wallee jwt: method mismatch: %w", ErrBadSignature)
	}
	if j.path != e.target {
		bp := getBuf()
		alt, ok := appendAltTarget((*bp)[:0], e.target)
		same := ok && string(alt) == j.path
		*bp = alt
		putBuf(bp)
		if !same {
			return Verified{}, fmt.Errorf("wallee jwt: path mismatch: %w", ErrBadSignature)
		}
	}
	return Verified{
		SecretID:  secrets[matched].ID,
		Timestamp: ts,
		HasNonce:  j.hasJTI,
		ReplayKey: replayKey(WalleeJWT, j.sig[:]),
	}, nil
}
