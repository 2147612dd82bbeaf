package auth

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/keygate/keygate/keys"
)

// Size limits for credential material. Anything larger is ErrMalformed.
const (
	maxHeaderLen = 8 << 10  // one credential header (Authorization, Signature-Input, …)
	maxTargetLen = 16 << 10 // the request-target a signature covers
	maxUserIDLen = 256      // a claimed user id
)

// DefaultKeyHeader is the header that carries an access key by default.
const DefaultKeyHeader = "X-Api-Key"

// Detector finds the credential of a request. Configure it once per route;
// it is safe for concurrent use as long as it is not modified.
type Detector struct {
	// Schemes enabled on the route. Zero means all schemes.
	Schemes SchemeSet
	// KeyHeader carries an access key. Empty means DefaultKeyHeader.
	KeyHeader string
	// KeyQuery, when set, names a query parameter that may carry an access key.
	KeyQuery string
	// ForeignKeys also accepts access keys that are not keygate's kg_
	// shape (keys imported from another gateway, found by their hash):
	// in KeyHeader, in KeyQuery, as "Authorization: Bearer <key>" when the
	// value is no JWT, and, when KeyHeader is Authorization, as the whole
	// Authorization value (Tyk's and KrakenD's raw form). Such a
	// credential has an empty KeyID. Default: off (kg_ keys only).
	ForeignKeys bool
	// IsTokenKID reports whether kid names one of keygate's token-signing
	// keys: a Bearer JWT with such a kid is an access token. Nil means none.
	IsTokenKID func(kid string) bool
}

// where a credential was found.
type location uint8

const (
	inAuthorization location = 1 << iota
	inKeyHeader
	inKeyQuery
	inMACHeaders
	inSignatureHeaders // Signature, Signature-Input, and Authorization when cavage uses it
	inAmzQuery
)

// Credential is the one credential found in a request.
type Credential struct {
	// Scheme of the credential.
	Scheme Scheme
	// UserID is the user a signed credential claims to be (wallee user id,
	// JWT sub, keyId/keyid, SigV4 access key id). It is not authenticated
	// until Verify succeeds. Empty for access keys and tokens.
	UserID string
	// AccessKey is the full access key (access_key only).
	AccessKey string
	// KeyID is the public id of AccessKey, from keys.ParseAccessKey.
	KeyID string
	// Token is the raw JWT of an access token (access_token only).
	Token string

	loc location // where it was found
	sig signed
}

// Detect finds exactly one credential of the enabled schemes, in the order
// of SPEC section 3: access key, wallee MAC, Bearer JWT (access token when
// its kid is known, else wallee JWT), HTTP signature (cavage or RFC 9421),
// SigV4. It returns ErrNoCredential when there is none, ErrAmbiguous when
// there are two different ones, and ErrMalformed when one cannot be parsed.
// Detect does not verify anything and does not read the body.
func (d *Detector) Detect(r *http.Request) (Credential, error) {
	var (
		found    Credential
		count    int
		firstErr error
	)
	add := func(c Credential, err error) {
		if err != nil {
			count++
			if firstErr == nil {
				firstErr = err
			}
			return
		}
		if count > 0 && firstErr == nil && c.Scheme == AccessKey && found.Scheme == AccessKey && c.AccessKey == found.AccessKey {
			found.loc |= c.loc // the same key twice is one credential
			return
		}
		count++
		if count == 1 {
			found = c
		}
	}

	authz, err := singleHeader(r.Header, "Authorization")
	if err != nil {
		return Credential{}, err
	}
	authScheme, authParam := splitAuthorization(authz)

	// 1. Access key.
	bearerForeign := false
	if d.Schemes.Has(AccessKey) {
		bearer := strings.EqualFold(authScheme, "Bearer")
		switch {
		case bearer && strings.HasPrefix(authParam, keys.KeyPrefix):
			add(accessKeyCredential(authParam, inAuthorization))
		case bearer && d.ForeignKeys && authParam != "" && !jwtShaped(authParam):
			bearerForeign = true
			add(d.keyCredential(authParam, inAuthorization))
		}
		name := d.KeyHeader
		if name == "" {
			name = DefaultKeyHeader
		}
		if strings.EqualFold(name, "Authorization") {
			// The key is the whole value (one token, no scheme).
			if authz != "" && authParam == "" && !knownAuthScheme(authScheme) {
				add(d.keyCredential(strings.TrimSpace(authz), inAuthorization))
			}
		} else {
			v, err := singleHeader(r.Header, name)
			if err != nil {
				return Credential{}, err
			}
			if v != "" {
				add(d.keyCredential(v, inKeyHeader))
			}
		}
		if d.KeyQuery != "" && r.URL != nil {
			v, n, err := queryParam(r.URL.RawQuery, d.KeyQuery)
			switch {
			case err != nil:
				add(Credential{}, err)
			case n > 1:
				return Credential{}, fmt.Errorf("access key query parameter repeated: %w", ErrAmbiguous)
			case n == 1:
				add(d.keyCredential(v, inKeyQuery))
			}
		}
	}

	// 2. wallee MAC.
	if d.Schemes.Has(WalleeMAC) && hasAnyMACHeader(r.Header) {
		add(parseWalleeMAC(r.Header))
	}

	// 3. Bearer JWT: access token or wallee JWT.
	if strings.EqualFold(authScheme, "Bearer") && !strings.HasPrefix(authParam, keys.KeyPrefix) && !bearerForeign &&
		(d.Schemes.Has(AccessToken) || d.Schemes.Has(WalleeJWT)) {
		if c, ok, err := d.parseBearerJWT(authParam); err != nil || ok {
			add(c, err)
		}
	}

	// 4. HTTP signatures.
	if d.Schemes.Has(HTTPSignature) {
		_, hasInput := r.Header["Signature-Input"]
		_, hasSig := r.Header["Signature"]
		authSig := strings.EqualFold(authScheme, "Signature")
		switch {
		case hasInput:
			add(parseRFC9421(r.Header))
			if authSig {
				add(parseCavage(authParam, inAuthorization))
			}
		case authSig && hasSig:
			sigHdr, err := singleHeader(r.Header, "Signature")
			if err != nil {
				return Credential{}, err
			}
			if strings.TrimSpace(sigHdr) != authParam {
				return Credential{}, fmt.Errorf("two cavage signatures: %w", ErrAmbiguous)
			}
			add(parseCavage(authParam, inAuthorization|inSignatureHeaders))
		case authSig:
			add(parseCavage(authParam, inAuthorization))
		case hasSig:
			sigHdr, err := singleHeader(r.Header, "Signature")
			if err != nil {
				return Credential{}, err
			}
			add(parseCavage(sigHdr, inSignatureHeaders))
		}
	}

	// 5. AWS SigV4.
	if d.Schemes.Has(SigV4) {
		if authScheme == sigV4Algorithm {
			add(parseSigV4Header(authParam, r.Header))
		}
		if r.URL != nil && strings.Contains(r.URL.RawQuery, "X-Amz-Algorithm=") {
			add(parseSigV4Query(r.URL.RawQuery))
		}
	}

	switch {
	case count == 0:
		return Credential{}, ErrNoCredential
	case count > 1:
		return Credential{}, ErrAmbiguous
	case firstErr != nil:
		return Credential{}, firstErr
	}
	return found, nil
}

// Strip removes from r every place that can carry a credential on this
// route, whichever one the request used: Authorization, the key header and
// key query parameter, the wallee MAC headers, Signature and
// Signature-Input, and the SigV4 query parameters. A credential sent twice
// (say as a Bearer token and in X-Api-Key) is therefore never forwarded.
// The rest of the query keeps its order and encoding.
func (d *Detector) Strip(r *http.Request) {
	h := r.Header
	delete(h, "Authorization")
	if d.Schemes.Has(AccessKey) {
		name := d.KeyHeader
		if name == "" {
			name = DefaultKeyHeader
		}
		h.Del(name)
	}
	if d.Schemes.Has(WalleeMAC) {
		for _, n := range macHeaders {
			delete(h, n)
		}
	}
	if d.Schemes.Has(HTTPSignature) {
		delete(h, "Signature")
		delete(h, "Signature-Input")
	}
	if r.URL == nil || r.URL.RawQuery == "" {
		return
	}
	var names [len(amzQueryParams) + 1]string
	list := names[:0]
	if d.Schemes.Has(AccessKey) && d.KeyQuery != "" {
		list = append(list, d.KeyQuery)
	}
	if d.Schemes.Has(SigV4) {
		list = append(list, amzQueryParams[:]...)
	}
	if q, changed := removeQueryParams(r.URL.RawQuery, list); changed {
		r.URL.RawQuery = q
		r.RequestURI = r.URL.RequestURI()
	}
}

// CredentialHeaders lists the request headers that can carry a credential
// on this route (canonical names), for callers that must keep them from
// being renamed or dropped on the way upstream.
func (d *Detector) CredentialHeaders() []string {
	names := []string{"Authorization"}
	if d.Schemes.Has(AccessKey) {
		name := d.KeyHeader
		if name == "" {
			name = DefaultKeyHeader
		}
		names = append(names, http.CanonicalHeaderKey(name))
	}
	if d.Schemes.Has(WalleeMAC) {
		names = append(names, macHeaders[:]...)
	}
	if d.Schemes.Has(HTTPSignature) {
		names = append(names, "Signature", "Signature-Input")
	}
	return names
}

// removeQueryParams drops every parameter of rawQuery named in names
// (compared after decoding), keeping the others as sent.
func removeQueryParams(rawQuery string, names []string) (string, bool) {
	if len(names) == 0 {
		return rawQuery, false
	}
	drop := func(part string) bool {
		k, _, _ := strings.Cut(part, "=")
		if strings.ContainsAny(k, "%+") {
			if dk, err := url.QueryUnescape(k); err == nil {
				k = dk
			}
		}
		for _, n := range names {
			if k == n {
				return true
			}
		}
		return false
	}
	found := false
	for rest := rawQuery; rest != "" && !found; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		found = drop(part)
	}
	if !found {
		return rawQuery, false
	}
	var b strings.Builder
	b.Grow(len(rawQuery))
	for rest := rawQuery; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		if drop(part) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(part)
	}
	return b.String(), true
}

// keyCredential reads an access key from a key header, the key query
// parameter or a raw Authorization value: a kg_ key, or (ForeignKeys) an
// imported key of any shape keys.ValidateForeignKey accepts.
func (d *Detector) keyCredential(v string, loc location) (Credential, error) {
	if strings.HasPrefix(v, keys.KeyPrefix) || !d.ForeignKeys {
		return accessKeyCredential(v, loc)
	}
	if keys.ValidateForeignKey(v) != nil {
		return Credential{}, fmt.Errorf("access key: %w", ErrMalformed)
	}
	return Credential{Scheme: AccessKey, AccessKey: v, loc: loc}, nil
}

// jwtShaped reports whether a Bearer value looks like a JWT (three
// base64url parts, a JSON header), which is never taken as an imported key.
func jwtShaped(v string) bool {
	return strings.HasPrefix(v, "eyJ") && strings.Count(v, ".") == 2
}

// knownAuthScheme reports whether an Authorization value's first word is a
// scheme keygate reads itself, which a raw key value never is.
func knownAuthScheme(s string) bool {
	for _, k := range []string{"Bearer", "Basic", "Signature", sigV4Algorithm, "Digest"} {
		if strings.EqualFold(s, k) {
			return true
		}
	}
	return false
}

func accessKeyCredential(v string, loc location) (Credential, error) {
	id, ok := keys.ParseAccessKey(v)
	if !ok {
		return Credential{}, fmt.Errorf("access key: %w", ErrMalformed)
	}
	return Credential{Scheme: AccessKey, AccessKey: v, KeyID: id, loc: loc}, nil
}

// singleHeader returns the value of a header that must appear at most once
// (repeats with the same value are tolerated) and at most maxHeaderLen long.
func singleHeader(h http.Header, name string) (string, error) {
	vs := h.Values(name)
	if len(vs) == 0 {
		return "", nil
	}
	for _, v := range vs[1:] {
		if v != vs[0] {
			return "", fmt.Errorf("header %s repeated: %w", name, ErrAmbiguous)
		}
	}
	if len(vs[0]) > maxHeaderLen {
		return "", fmt.Errorf("header %s too long: %w", name, ErrMalformed)
	}
	return vs[0], nil
}

// splitAuthorization splits "Scheme param" (RFC 9110 credentials).
func splitAuthorization(v string) (scheme, param string) {
	v = strings.TrimLeft(v, " \t")
	scheme, param, _ = strings.Cut(v, " ")
	return scheme, strings.Trim(param, " \t")
}

// queryParam returns the decoded value of name in rawQuery and how many
// times name occurs.
func queryParam(rawQuery, name string) (string, int, error) {
	if len(rawQuery) > maxTargetLen {
		return "", 0, fmt.Errorf("query too long: %w", ErrMalformed)
	}
	var (
		val string
		n   int
	)
	for rawQuery != "" {
		var part string
		part, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, v, _ := strings.Cut(part, "=")
		if k != name {
			if !strings.Contains(k, "%") {
				continue
			}
			dk, err := url.QueryUnescape(k)
			if err != nil || dk != name {
				continue
			}
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return "", 0, fmt.Errorf("query parameter %s: %w", name, ErrMalformed)
		}
		val = dv
		n++
	}
	return val, n, nil
}
