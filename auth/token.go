package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// Token-signing algorithms (JWS "alg" values) keygate issues access tokens with.
const (
	// AlgRS256 is RSASSA-PKCS1-v1_5 with SHA-256 over a 2048-bit RSA key.
	AlgRS256 = "RS256"
	// AlgEdDSA is Ed25519 (RFC 8037).
	AlgEdDSA = "EdDSA"
)

// rsaKeyBits is the size of generated RS256 keys.
const rsaKeyBits = 2048

// maxTokenLen bounds an access token; anything longer is malformed.
const maxTokenLen = 8 << 10

// Token verification errors, besides ErrMalformed and ErrBadSignature.
var (
	// ErrTokenExpired: the access token's exp (plus leeway) has passed.
	ErrTokenExpired = errors.New("access token expired")
	// ErrUnknownTokenKey: the token's kid names no live signing key.
	ErrUnknownTokenKey = errors.New("unknown token-signing key")
	// ErrTokenClaims: iss, aud, nbf or iat do not fit, or a required claim is missing.
	ErrTokenClaims = errors.New("access token claims rejected")
)

// TokenKey is one token-signing key pair: the public half always, the
// private half only while keygate may sign with it. It is immutable.
type TokenKey struct {
	// ID is the JWS "kid".
	ID string
	// Alg is AlgRS256 or AlgEdDSA.
	Alg string

	public  crypto.PublicKey
	rsaPub  *rsa.PublicKey
	edPub   ed25519.PublicKey
	private crypto.Signer
}

// GenerateTokenKey creates a new key pair for alg and returns the private
// key as PKCS#8 DER and the public key as PKIX DER.
func GenerateTokenKey(alg string) (privatePKCS8, publicPKIX []byte, err error) {
	var priv crypto.Signer
	switch alg {
	case AlgRS256:
		k, err := rsa.GenerateKey(rand.Reader, rsaKeyBits)
		if err != nil {
			return nil, nil, fmt.Errorf("generating RSA key: %w", err)
		}
		priv = k
	case AlgEdDSA:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, fmt.Errorf("generating Ed25519 key: %w", err)
		}
		priv = k
	default:
		return nil, nil, fmt.Errorf("token algorithm %q: must be %s or %s", alg, AlgRS256, AlgEdDSA)
	}
	if privatePKCS8, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
		return nil, nil, fmt.Errorf("encoding private key: %w", err)
	}
	if publicPKIX, err = x509.MarshalPKIXPublicKey(priv.Public()); err != nil {
		return nil, nil, fmt.Errorf("encoding public key: %w", err)
	}
	return privatePKCS8, publicPKIX, nil
}

// NewTokenKey parses a stored key pair. privatePKCS8 may be nil for a key
// that only verifies; when given, it must belong to publicPKIX. The key
// type must match alg.
func NewTokenKey(kid, alg string, publicPKIX, privatePKCS8 []byte) (*TokenKey, error) {
	if kid == "" {
		return nil, errors.New("token key: empty kid")
	}
	pub, err := x509.ParsePKIXPublicKey(publicPKIX)
	if err != nil {
		return nil, fmt.Errorf("token key %s: parsing public key: %w", kid, err)
	}
	k := &TokenKey{ID: kid, Alg: alg, public: pub}
	switch alg {
	case AlgRS256:
		p, ok := pub.(*rsa.PublicKey)
		if !ok || p.N.BitLen() < rsaKeyBits {
			return nil, fmt.Errorf("token key %s: RS256 needs an RSA key of at least %d bits", kid, rsaKeyBits)
		}
		k.rsaPub = p
	case AlgEdDSA:
		p, ok := pub.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("token key %s: EdDSA needs an Ed25519 key", kid)
		}
		k.edPub = p
	default:
		return nil, fmt.Errorf("token key %s: unsupported algorithm %q", kid, alg)
	}
	if privatePKCS8 != nil {
		priv, err := x509.ParsePKCS8PrivateKey(privatePKCS8)
		if err != nil {
			return nil, fmt.Errorf("token key %s: parsing private key: %w", kid, err)
		}
		s, ok := priv.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("token key %s: private key cannot sign", kid)
		}
		type equaler interface{ Equal(crypto.PublicKey) bool }
		if e, ok := s.Public().(equaler); !ok || !e.Equal(pub) {
			return nil, fmt.Errorf("token key %s: private key does not match the public key", kid)
		}
		k.private = s
	}
	return k, nil
}

// CanSign reports whether k holds its private key.
func (k *TokenKey) CanSign() bool { return k.private != nil }

// Public returns the public key (*rsa.PublicKey or ed25519.PublicKey).
func (k *TokenKey) Public() crypto.PublicKey { return k.public }

// JWK is one entry of a JSON Web Key Set (RFC 7517): RSA keys carry n and
// e, Ed25519 keys (RFC 8037) crv and x.
type JWK struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
}

// JWK returns the public key as a JWK.
func (k *TokenKey) JWK() JWK {
	j := JWK{Kid: k.ID, Use: "sig", Alg: k.Alg}
	b64 := base64.RawURLEncoding.EncodeToString
	switch {
	case k.rsaPub != nil:
		j.Kty = "RSA"
		j.N = b64(k.rsaPub.N.Bytes())
		j.E = b64(big.NewInt(int64(k.rsaPub.E)).Bytes())
	case k.edPub != nil:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(k.edPub)
	}
	return j
}

// TokenPermission is the permission part of an access token's principal
// (the LeanIX shape: workspace = tenant).
type TokenPermission struct {
	WorkspaceID   string   `json:"workspaceId"`
	WorkspaceName string   `json:"workspaceName"`
	Role          string   `json:"role"`
	CustomerRoles []string `json:"customerRoles"`
}

// TokenPrincipal describes the user an access token was issued to.
type TokenPrincipal struct {
	ID         string          `json:"id"`
	Username   string          `json:"username"`
	Role       string          `json:"role"`
	Permission TokenPermission `json:"permission"`
}

// TokenClaims are the claims of a keygate access token.
type TokenClaims struct {
	// Issuer ("iss") names the issuing keygate.
	Issuer string `json:"iss"`
	// Subject ("sub") is the user id.
	Subject string `json:"sub"`
	// Audience ("aud") is set when an audience is configured.
	Audience string `json:"aud,omitempty"`
	// IssuedAt, NotBefore and ExpiresAt are Unix seconds.
	IssuedAt  int64 `json:"iat"`
	NotBefore int64 `json:"nbf"`
	ExpiresAt int64 `json:"exp"`
	// ID ("jti") is random per token.
	ID string `json:"jti"`
	// KeyID is the id of the API token (access key) the token was exchanged
	// for, so revoking that key revokes the access token.
	KeyID string `json:"keyId"`
	// Tenant is the tenant of that key; the token is valid only there.
	Tenant string `json:"tenant"`
	// Principal is informational for upstreams; verification ignores it.
	Principal *TokenPrincipal `json:"principal,omitempty"`
}

// TokenIssuer signs access tokens.
type TokenIssuer struct {
	// Issuer is the "iss" of every token.
	Issuer string
	// Audience, when set, is the "aud" of every token.
	Audience string
	// Lifetime of a token (exp - iat).
	Lifetime time.Duration
}

// Issue signs a token for claims with key at now, filling iss, aud, iat,
// nbf, exp and jti. The caller sets sub, keyId, tenant and principal.
func (ti *TokenIssuer) Issue(key *TokenKey, claims TokenClaims, now time.Time) (string, error) {
	if key == nil || key.private == nil {
		return "", errors.New("no signing key")
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("generating jti: %w", err)
	}
	claims.Issuer, claims.Audience = ti.Issuer, ti.Audience
	claims.IssuedAt = now.Unix()
	claims.NotBefore = claims.IssuedAt
	claims.ExpiresAt = now.Add(ti.Lifetime).Unix()
	claims.ID = base64.RawURLEncoding.EncodeToString(jti[:])
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{key.Alg, "JWT", key.ID})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %w", err)
	}
	enc := base64.RawURLEncoding
	var b strings.Builder
	b.Grow(enc.EncodedLen(len(hdr)) + enc.EncodedLen(len(payload)) + 2 + 350)
	b.WriteString(enc.EncodeToString(hdr))
	b.WriteByte('.')
	b.WriteString(enc.EncodeToString(payload))
	input := b.String()
	var sig []byte
	switch key.Alg {
	case AlgRS256:
		sum := sha256.Sum256([]byte(input))
		sig, err = key.private.Sign(rand.Reader, sum[:], crypto.SHA256)
	case AlgEdDSA:
		sig, err = key.private.Sign(rand.Reader, []byte(input), crypto.Hash(0))
	default:
		err = fmt.Errorf("unsupported algorithm %q", key.Alg)
	}
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}

// TokenVerifier checks access tokens. Configure it once; it is safe for
// concurrent use as long as it is not modified.
type TokenVerifier struct {
	// Alg is the only algorithm accepted (AlgRS256 or AlgEdDSA).
	Alg string
	// Issuer must equal the token's iss.
	Issuer string
	// Audience, when set, must equal the token's aud.
	Audience string
	// Leeway tolerates clock differences for exp, nbf and iat.
	Leeway time.Duration
	// Key returns the live signing key named kid, or nil.
	Key func(kid string) *TokenKey
}

// VerifiedToken is what the gateway needs of a verified access token.
type VerifiedToken struct {
	// Subject is the user id.
	Subject string
	// KeyID is the API key the token was exchanged for.
	KeyID string
	// Tenant the token is valid in.
	Tenant string
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time
	// SigningKey is the kid of the key that signed the token.
	SigningKey string
}

// tokenHeader is the JOSE header of an access token; fields alias the
// scratch buffer.
type tokenHeader struct {
	alg, typ, kid []byte
	crit          bool
}

func (h *tokenHeader) set(key, val []byte) bool {
	var dst *[]byte
	switch string(key) {
	case "alg":
		dst = &h.alg
	case "typ":
		dst = &h.typ
	case "kid":
		dst = &h.kid
	case "crit":
		h.crit = true
		return true
	default:
		return true
	}
	if *dst != nil {
		return false // duplicate member
	}
	s, ok := jsonStringBytes(val)
	if !ok {
		return false
	}
	*dst = s
	return true
}

// verifyClaims is the part of the claims verification reads (principal is
// skipped); byte fields alias the scratch buffer.
type verifyClaims struct {
	Iss, Sub, Aud, KeyID, Tenant []byte
	Iat, Nbf, Exp                int64
}

func (c *verifyClaims) set(key, val []byte) bool {
	var dst *[]byte
	var num *int64
	switch string(key) {
	case "iss":
		dst = &c.Iss
	case "sub":
		dst = &c.Sub
	case "aud":
		dst = &c.Aud
	case "keyId":
		dst = &c.KeyID
	case "tenant":
		dst = &c.Tenant
	case "iat":
		num = &c.Iat
	case "nbf":
		num = &c.Nbf
	case "exp":
		num = &c.Exp
	default:
		return true
	}
	if dst != nil {
		if *dst != nil {
			return false
		}
		s, ok := jsonStringBytes(val)
		if !ok {
			return false
		}
		*dst = s
		return true
	}
	if *num != 0 {
		return false
	}
	n, ok := jsonInt(val)
	if !ok || n <= 0 {
		return false
	}
	*num = n
	return true
}

// tokenScratch holds per-verification buffers, pooled.
type tokenScratch struct {
	in, sig, dec []byte
}

var scratchPool = sync.Pool{New: func() any {
	return &tokenScratch{in: make([]byte, 0, 1024), sig: make([]byte, 0, 512), dec: make([]byte, 0, 1024)}
}}

// Verify checks tok strictly: the header's alg must be v.Alg and match the
// key named by kid, the signature must verify, exp (plus leeway) must not
// have passed, nbf and iat must not be in the future (beyond leeway), iss
// and aud must match, and sub, keyId and tenant must be present. Errors
// wrap ErrMalformed, ErrUnknownTokenKey, ErrBadSignature, ErrTokenExpired
// or ErrTokenClaims and never contain the token.
func (v *TokenVerifier) Verify(tok string, now time.Time) (VerifiedToken, error) {
	var out VerifiedToken
	if len(tok) > maxTokenLen {
		return out, fmt.Errorf("access token too long: %w", ErrMalformed)
	}
	hp, pp, sp, ok := splitJWT(tok)
	if !ok {
		return out, fmt.Errorf("access token: %w", ErrMalformed)
	}
	sc := scratchPool.Get().(*tokenScratch)
	defer scratchPool.Put(sc)
	// One copy of the signing input serves the hash and both decodes, so
	// no string-to-bytes conversion allocates.
	sc.in = append(sc.in[:0], tok[:len(hp)+1+len(pp)]...)
	input := sc.in
	hb, pb := input[:len(hp)], input[len(hp)+1:]

	var hdr tokenHeader
	if !sc.decode(hb, &hdr) {
		return out, fmt.Errorf("access token header: %w", ErrMalformed)
	}
	if string(hdr.alg) != v.Alg || hdr.crit || (hdr.typ != nil && !strings.EqualFold(string(hdr.typ), "JWT")) {
		return out, fmt.Errorf("access token header: alg, typ or crit not accepted: %w", ErrMalformed)
	}
	key := v.Key(string(hdr.kid))
	if key == nil {
		return out, fmt.Errorf("access token: %w", ErrUnknownTokenKey)
	}
	if key.Alg != v.Alg {
		return out, fmt.Errorf("access token: key algorithm mismatch: %w", ErrMalformed)
	}

	// Signature, before any claim is trusted.
	var sigBuf [512]byte
	if len(sp) > base64.RawURLEncoding.EncodedLen(len(sigBuf)) {
		return out, fmt.Errorf("access token signature: %w", ErrMalformed)
	}
	sc.sig = append(sc.sig[:0], sp...)
	n, err := base64.RawURLEncoding.Strict().Decode(sigBuf[:], sc.sig)
	if err != nil {
		return out, fmt.Errorf("access token signature: %w", ErrMalformed)
	}
	sig := sigBuf[:n]
	switch key.Alg {
	case AlgRS256:
		if len(sig) != key.rsaPub.Size() {
			return out, fmt.Errorf("access token signature length: %w", ErrMalformed)
		}
		sum := sha256.Sum256(input)
		if rsa.VerifyPKCS1v15(key.rsaPub, crypto.SHA256, sum[:], sig) != nil {
			return out, fmt.Errorf("access token: %w", ErrBadSignature)
		}
	case AlgEdDSA:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(key.edPub, input, sig) {
			return out, fmt.Errorf("access token: %w", ErrBadSignature)
		}
	default:
		return out, fmt.Errorf("access token: %w", ErrMalformed)
	}

	var cl verifyClaims
	if !sc.decode(pb, &cl) {
		return out, fmt.Errorf("access token claims: %w", ErrMalformed)
	}
	if cl.Exp <= 0 || cl.Iat <= 0 {
		return out, fmt.Errorf("access token: exp or iat missing: %w", ErrTokenClaims)
	}
	exp := time.Unix(cl.Exp, 0)
	notAfter := now.Add(v.Leeway)
	switch {
	case !now.Before(exp.Add(v.Leeway)):
		return out, fmt.Errorf("access token: %w", ErrTokenExpired)
	case time.Unix(cl.Nbf, 0).After(notAfter) || time.Unix(cl.Iat, 0).After(notAfter):
		return out, fmt.Errorf("access token: not yet valid: %w", ErrTokenClaims)
	case string(cl.Iss) != v.Issuer:
		return out, fmt.Errorf("access token: issuer: %w", ErrTokenClaims)
	case v.Audience != "" && string(cl.Aud) != v.Audience:
		return out, fmt.Errorf("access token: audience: %w", ErrTokenClaims)
	case len(cl.Sub) == 0 || len(cl.KeyID) == 0 || len(cl.Tenant) == 0:
		return out, fmt.Errorf("access token: sub, keyId or tenant missing: %w", ErrTokenClaims)
	}
	out.Subject, out.KeyID, out.Tenant = string(cl.Sub), string(cl.KeyID), string(cl.Tenant)
	out.ExpiresAt = exp
	out.SigningKey = key.ID
	return out, nil
}

// decode base64url-decodes (strict, unpadded) one JWT part into the
// scratch buffer and hands its members to m. The part must be a JSON
// object; a repeated member of interest is malformed.
func (sc *tokenScratch) decode(part []byte, m interface{ set(key, val []byte) bool }) bool {
	need := base64.RawURLEncoding.DecodedLen(len(part))
	if cap(sc.dec) < need {
		sc.dec = make([]byte, 0, need)
	}
	buf := sc.dec[:need]
	n, err := base64.RawURLEncoding.Strict().Decode(buf, part)
	if err != nil || n == 0 {
		return false
	}
	return jsonMembers(buf[:n], m.set)
}
