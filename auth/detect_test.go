package auth

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/keys"
)

func TestDetect(t *testing.T) {
	key, _ := keys.NewAccessKey(keys.NewHasher(nil), "u", "t", "n", testNow)
	key2, _ := keys.NewAccessKey(keys.NewHasher(nil), "u", "t", "n2", testNow)
	keyID, _ := keys.ParseAccessKey(key)
	iat := testNow.Unix()
	walleeTok := makeJWT(`{"alg":"HS256","typ":"JWT","ver":1}`, walleeClaims("7", iat, "GET", "/x"), b64dec(secretA))
	tokenTok := makeJWT(`{"alg":"RS256","typ":"JWT","kid":"kg-1"}`, `{"sub":"7"}`, []byte("k"))
	macHdr := func(r *http.Request) { signWalleeMAC(r, "7", secretA, iat, "/x") }
	cavage := func(r *http.Request) {
		r.Header.Set("Signature", signCavage(r, "7", "hs2019", []string{"(request-target)", "(created)"}, secretA, iat, 0))
	}
	rfc := func(r *http.Request) {
		sign9421(r, "s", []string{"@method"}, `;created=`+strconv.FormatInt(iat, 10)+`;keyid="7"`, []byte(secretA))
	}
	v4 := func(r *http.Request) { signV4(r, v4opts(secretA)) }
	v4q := func(r *http.Request) { o := v4opts(secretA); o.presign, o.expires = true, 60; signV4(r, o) }
	bearer := func(tok string) func(r *http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	hdr := func(name, v string) func(r *http.Request) { return func(r *http.Request) { r.Header.Set(name, v) } }

	det := Detector{KeyQuery: "api_key", IsTokenKID: func(kid string) bool { return kid == "kg-1" }}
	cases := []struct {
		name   string
		target string
		set    []func(r *http.Request)
		det    *Detector
		scheme Scheme
		want   error
	}{
		{"access key bearer", "/x", []func(*http.Request){bearer(key)}, nil, AccessKey, nil},
		{"access key header", "/x", []func(*http.Request){hdr("X-Api-Key", key)}, nil, AccessKey, nil},
		{"access key custom header", "/x", []func(*http.Request){hdr("X-Key", key)}, &Detector{KeyHeader: "X-Key"}, AccessKey, nil},
		{"access key query", "/x?api_key=" + key, nil, nil, AccessKey, nil},
		{"access key query off", "/x?api_key=" + key, nil, &Detector{}, 0, ErrNoCredential},
		{"same key twice", "/x", []func(*http.Request){bearer(key), hdr("X-Api-Key", key)}, nil, AccessKey, nil},
		{"two keys", "/x", []func(*http.Request){bearer(key), hdr("X-Api-Key", key2)}, nil, 0, ErrAmbiguous},
		{"bad key header", "/x", []func(*http.Request){hdr("X-Api-Key", "kg_nope")}, nil, 0, ErrMalformed},
		{"wallee mac", "/x", []func(*http.Request){macHdr}, nil, WalleeMAC, nil},
		{"wallee jwt", "/x", []func(*http.Request){bearer(walleeTok)}, nil, WalleeJWT, nil},
		{"access token", "/x", []func(*http.Request){bearer(tokenTok)}, nil, AccessToken, nil},
		{"access token disabled", "/x", []func(*http.Request){bearer(tokenTok)}, &Detector{Schemes: NewSchemeSet(WalleeJWT), IsTokenKID: det.IsTokenKID}, 0, ErrNoCredential},
		{"unknown kid rs256", "/x", []func(*http.Request){bearer(makeJWT(`{"alg":"RS256","kid":"other"}`, `{}`, []byte("k")))}, nil, 0, ErrMalformed},
		{"opaque bearer", "/x", []func(*http.Request){bearer("abc")}, nil, 0, ErrMalformed},
		{"cavage", "/x", []func(*http.Request){cavage}, nil, HTTPSignature, nil},
		{"rfc9421", "/x", []func(*http.Request){rfc}, nil, HTTPSignature, nil},
		{"sigv4 header", "/x", []func(*http.Request){v4}, nil, SigV4, nil},
		{"sigv4 presigned", "/x", []func(*http.Request){v4q}, nil, SigV4, nil},
		{"basic auth is not ours", "/x", []func(*http.Request){hdr("Authorization", "Basic dTpw")}, nil, 0, ErrNoCredential},
		{"none", "/x", nil, nil, 0, ErrNoCredential},
		{"scheme disabled", "/x", []func(*http.Request){macHdr}, &Detector{Schemes: NewSchemeSet(AccessKey)}, 0, ErrNoCredential},
		{"key and mac", "/x", []func(*http.Request){macHdr, hdr("X-Api-Key", key)}, nil, 0, ErrAmbiguous},
		{"jwt and cavage", "/x", []func(*http.Request){cavage, bearer(walleeTok)}, nil, 0, ErrAmbiguous},
		{"key and presigned", "/x", []func(*http.Request){v4q, bearer(key)}, nil, 0, ErrAmbiguous},
		{"cavage and rfc9421", "/x", []func(*http.Request){rfc, func(r *http.Request) {
			r.Header.Set("Authorization", "Signature "+signCavage(r, "7", "hs2019", []string{"(created)"}, secretA, iat, 0))
		}}, nil, 0, ErrAmbiguous},
		{"two authorization headers", "/x", []func(*http.Request){bearer(key), func(r *http.Request) { r.Header.Add("Authorization", "Bearer "+key2) }}, nil, 0, ErrAmbiguous},
		{"oversized authorization", "/x", []func(*http.Request){bearer(strings.Repeat("a", 9000))}, nil, 0, ErrMalformed},
		{"oversized signature-input", "/x", []func(*http.Request){hdr("Signature-Input", strings.Repeat("a", 9000)), hdr("Signature", "a=:AA==:")}, nil, 0, ErrMalformed},
		{"incomplete mac headers", "/x", []func(*http.Request){hdr("X-Mac-Userid", "7")}, nil, 0, ErrMalformed},
		// Imported (foreign) keys, on the route's opt-in only.
		{"foreign bearer", "/x", []func(*http.Request){bearer("unkey_2V1k9nQ4cGZ7tR3pWb8sXy6")}, &Detector{ForeignKeys: true}, AccessKey, nil},
		{"foreign bearer off", "/x", []func(*http.Request){bearer("unkey_2V1k9nQ4cGZ7tR3pWb8sXy6")}, nil, 0, ErrMalformed},
		{"foreign apikey header", "/x", []func(*http.Request){hdr("apikey", "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J")}, &Detector{ForeignKeys: true, KeyHeader: "apikey"}, AccessKey, nil},
		{"foreign query", "/x?apikey=Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J", nil, &Detector{ForeignKeys: true, KeyQuery: "apikey"}, AccessKey, nil},
		{"foreign raw authorization", "/x", []func(*http.Request){hdr("Authorization", "eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6ImI0NjJiZjE0ZGVkMzQ1ODFhNmNhZWVkNWNmYjk1OTZmIiwiaCI6Im11cm11cjY0In0=")}, &Detector{ForeignKeys: true, KeyHeader: "Authorization"}, AccessKey, nil},
		{"raw authorization kg key", "/x", []func(*http.Request){hdr("Authorization", key)}, &Detector{KeyHeader: "Authorization"}, AccessKey, nil},
		{"foreign jwt stays a jwt", "/x", []func(*http.Request){bearer(walleeTok)}, &Detector{ForeignKeys: true}, WalleeJWT, nil},
		{"foreign too short", "/x", []func(*http.Request){hdr("X-Api-Key", "abc")}, &Detector{ForeignKeys: true}, 0, ErrMalformed},
		{"foreign and kg key", "/x", []func(*http.Request){bearer(key), hdr("X-Api-Key", "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J")}, &Detector{ForeignKeys: true}, 0, ErrAmbiguous},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReq("GET", tc.target, "")
			for _, f := range tc.set {
				f(r)
			}
			d := &det
			if tc.det != nil {
				d = tc.det
			}
			c, err := d.Detect(r)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if err == nil && c.Scheme != tc.scheme {
				t.Fatalf("scheme = %v, want %v", c.Scheme, tc.scheme)
			}
			if err == nil && c.Scheme == AccessKey && (c.AccessKey == "" || c.KeyID != keyID && c.AccessKey == key ||
				c.KeyID == "" && strings.HasPrefix(c.AccessKey, keys.KeyPrefix)) {
				t.Fatalf("access key %q id %q", c.AccessKey, c.KeyID)
			}
			if err == nil && c.Scheme == AccessToken && c.Token != tokenTok {
				t.Fatal("token not returned")
			}
			if err == nil && c.Scheme.Signed() && c.UserID == "" {
				t.Fatal("signed credential without user id")
			}
		})
	}
}

func TestAccessKeyNotVerifiable(t *testing.T) {
	key, _ := keys.NewAccessKey(keys.NewHasher(nil), "u", "t", "n", testNow)
	r := newReq("GET", "/x", "")
	r.Header.Set("X-Api-Key", key)
	var d Detector
	c, err := d.Detect(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(r, twoSecrets, VerifyOptions{}); !errors.Is(err, ErrNotSigned) {
		t.Fatalf("err = %v", err)
	}
}

func TestStrip(t *testing.T) {
	key, _ := keys.NewAccessKey(keys.NewHasher(nil), "u", "t", "n", testNow)
	r := newReq("GET", "/x?b=%20&api_key="+key+"&keep=1&X-Amz-Signature=ab&a%70i_key=2", "")
	d := Detector{KeyQuery: "api_key"}
	if _, err := d.Detect(r); err == nil {
		t.Fatal("a key sent twice in the query must be ambiguous")
	}
	d.Strip(r)
	if r.URL.RawQuery != "b=%20&keep=1" || r.RequestURI != "/x?b=%20&keep=1" {
		t.Fatalf("query after strip: %q %q", r.URL.RawQuery, r.RequestURI)
	}

	// The same key in Authorization and X-Api-Key is one credential, and
	// neither copy survives Strip.
	r = newReq("GET", "/x", "")
	r.Header.Set("Authorization", "Bearer "+key)
	r.Header.Set("X-Api-Key", key)
	if _, err := d.Detect(r); err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Signature", "x")
	r.Header.Set("X-Mac-Value", "x")
	r.Header.Set("X-Other", "kept")
	d.Strip(r)
	if len(r.Header) != 1 || r.Header.Get("X-Other") != "kept" {
		t.Fatalf("headers after strip: %v", r.Header)
	}

	// Only the route's schemes are stripped.
	only, _ := ParseSchemeSet("sigv4")
	d = Detector{Schemes: only}
	r = newReq("GET", "/x?X-Amz-Credential=a&api_key=k", "")
	r.Header.Set("X-Api-Key", "k")
	d.Strip(r)
	if r.URL.RawQuery != "api_key=k" || r.Header.Get("X-Api-Key") != "k" {
		t.Fatalf("strip went beyond the route: %q %v", r.URL.RawQuery, r.Header)
	}
}

func TestSchemeNames(t *testing.T) {
	for _, n := range []string{"access_key", "wallee_mac", "wallee_jwt", "http_signature", "sigv4", "access_token"} {
		s, err := ParseScheme(n)
		if err != nil || s.String() != n {
			t.Fatalf("%s: %v %v", n, s, err)
		}
	}
	if _, err := ParseScheme("basic"); err == nil {
		t.Fatal("unknown scheme accepted")
	}
	set, err := ParseSchemeSet("sigv4", "access_key")
	if err != nil || !set.Has(SigV4) || set.Has(WalleeMAC) {
		t.Fatalf("set %b %v", set, err)
	}
}

func TestURIComponentQuery(t *testing.T) {
	cases := map[string]string{
		"a=b+c":                "a=b%20c",
		"a=%2b":                "a=%2B",
		"x=*'()!~-_.":          "x=*'()!~-_.",
		"k=:$,[]/?@&k=2":       "k=%3A%24%2C%5B%5D%2F%3F%40&k=2",
		"n=%C3%A9&n=%e2%82%ac": "n=%C3%A9&n=%E2%82%AC",
		"flag&v=":              "flag&v=",
		"a=1&":                 "a=1&",
	}
	for in, want := range cases {
		got, ok := appendURIComponentQuery(nil, in)
		if !ok || string(got) != want {
			t.Errorf("%q → %q (%v), want %q", in, got, ok, want)
		}
	}
	if _, ok := appendURIComponentQuery(nil, "a=%zz"); ok {
		t.Error("broken escape accepted")
	}
}
