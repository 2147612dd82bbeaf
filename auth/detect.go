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
	// IsTokenKID reports whether kid names one of keygate's token-signing
	// keys: a Bearer JWT with such a kid is an access token. Nil means none.
	IsTokenKID func(kid string) bool
}

// where a credential was found, for Credential.Strip.
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

	loc     location
	keyName string // KeyHeader / KeyQuery used, for Strip
	sig     signed
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
	if d.Schemes.Has(AccessKey) {
		if strings.EqualFold(authScheme, "Bearer") && strings.HasPrefix(authParam, keys.KeyPrefix) {
			add(accessKeyCredential(authParam, inAuthorization, ""))
		}
		name := d.KeyHeader
		if name == "" {
			name = DefaultKeyHeader
		}
		v, err := singleHeader(r.Header, name)
		if err != nil {
			return Credential{}, err
		}
		if v != "" {
			add(accessKeyCredential(v, inKeyHeader, name))
		}
		if d.KeyQuery != "" && r.URL != nil {
			v, n, err := queryParam(r.URL.RawQuery, d.KeyQuery)
			switch {
			case err != nil:
				add(Credential{}, err)
			case n > 1:
				return Credential{}, fmt.Errorf("access key query parameter repeated: %w", ErrAmbiguous)
			case n == 1:
				add(accessKeyCredential(v, inKeyQuery, d.KeyQuery))
			}
		}
	}

	// 2. wallee MAC.
	if d.Schemes.Has(WalleeMAC) && hasAnyMACHeader(r.Header) {
		add(parseWalleeMAC(r.Header))
	}

	// 3. Bearer JWT: access token or wallee JWT.
	if strings.EqualFold(authScheme, "Bearer") && !strings.HasPrefix(authParam, keys.KeyPrefix) &&
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

// Strip removes the credential from r (its headers or query parameter) so
// it is not forwarded upstream.
func (c *Credential) Strip(r *http.Request) {
	if c.loc&inAuthorization != 0 {
		r.Header.Del("Authorization")
	}
	if c.loc&inKeyHeader != 0 && c.keyName != "" {
		r.Header.Del(c.keyName)
	}
	if c.loc&inMACHeaders != 0 {
		for _, h := range macHeaders {
			r.Header.Del(h)
		}
	}
	if c.loc&inSignatureHeaders != 0 {
		r.Header.Del("Signature")
		r.Header.Del("Signature-Input")
	}
	if c.loc&(inKeyQuery|inAmzQuery) != 0 && r.URL != nil {
		q := r.URL.Query()
		if c.loc&inKeyQuery != 0 {
			q.Del(c.keyName)
		}
		if c.loc&inAmzQuery != 0 {
			for _, n := range amzQueryParams {
				q.Del(n)
			}
		}
		r.URL.RawQuery = q.Encode()
		r.RequestURI = r.URL.RequestURI()
	}
}

func accessKeyCredential(v string, loc location, name string) (Credential, error) {
	id, ok := keys.ParseAccessKey(v)
	if !ok {
		return Credential{}, fmt.Errorf("access key: %w", ErrMalformed)
	}
	return Credential{Scheme: AccessKey, AccessKey: v, KeyID: id, loc: loc, keyName: name}, nil
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
