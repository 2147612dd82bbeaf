package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzTokenNow is the verification time of the access-token fuzz targets.
var fuzzTokenNow = time.Unix(1_800_000_000, 0)

// fuzzTokenKey returns a fixed Ed25519 token key "kid1", so tokens in the
// committed corpus stay valid from run to run, and its verifier.
func fuzzTokenKey(tb testing.TB) (*TokenKey, ed25519.PrivateKey, *TokenVerifier) {
	tb.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x6b}, ed25519.SeedSize))
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	k, err := NewTokenKey("kid1", AlgEdDSA, pub, pkcs8)
	if err != nil {
		tb.Fatal(err)
	}
	v := &TokenVerifier{Alg: AlgEdDSA, Issuer: "keygate", Audience: "api", Leeway: 30 * time.Second,
		Key: func(kid string) *TokenKey {
			if kid == "kid1" {
				return k
			}
			return nil
		}}
	return k, priv, v
}

func fuzzTokenSeeds(tb testing.TB) []string {
	k, _, _ := fuzzTokenKey(tb)
	iss := TokenIssuer{Issuer: "keygate", Audience: "api", Lifetime: time.Hour}
	tok, err := iss.Issue(k, testClaims(), fuzzTokenNow.Add(-time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	hp, pp, sp, _ := splitJWT(tok)
	return []string{
		tok,
		hp + "." + pp + ".",
		b64(`{"alg":"none","typ":"JWT","kid":"kid1"}`) + "." + pp + ".",
		b64(`{"alg":"EdDSA","typ":"JWT","kid":"kid1","crit":["x"]}`) + "." + pp + "." + sp,
		b64(`{"alg":"RS256","kid":"kid1"}`) + "." + pp + "." + sp,
		hp + "." + pp + "." + sp + "==",
	}
}

// FuzzTokenVerify checks access-token verification on arbitrary tokens:
// errors wrap ErrMalformed, ErrUnknownTokenKey, ErrBadSignature,
// ErrTokenExpired or ErrTokenClaims and never quote the token; a token is
// accepted only if its Ed25519 signature verifies independently over
// header.payload, and what Verify returns is what encoding/json reads in
// the payload; allocation is linear in the token.
func FuzzTokenVerify(f *testing.F) {
	for _, s := range fuzzTokenSeeds(f) {
		f.Add(s)
	}
	k, _, v := fuzzTokenKey(f)
	f.Fuzz(func(t *testing.T, tok string) {
		var (
			got VerifiedToken
			err error
		)
		checkAllocs(t, "TokenVerifier.Verify", len(tok), func() { got, err = v.Verify(tok, fuzzTokenNow) })
		if err != nil {
			wantSentinel(t, "Verify", err, ErrMalformed, ErrUnknownTokenKey, ErrBadSignature, ErrTokenExpired, ErrTokenClaims)
			if len(tok) >= 8 && strings.Contains(err.Error(), tok) {
				t.Fatal("error quotes the token")
			}
			return
		}
		i := strings.LastIndexByte(tok, '.')
		sig, derr := base64.RawURLEncoding.DecodeString(tok[i+1:])
		if derr != nil || !ed25519.Verify(k.edPub, []byte(tok[:i]), sig) {
			t.Fatal("accepted a token whose signature does not verify")
		}
		_, pp, _, _ := splitJWT(tok)
		payload, _ := base64.RawURLEncoding.DecodeString(pp)
		checkTokenClaims(t, payload, got)
	})
}

// FuzzTokenClaims signs fuzzed header and payload JSON with the token key
// and checks that Verify's hand-written JSON scanner decides exactly like
// an independent model built on encoding/json (same sentinel, same
// accepted claims): duplicate or mistyped members of interest, crit, typ,
// alg, kid, exp/nbf/iat with leeway, iss, aud, and required sub, keyId and
// tenant.
func FuzzTokenClaims(f *testing.F) {
	now := fuzzTokenNow.Unix()
	good := `{"iss":"keygate","aud":"api","sub":"42","iat":` + strconv.FormatInt(now, 10) + `,"nbf":` + strconv.FormatInt(now, 10) +
		`,"exp":` + strconv.FormatInt(now+3600, 10) + `,"jti":"x","keyId":"key1","tenant":"acme","principal":{"a":[1,"}",{"b":"\"]"}]}}`
	hdr := `{"alg":"EdDSA","typ":"JWT","kid":"kid1"}`
	f.Add(hdr, good)
	f.Add(`{"alg":"EdDSA","alg":"none","kid":"kid1"}`, good)
	f.Add(`{"alg":"EdDSA","kid":"kid1","crit":[]}`, good)
	f.Add(`{"alg":"EdDSA","typ":"at+jwt","kid":"kid1"}`, good)
	f.Add(hdr, strings.Replace(good, `"tenant":"acme"`, `"tenant":"acme","tenant":"b"`, 1))
	f.Add(hdr, strings.Replace(good, `"sub":"42"`, `"sub":42`, 1))
	f.Add(hdr, strings.Replace(good, `"acme"`, `"\u0061cme"`, 1))
	f.Add(hdr, `[1]`)
	f.Add(" "+hdr+" ", good+"x")
	_, priv, v := fuzzTokenKey(f)
	f.Fuzz(func(t *testing.T, header, payload string) {
		enc := base64.RawURLEncoding
		in := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
		tok := in + "." + enc.EncodeToString(ed25519.Sign(priv, []byte(in)))
		got, err := v.Verify(tok, fuzzTokenNow)
		want := tokenModel(v, []byte(header), []byte(payload), len(tok), fuzzTokenNow)
		switch {
		case want == nil && err != nil:
			t.Fatalf("Verify refused a token the model accepts: %v", err)
		case want != nil && err == nil:
			t.Fatalf("Verify accepted a token the model refuses with %v", want)
		case want != nil && !errors.Is(err, want):
			t.Fatalf("Verify: %v, model: %v", err, want)
		case err == nil:
			checkTokenClaims(t, []byte(payload), got)
		}
	})
}

// jsonMember is one top-level member of a JSON object: the key as written
// (escapes not decoded, as keygate compares it) and the raw value.
type jsonMember struct {
	key string
	val json.RawMessage
}

// topMembers lists the members of a JSON object with encoding/json's
// tokenizer; ok is false when data is not a valid JSON object.
func topMembers(data []byte) ([]jsonMember, bool) {
	if !json.Valid(data) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var ms []jsonMember
	for dec.More() {
		start := dec.InputOffset()
		if _, err := dec.Token(); err != nil {
			return nil, false
		}
		raw := bytes.TrimLeft(data[start:dec.InputOffset()], " \t\r\n,")
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil || len(raw) < 2 {
			return nil, false
		}
		ms = append(ms, jsonMember{key: string(raw[1 : len(raw)-1]), val: v})
	}
	return ms, true
}

// readMembers gives the string and integer members of interest of a JSON
// object; ok is false for anything keygate calls malformed: not an object,
// a repeated member of interest, a string member that is not a string, an
// integer member that is not a positive integer.
func readMembers(data []byte, strs, ints []string) (s map[string]string, n map[string]int64, present map[string]bool, ok bool) {
	ms, ok := topMembers(data)
	if !ok {
		return nil, nil, nil, false
	}
	s, n, present = map[string]string{}, map[string]int64{}, map[string]bool{}
	for _, m := range ms {
		isStr, isInt := slices.Contains(strs, m.key), slices.Contains(ints, m.key)
		if !isStr && !isInt {
			present[m.key] = true
			continue
		}
		if present[m.key] {
			return nil, nil, nil, false
		}
		present[m.key] = true
		if isStr {
			var v string
			if m.val[0] != '"' || json.Unmarshal(m.val, &v) != nil {
				return nil, nil, nil, false
			}
			s[m.key] = v
			continue
		}
		i, err := strconv.ParseInt(string(m.val), 10, 64)
		if err != nil || i <= 0 {
			return nil, nil, nil, false
		}
		n[m.key] = i
	}
	return s, n, present, true
}

// tokenModel is the outcome TokenVerifier.Verify must give for a token over
// header and payload signed by the right key, written independently.
func tokenModel(v *TokenVerifier, header, payload []byte, tokLen int, now time.Time) error {
	if tokLen > maxTokenLen || len(header) == 0 || len(payload) == 0 {
		return ErrMalformed
	}
	hs, _, hp, ok := readMembers(header, []string{"alg", "typ", "kid"}, nil)
	if !ok || hs["alg"] != v.Alg || hp["crit"] || (hp["typ"] && !strings.EqualFold(hs["typ"], "JWT")) {
		return ErrMalformed
	}
	if v.Key(hs["kid"]) == nil {
		return ErrUnknownTokenKey
	}
	cs, cn, _, ok := readMembers(payload, []string{"iss", "sub", "aud", "keyId", "tenant"}, []string{"iat", "nbf", "exp"})
	if !ok {
		return ErrMalformed
	}
	switch {
	case cn["exp"] == 0 || cn["iat"] == 0:
		return ErrTokenClaims
	case !now.Before(time.Unix(cn["exp"], 0).Add(v.Leeway)):
		return ErrTokenExpired
	case time.Unix(cn["nbf"], 0).After(now.Add(v.Leeway)) || time.Unix(cn["iat"], 0).After(now.Add(v.Leeway)):
		return ErrTokenClaims
	case cs["iss"] != v.Issuer || (v.Audience != "" && cs["aud"] != v.Audience):
		return ErrTokenClaims
	case cs["sub"] == "" || cs["keyId"] == "" || cs["tenant"] == "":
		return ErrTokenClaims
	}
	return nil
}

// checkTokenClaims compares what Verify returned with the payload as
// encoding/json reads it (where the payload's strings are valid UTF-8:
// encoding/json replaces invalid bytes, keygate keeps them).
func checkTokenClaims(t *testing.T, payload []byte, got VerifiedToken) {
	t.Helper()
	cs, cn, _, ok := readMembers(payload, []string{"sub", "keyId", "tenant"}, []string{"exp"})
	if !ok {
		t.Fatalf("accepted claims %q are malformed", payload)
	}
	for name, v := range map[string]string{"sub": got.Subject, "keyId": got.KeyID, "tenant": got.Tenant} {
		if utf8.ValidString(v) && cs[name] != v {
			t.Fatalf("%s = %q, encoding/json reads %q", name, v, cs[name])
		}
	}
	if got.ExpiresAt.Unix() != cn["exp"] || got.SigningKey != "kid1" {
		t.Fatalf("exp %v key %q", got.ExpiresAt, got.SigningKey)
	}
}
