package auth

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// The signed schemes FuzzSignVerify signs with (its scheme argument, mod 6).
const (
	fsCavage = iota
	fs9421
	fsV4Header
	fsV4Query
	fsWalleeMAC
	fsWalleeJWT
	fsSchemes
)

// Bits of FuzzSignVerify's flags.
const (
	fvSecretB   = 1 << 0 // sign with secretB (the second live secret)
	fvAltForm   = 1 << 1 // cavage: Signature header; 9421: sha-512 digest
	fvAltAlg    = 1 << 2 // cavage: hmac-sha256; 9421: nonce and alg; JWT: jti
	fvExpires   = 1 << 3 // cavage: expires and (expires); 9421: expires
	fvEmptyQ    = 1 << 4 // end the target with '?' even without a query
	fvNoHdrCopy = 1 << 5 // do not cover the extra header
	fvUnder     = 1 << 6 // cavage, 9421: leave out the digest (with a body) or the target
)

// v4Target builds a SigV4 request-target from fuzzed path and query: the
// segments and values escaped the way the SDKs send them, no empty or dot
// segments (the SDKs do not normalize what they sign), unique
// unreserved-only parameter names (the test signer sorts decoded names),
// and no spaces in values (the presigning signer writes them as '+').
func v4Target(path, query string) string {
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if s != "" && s != "." && s != ".." && len(segs) < 8 {
			segs = append(segs, awsEscape(s, false))
		}
	}
	target := "/" + strings.Join(segs, "/")
	var pairs []string
	for i, p := range strings.Split(query, "&") {
		if p == "" || len(pairs) >= 8 {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		k = "k" + strconv.Itoa(i) + keepBytes(k, 16, func(c byte) bool { return awsUnreserved[c] })
		pairs = append(pairs, k+"="+awsEscape(strings.ReplaceAll(v, " ", ""), false))
	}
	if len(pairs) > 0 {
		target += "?" + strings.Join(pairs, "&")
	}
	return target
}

// fuzzRequest builds a server-side request as net/http would hand it over.
func fuzzRequest(method, target, host string, body []byte, h http.Header) *http.Request {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		u = &url.URL{Path: "/"} // keygate reads RequestURI; the test signers that read URL get parseable targets
	}
	r := &http.Request{Method: method, URL: u, Host: host, RequestURI: target, Header: h, Body: http.NoBody,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if len(body) > 0 {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	return r
}

// FuzzSignVerify signs a fuzzed request (method, path, query, host, body,
// user id, an extra header) with the test signers of every signed scheme,
// covering what keygate requires (cavage: (request-target) (created) host
// and digest with a body; RFC 9421: "@method" "@target-uri" and
// "content-digest" with a body), and checks that Detect finds it with the
// signed user id, that Verify accepts it with the secret that signed it
// (and gives the same replay key twice), and refuses it with another
// secret, another method, another path, another query, another host
// (where covered) and another body (where covered). With the fvUnder flag
// the HTTP signatures leave out the digest (or, without a body, the
// target) and must fail with ErrCoverage.
func FuzzSignVerify(f *testing.F) {
	for s := range fsSchemes {
		f.Add(uint8(s), "POST", "v1/things/9", "dry=1", "example.com", []byte(`{"amount":12}`), "app-7", "abc", uint8(0))
		f.Add(uint8(s), "GET", "api/space/read", "spaceId=1&id=2&f[0]=a:b&q=a b", "api.example", []byte(nil), "4711", "", uint8(fvSecretB|fvAltForm|fvAltAlg))
		f.Add(uint8(s), "DELETE", "a/./b/../c//d/my file", "", "x", []byte("x"), "AKIDEXAMPLE", "  a   b ", uint8(fvExpires|fvEmptyQ))
		f.Add(uint8(s), "PUT", "v1/x", "a=1", "example.com", []byte("x"), "app-7", "", uint8(fvUnder))
		f.Add(uint8(s), "GET", "v1/x", "a=1", "example.com", []byte(nil), "app-7", "", uint8(fvUnder))
	}
	f.Fuzz(func(t *testing.T, scheme uint8, method, path, query, host string, body []byte, userID, hdrVal string, flags uint8) {
		s := int(scheme) % fsSchemes
		method, host, userID = sanitizeMethod(method), sanitizeHost(host), sanitizeUserID(userID)
		if s == fsV4Query {
			// The presigning test signer sends a space in X-Amz-Credential
			// as '+', which SigV4 canonicalization (AWS and keygate) reads
			// as a literal '+' (testdata/fuzz/FuzzSignVerify/13d991c9ca53aa91).
			userID = strings.ReplaceAll(userID, " ", "_")
		}
		hdrVal = strings.TrimSpace(keepBytes(hdrVal, 256, isPrintableASCII))
		if flags&fvNoHdrCopy != 0 {
			hdrVal = ""
		}
		path, query = path[:min(len(path), 512)], query[:min(len(query), 512)]
		body = body[:min(len(body), 64<<10)]
		var target string
		if s == fsV4Header || s == fsV4Query {
			target = v4Target(path, query)
		} else {
			target = "/" + escapeTarget(path, true)
			if query != "" || flags&fvEmptyQ != 0 {
				target += "?" + escapeTarget(query, false)
			}
		}
		secret := twoSecrets[flags&fvSecretB]
		created := testNow.Unix()

		r := fuzzRequest(method, target, host, body, http.Header{})
		if hdrVal != "" {
			r.Header.Set("X-Fuzz", hdrVal)
		}
		switch s {
		case fsCavage:
			covered := []string{"(request-target)", "(created)", "host"}
			if len(body) > 0 {
				r.Header.Set("Digest", bodyDigest(string(body)))
				covered = append(covered, "digest")
			}
			if hdrVal != "" {
				covered = append(covered, "x-fuzz")
			}
			if flags&fvUnder != 0 {
				covered = underCover(covered, len(body) > 0, "digest", "(request-target)")
			}
			var expires int64
			if flags&fvExpires != 0 {
				expires = created + 60
				covered = append(covered, "(expires)")
			}
			alg := "hs2019"
			if flags&fvAltAlg != 0 {
				alg = "hmac-sha256"
			}
			p := signCavage(r, userID, alg, covered, secret.Value, created, expires)
			if flags&fvAltForm != 0 {
				r.Header.Set("Signature", p)
			} else {
				r.Header.Set("Authorization", "Signature "+p)
			}
		case fs9421:
			comps := []string{"@method", "@target-uri"}
			if len(body) > 0 {
				if flags&fvAltForm != 0 {
					sum := sha512.Sum512(body)
					r.Header.Set("Content-Digest", "sha-512=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
				} else {
					sum := sha256.Sum256(body)
					r.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
				}
				comps = append(comps, "content-digest")
			}
			if hdrVal != "" {
				comps = append(comps, "x-fuzz")
			}
			if flags&fvUnder != 0 {
				comps = underCover(comps, len(body) > 0, "content-digest", "@target-uri")
			}
			params := ";created=" + strconv.FormatInt(created, 10) + ";keyid=" + string(appendSFItem(nil, sfItem{kind: sfString, s: userID}))
			if flags&fvAltAlg != 0 {
				params += `;nonce="n-1";alg="hmac-sha256"`
			}
			if flags&fvExpires != 0 {
				params += ";expires=" + strconv.FormatInt(created+60, 10)
			}
			sign9421(r, sanitizeLabel(userID), comps, params, []byte(secret.Value))
		case fsV4Header, fsV4Query:
			o := v4Opts{akid: userID, secret: secret.Value, region: "eu-central-1", service: "execute-api", at: testNow, body: string(body)}
			if hdrVal != "" {
				o.signed = []string{"x-fuzz"}
			}
			if s == fsV4Query {
				o.presign, o.expires = true, 900
			}
			signV4(r, o)
		case fsWalleeMAC:
			signWalleeMAC(r, userID, secret.Value, created, target)
		case fsWalleeJWT:
			claims, err := json.Marshal(struct {
				Sub    string `json:"sub"`
				Iat    int64  `json:"iat"`
				Path   string `json:"requestPath"`
				Method string `json:"requestMethod"`
				JTI    string `json:"jti,omitempty"`
			}{userID, created, target, method, map[bool]string{true: "j-1"}[flags&fvAltAlg != 0]})
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Authorization", "Bearer "+makeJWT(`{"alg":"HS256","typ":"JWT","ver":1}`, string(claims), b64dec(secret.Value)))
		}
		signedHdr, signedTarget := r.Header.Clone(), r.RequestURI

		verify := func(r *http.Request, secrets []Secret) (Credential, Verified, error) {
			var d Detector
			c, err := d.Detect(r)
			if err != nil {
				return c, Verified{}, fmt.Errorf("detect: %w", err)
			}
			v, err := c.Verify(r, secrets, VerifyOptions{Now: testNow, SigV4ReadUndeclaredBody: true})
			return c, v, err
		}
		c, v, err := verify(r, twoSecrets)
		if flags&fvUnder != 0 && (s == fsCavage || s == fs9421) {
			if !errors.Is(err, ErrCoverage) {
				t.Fatalf("scheme %d: a signature that does not cover the request: %v, want ErrCoverage", s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("scheme %d: %s %q host %q user %q: %v", s, method, r.RequestURI, host, userID, err)
		}
		wantScheme := [...]Scheme{HTTPSignature, HTTPSignature, SigV4, SigV4, WalleeMAC, WalleeJWT}[s]
		if c.Scheme != wantScheme || c.UserID != userID || v.SecretID != secret.ID {
			t.Fatalf("verified %v user %q secret %q, want %v %q %q", c.Scheme, c.UserID, v.SecretID, wantScheme, userID, secret.ID)
		}
		if _, v2, err := verify(r, twoSecrets); err != nil || v2.ReplayKey != v.ReplayKey {
			t.Fatalf("second verification (body restored?): %v, replay key changed: %v", err, v2.ReplayKey != v.ReplayKey)
		}

		again := func(method, target, host string, body []byte) *http.Request {
			return fuzzRequest(method, target, host, body, signedHdr.Clone())
		}
		if _, _, err := verify(again(method, signedTarget, host, body), []Secret{{ID: "sc", Value: secretC}}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("scheme %d, other secret: %v", s, err)
		}
		// No body byte is held before the signature over the headers is
		// known valid (SigV4 without x-amz-content-sha256 is then refused).
		hold := NewBodyBudget(1<<30, 0).Hold(netip.Addr{})
		var det Detector
		if c, err := det.Detect(again(method, signedTarget, host, body)); err == nil {
			if _, err := c.Verify(again(method, signedTarget, host, body), []Secret{{ID: "sc", Value: secretC}}, VerifyOptions{Now: testNow, Body: hold}); err == nil {
				t.Fatalf("scheme %d: another secret passes", s)
			}
			if hold.Held() != 0 {
				t.Fatalf("scheme %d: a wrong signature holds %d body bytes", s, hold.Held())
			}
		}
		sep := "?"
		if strings.Contains(signedTarget, "?") {
			sep = "&"
		}
		type mutation struct {
			name string
			r    *http.Request
		}
		muts := []mutation{
			{"method", again(method+"X", signedTarget, host, body)},
			{"path", again(method, "/zz"+signedTarget, host, body)},
			{"query", again(method, signedTarget+sep+"zz=1", host, body)},
		}
		if s != fsWalleeMAC && s != fsWalleeJWT { // wallee signs neither host nor body
			muts = append(muts, mutation{"host", again(method, signedTarget, host+"x", body)})
			if s != fsV4Query { // presigned URLs are UNSIGNED-PAYLOAD
				muts = append(muts, mutation{"body", again(method, signedTarget, host, append(bytes.Clone(body), 'x'))})
			}
		}
		for _, m := range muts {
			if _, _, err := verify(m.r, twoSecrets); err == nil {
				t.Fatalf("scheme %d: a signature for %s %q verifies with another %s", s, method, signedTarget, m.name)
			}
		}
	})
}

// underCover returns covered without the body's digest when the request
// has a body, else without the target.
func underCover(covered []string, hasBody bool, digest, target string) []string {
	drop := target
	if hasBody {
		drop = digest
	}
	var out []string
	for _, c := range covered {
		if c != drop {
			out = append(out, c)
		}
	}
	return out
}
