package auth

// The committed seed corpora under testdata/fuzz/ hold the wire samples the
// unit tests use (known-answer vectors and what the test signers produce
// for the test requests). They are generated, not hand-written:
//
//	KEYGATE_WRITE_FUZZ_CORPUS=1 go test -run '^TestWriteFuzzCorpus$' ./auth/
//
// writes (or rewrites) the files named seed-*; crashers the fuzzer finds
// are kept next to them under the fuzzer's own names.

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/keys"
)

// corpusFile renders one input in the "go test fuzz v1" format.
func corpusFile(args ...any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		default:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		}
	}
	return []byte(b.String())
}

type corpus map[string][][]any // target → inputs

func (c corpus) add(target string, args ...any) { c[target] = append(c[target], args) }

func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("KEYGATE_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set KEYGATE_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz/*/seed-*")
	}
	c := corpus{}
	iat := testNow.Unix()
	created := iat

	// Access keys, tokens and Bearer values of the detection tests.
	key, _ := keys.NewAccessKey(keys.NewHasher(nil), "u", "t", "n", testNow)
	walleeTok := makeJWT(`{"alg":"HS256","typ":"JWT","ver":1}`, walleeClaims("7", iat, "GET", "/x"), b64dec(secretA))
	tokenTok := makeJWT(`{"alg":"RS256","typ":"JWT","kid":"kg-1"}`, `{"sub":"7"}`, []byte("k"))
	for _, authz := range []string{"Bearer " + key, "Bearer " + walleeTok, "Bearer " + tokenTok, "Bearer abc", "Basic dTpw",
		"Bearer " + knownJWT, "Bearer " + makeJWT(`{"alg":"RS256","kid":"other"}`, `{}`, []byte("k")),
		`Signature keyId="u1",algorithm="hs2019",headers="(request-target) host date digest",signature="` + knownCavage + `"`,
		"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + awsGetVanillaSig,
	} {
		c.add("FuzzDetect", authz, "", "", "", "", "", "", uint16(detAmzDate))
	}
	c.add("FuzzDetect", "", key, "", "", "", "", "api_key="+key, uint16(detKeyQuery))
	c.add("FuzzDetect", "Bearer "+key, key, "", "", "", "", "", uint16(0))
	c.add("FuzzDetect", "", "kg_nope", "", "", "", "", "", uint16(0))
	c.add("FuzzDetect", "", "", "", "", "100", knownMAC, "", uint16(detMACFixed))
	c.add("FuzzDetect", "", "", "", "", "7", "", "", uint16(0))

	// draft-cavage, as the cavage tests sign.
	cavageParams := func(method, target, body string, hdrs []string, alg, secret string, created, expires int64) (string, *http.Request) {
		r := newReq(method, target, body)
		r.Header.Set("Date", testNow.Format(http.TimeFormat))
		if body != "" {
			r.Header.Set("Digest", bodyDigest(body))
		}
		r.Header.Set("X-Request-Id", "abc")
		r.Header.Set("X-A", "1")
		return signCavage(r, "app-7", alg, hdrs, secret, created, expires), r
	}
	for _, alg := range []string{"hmac-sha256", "hs2019"} {
		for _, hdrs := range [][]string{
			{"(request-target)", "(created)", "host", "digest", "x-request-id"},
			{"(request-target)", "(created)", "(expires)"},
			{"(request-target)", "host", "date"},
		} {
			p, _ := cavageParams("PUT", "/v1/things/9?dry=1", `{"amount":12}`, hdrs, alg, secretA, created, created+60)
			c.add("FuzzCavage", p)
			c.add("FuzzDetect", "Signature "+p, "", "", "", "", "", "", uint16(0))
			c.add("FuzzDetect", "", "", p, "", "", "", "", uint16(0))
		}
	}
	c.add("FuzzCavage", `keyId="u1",algorithm="hs2019",headers="(request-target) host date digest",signature="`+knownCavage+`"`)

	// RFC 9421, as the RFC 9421 tests sign, and Appendix B.2.5.
	add9421 := func(in, sig string) {
		c.add("FuzzRFC9421", in, sig)
		c.add("FuzzSFDictionary", in)
		c.add("FuzzSFDictionary", sig)
		c.add("FuzzDetect", "", "", sig, in, "", "", "", uint16(0))
	}
	add9421(`sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`, `sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:`)
	for _, comps := range [][]string{
		{"@method", "@authority", "@path", "@query", "@target-uri", "@request-target", "@scheme", "content-type", "content-digest"},
		{"@method", "@target-uri", "content-digest"},
		{"@method", "@path"},
	} {
		r := newReq("POST", "/foo/bar?param=Value&Pet=dog", `{"hello": "world"}`)
		r.Header.Set("Content-Type", "application/json")
		sum := sha512.Sum512([]byte(`{"hello": "world"}`))
		r.Header.Set("Content-Digest", "sha-512=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
		sign9421(r, "sig1", comps, `;created=`+strconv.FormatInt(created, 10)+`;keyid="app-9";alg="hmac-sha256";nonce="n-1"`, []byte(secretA))
		add9421(r.Header.Get("Signature-Input"), r.Header.Get("Signature"))
	}
	add9421(`proxy=("@method");created=1, mine=("@method");created=1741964966;keyid="app-9"`, `proxy=:AAAA:, mine=:`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`:`)

	// Content-Digest and Digest for the test bodies.
	for _, body := range []string{`{"hello": "world"}`, `{"n":1}`, `{"amount":12}`, ""} {
		s256, s512 := sha256.Sum256([]byte(body)), sha512.Sum512([]byte(body))
		cd256 := "sha-256=:" + base64.StdEncoding.EncodeToString(s256[:]) + ":"
		cd512 := "sha-512=:" + base64.StdEncoding.EncodeToString(s512[:]) + ":"
		c.add("FuzzDigest", cd256, []byte(body), false, false)
		c.add("FuzzDigest", cd512+", "+cd256, []byte(body), false, true)
		c.add("FuzzDigest", bodyDigest(body), []byte(body), true, false)
		c.add("FuzzSFDictionary", cd512)
	}
	c.add("FuzzDigest", "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:", []byte(`{"hello": "world"}`), false, false)

	// SigV4: get-vanilla and what the SigV4 tests sign.
	c.add("FuzzSigV4", "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="+awsGetVanillaSig, "20150830T123600Z", "")
	for _, tc := range []struct {
		method, target, body string
		presign              bool
	}{
		{"POST", "/prod/orders?b=2&a=1", `{"x":1}`, false},
		{"GET", "/prod/my%20file/a%2Bb", "", false},
		{"GET", "/prod/q?filter=a%20b&x=%2A&empty=", "", false},
		{"GET", "/prod/report?id=9", "", true},
	} {
		r := newReq(tc.method, tc.target, tc.body)
		o := v4opts(secretA)
		o.body, o.presign, o.expires = tc.body, tc.presign, 900
		signV4(r, o)
		authz := strings.TrimPrefix(r.Header.Get("Authorization"), sigV4Algorithm+" ")
		c.add("FuzzSigV4", authz, r.Header.Get("X-Amz-Date"), r.URL.RawQuery)
		c.add("FuzzDetect", r.Header.Get("Authorization"), "", "", "", "", "", r.URL.RawQuery, uint16(detAmzDate))
	}

	// wallee MAC and JWT.
	c.add("FuzzWalleeMAC", "1", "100", "1741964966", knownMAC)
	for _, signed := range []string{"/api/v2.0/transactions/read", "/api/q?filter=a%20b", "/api/q?sort=a%3Ab&c=%24x%2Cy&f%5B0%5D=1"} {
		r := newReq("GET", signed, "")
		signWalleeMAC(r, "4711", secretA, iat, signed)
		c.add("FuzzWalleeMAC", "1", "4711", r.Header.Get("X-Mac-Timestamp"), r.Header.Get("X-Mac-Value"))
		c.add("FuzzDetect", "", "", "", "", "4711", r.Header.Get("X-Mac-Value"), "", uint16(detMACFixed))
	}
	c.add("FuzzWalleeJWT", knownJWT)
	for _, hdr := range []string{`{"alg":"HS256","typ":"JWT","ver":1}`, `{"alg":"HS256","type":"JWT","ver":1}`, `{"alg":"HS256","typ":"JWT","ver":"1"}`, `{"alg":"none"}`, `{"alg":"HS256","typ":"JWE"}`} {
		c.add("FuzzWalleeJWT", makeJWT(hdr, walleeClaims("4711", iat, "POST", "/api/v2.0/payment/transactions/1?spaceId=7"), b64dec(secretA)))
	}
	c.add("FuzzWalleeJWT", makeJWT(`{"alg":"HS256","typ":"JWT"}`, `{"sub":4711,"iat":`+itoa(iat)+`,"requestPath":"/api/x","requestMethod":"GET","jti":"n1"}`, b64dec(secretB)))
	c.add("FuzzWalleeJWT", walleeTok)
	c.add("FuzzWalleeJWT", tokenTok)

	// Access tokens, signed by the fixed fuzz key.
	for _, s := range fuzzTokenSeeds(t) {
		c.add("FuzzTokenVerify", s)
	}
	now := strconv.FormatInt(fuzzTokenNow.Unix(), 10)
	claims := `{"iss":"keygate","aud":"api","sub":"42","iat":` + now + `,"nbf":` + now + `,"exp":` + strconv.FormatInt(fuzzTokenNow.Unix()+3600, 10) +
		`,"jti":"x","keyId":"key1","tenant":"acme","principal":{"id":"42","username":"svc","role":"MEMBER","permission":{"workspaceId":"acme","workspaceName":"Acme","role":"MEMBER","customerRoles":[]}}}`
	for _, hdr := range []string{`{"alg":"EdDSA","typ":"JWT","kid":"kid1"}`, `{"alg":"RS256","alg":"none","kid":"kid1"}`, `{"alg":"EdDSA","typ":"at+jwt+x","kid":"kid1"}`} {
		c.add("FuzzTokenClaims", hdr, claims)
	}

	// Signed requests: the scenarios of the scheme tests, for every scheme.
	for s := range fsSchemes {
		for _, sc := range []struct {
			method, path, query, host, body, user, hdr string
		}{
			{"PUT", "v1/things/9", "dry=1", "example.com", `{"amount":12}`, "app-7", "abc"},
			{"POST", "foo/bar", "param=Value&Pet=dog", "example.com", `{"hello": "world"}`, "app-9", "application/json"},
			{"POST", "prod/orders", "b=2&a=1", "example.amazonaws.com", `{"x":1}`, "4711", ""},
			{"GET", "prod/my file/a+b", "filter=a b&x=*&empty=", "example.com", "", "AKIDEXAMPLE", "  a   b  "},
			{"GET", "api/space/read", "spaceId=1&id=2", "example.com", "", "100", ""},
			{"GET", "api/q", "sort=a:b&c=$x,y&f[0]=1", "example.com", "", "4711", ""},
		} {
			c.add("FuzzSignVerify", uint8(s), sc.method, sc.path, sc.query, sc.host, []byte(sc.body), sc.user, sc.hdr, uint8(0))
		}
	}

	for target, inputs := range c {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, in := range inputs {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), corpusFile(in...), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s: %d seeds", target, len(inputs))
	}
}
