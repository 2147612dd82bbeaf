package auth

// Fuzz targets for the parsers that read credential material off the wire.
// Each checks properties, not only the absence of panics: errors wrap the
// documented sentinels, a successful parse satisfies the parser's
// invariants and survives serialize → parse unchanged, oversized input is
// refused, and allocation stays linear in the input. The seed corpora are
// in testdata/fuzz/<target>/ (see fuzz_seeds_test.go).

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// Bits of FuzzDetect's flags.
const (
	detMACFixed   = 1 << 0  // also send X-Mac-Version: 1 and a timestamp
	detAuthTwice  = 1 << 1  // repeat Authorization with the same value
	detAuthOther  = 1 << 2  // add a second, different Authorization
	detKeyQuery   = 1 << 3  // the route accepts ?api_key=
	detAmzDate    = 1 << 4  // send X-Amz-Date
	detSchemeBits = 5       // bits 5..10: the route's scheme set (0 = all)
	detPadShift   = 11      // bits 11..13: which header to push past maxHeaderLen
	detForeign    = 1 << 14 // the route takes imported (foreign) keys
	detKeyInAuthz = 1 << 15 // the route's key header is Authorization (a raw key)
	detSchemeMask = 0x3f << detSchemeBits
)

func fuzzDetectRequest(authz, apiKey, sig, sigInput, macUser, macValue, rawQuery string, flags uint16) *http.Request {
	u := &url.URL{Path: "/x", RawQuery: rawQuery}
	r := &http.Request{Method: "GET", URL: u, Host: "example.com", Header: http.Header{}, RequestURI: u.RequestURI()}
	set := func(name, v string) {
		if v != "" {
			r.Header.Add(name, v)
		}
	}
	set("Authorization", authz)
	if flags&detAuthTwice != 0 {
		set("Authorization", authz)
	}
	if flags&detAuthOther != 0 {
		set("Authorization", "Bearer "+apiKey)
	}
	set("X-Api-Key", apiKey)
	set("Signature", sig)
	set("Signature-Input", sigInput)
	set("X-Mac-Userid", macUser)
	set("X-Mac-Value", macValue)
	if flags&detMACFixed != 0 {
		r.Header.Set("X-Mac-Version", "1")
		r.Header.Set("X-Mac-Timestamp", strconv.FormatInt(testNow.Unix(), 10))
	}
	if flags&detAmzDate != 0 {
		r.Header.Set("X-Amz-Date", testNow.Format(amzDateLayout))
	}
	return r
}

// FuzzDetect checks Detect on requests built from fuzzed credential headers
// and query: it never panics; it fails only with ErrNoCredential,
// ErrMalformed or ErrAmbiguous; a credential it returns is one of an
// enabled scheme and well-formed (an access key re-parses to its KeyID, a
// signed credential has a bounded user id and something to verify); it
// does not modify the request; after the Detector's Strip the request
// carries no credential (not even a second copy); a credential header past maxHeaderLen is refused; and it
// allocates linearly in the input.
func FuzzDetect(f *testing.F) {
	key := "kg_aaaaaaaaaaaaaaaa_" + strings.Repeat("b", 52)
	f.Add("Bearer "+key, "", "", "", "", "", "", uint16(0))
	f.Add("", key, "", "", "", "", "api_key="+key, uint16(detKeyQuery))
	f.Add("", "", "", "", "7", "AAAA", "", uint16(detMACFixed))
	f.Add(`Signature keyId="7",headers="(created)",created=1,signature="AAAA"`, "", "", "", "", "", "", uint16(0))
	f.Add("", "", `s=:AAAA:`, `s=("@method");created=1;keyid="7"`, "", "", "", uint16(0))
	f.Add("AWS4-HMAC-SHA256 Credential=a/20250314/r/s/aws4_request, SignedHeaders=host, Signature=00", "", "", "", "", "", "", uint16(detAmzDate))
	f.Add("", "", "", "", "", "", "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2F20250314%2Fr%2Fs%2Faws4_request", uint16(0))
	f.Add("Bearer a.b.c", "", "", "", "", "", "", uint16(1<<detPadShift))
	f.Add("Bearer unkey_2V1k9nQ4cGZ7tR3pWb8sXy6", "", "", "", "", "", "", uint16(detForeign))
	f.Add("eyJvcmciOiI1ZTlkOTU0NGExZGNkNjAwMDFkMGVkMjAiLCJpZCI6ImI0NjJiZjE0ZGVkMzQ1ODFhNmNhZWVkNWNmYjk1OTZmIiwiaCI6Im11cm11cjY0In0=", "", "", "", "", "", "", uint16(detForeign|detKeyInAuthz))
	f.Add("", "Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J", "", "", "", "", "api_key=Kk4RLVM9E8xWf7E0M9jIyWv8MXSMdDB2J", uint16(detForeign|detKeyQuery))
	f.Fuzz(func(t *testing.T, authz, apiKey, sig, sigInput, macUser, macValue, rawQuery string, flags uint16) {
		r := fuzzDetectRequest(authz, apiKey, sig, sigInput, macUser, macValue, rawQuery, flags)
		d := Detector{
			Schemes:    SchemeSet(flags&detSchemeMask>>detSchemeBits) << 1, // bit 0 is no scheme
			IsTokenKID: func(kid string) bool { return kid == "kg-1" },
		}
		if flags&detKeyQuery != 0 {
			d.KeyQuery = "api_key"
		}
		d.ForeignKeys = flags&detForeign != 0
		if flags&detKeyInAuthz != 0 {
			d.KeyHeader = "Authorization"
		}
		before := r.Header.Clone()
		var (
			c   Credential
			err error
		)
		inLen := len(authz) + len(apiKey) + len(sig) + len(sigInput) + len(macUser) + len(macValue) + len(rawQuery)
		checkAllocs(t, "Detect", inLen, func() { noKnownPanic(t, func() { c, err = d.Detect(r) }) })
		if !reflect.DeepEqual(before, r.Header) || r.URL.RawQuery != rawQuery {
			t.Fatal("Detect modified the request")
		}
		if err != nil {
			wantSentinel(t, "Detect", err, ErrNoCredential, ErrMalformed, ErrAmbiguous)
		} else {
			checkCredential(t, &d, c, r)
			// Nothing that could carry a credential reaches the upstream.
			d.Strip(r)
			checkStripped(t, &d, r)
		}

		// A credential header past the cap is refused on a route with every
		// scheme on, whatever else the request carries.
		pad := int(flags>>detPadShift) & 7
		names := [...]string{"Authorization", "X-Api-Key", "Signature", "Signature-Input", "X-Mac-Userid"}
		if pad < len(names) {
			r := fuzzDetectRequest(authz, apiKey, sig, sigInput, macUser, macValue, rawQuery, flags)
			long := r.Header.Get(names[pad]) + strings.Repeat(" ", maxHeaderLen+1)
			if pad == 0 && !strings.Contains(long, " ") {
				long = "Bearer " + long
			}
			r.Header[names[pad]] = []string{long}
			all := Detector{IsTokenKID: d.IsTokenKID}
			_, err := all.Detect(r)
			if err == nil || errors.Is(err, ErrNoCredential) {
				t.Fatalf("%s of %d bytes: err = %v, want a refusal", names[pad], len(long), err)
			}
			wantSentinel(t, "Detect oversized", err, ErrMalformed, ErrAmbiguous)
		}
	})
}

// checkStripped fails t when r still has a place that can carry a
// credential on d's route, or still yields one.
func checkStripped(t *testing.T, d *Detector, r *http.Request) {
	t.Helper()
	if c, err := d.Detect(r); err == nil {
		t.Fatalf("after Strip, Detect still finds a %v credential", c.Scheme)
	}
	names := []string{"Authorization"}
	query := []string{}
	if d.Schemes.Has(AccessKey) {
		names = append(names, DefaultKeyHeader)
		if d.KeyQuery != "" {
			query = append(query, d.KeyQuery)
		}
	}
	if d.Schemes.Has(WalleeMAC) {
		names = append(names, macHeaders[:]...)
	}
	if d.Schemes.Has(HTTPSignature) {
		names = append(names, "Signature", "Signature-Input")
	}
	if d.Schemes.Has(SigV4) {
		query = append(query, amzQueryParams[:]...)
	}
	for _, n := range names {
		if _, ok := r.Header[n]; ok {
			t.Fatalf("after Strip, %s is still there", n)
		}
	}
	for _, n := range query {
		// Detect's own decoding of the query decides what is a parameter.
		if _, count, _ := queryParam(r.URL.RawQuery, n); count > 0 {
			t.Fatalf("after Strip, query parameter %s is still in %q", n, r.URL.RawQuery)
		}
	}
	if r.RequestURI != r.URL.RequestURI() {
		t.Fatalf("after Strip, RequestURI %q and URL %q differ", r.RequestURI, r.URL.RequestURI())
	}
}

// checkCredential checks the invariants of a credential Detect returned.
func checkCredential(t *testing.T, d *Detector, c Credential, r *http.Request) {
	t.Helper()
	if !d.Schemes.Has(c.Scheme) {
		t.Fatalf("scheme %v is not enabled", c.Scheme)
	}
	if c.Scheme.Signed() != (c.sig != nil) {
		t.Fatalf("scheme %v with verifier %T", c.Scheme, c.sig)
	}
	switch c.Scheme {
	case AccessKey:
		if c.KeyID == "" && d.ForeignKeys {
			// An imported key: never kg_ shaped, always within the bounds.
			if strings.HasPrefix(c.AccessKey, keys.KeyPrefix) || keys.ValidateForeignKey(c.AccessKey) != nil || c.UserID != "" {
				t.Fatalf("foreign key %q", c.AccessKey)
			}
			break
		}
		id, ok := keys.ParseAccessKey(c.AccessKey)
		if !ok || id != c.KeyID || c.UserID != "" {
			t.Fatalf("access key %q id %q", c.AccessKey, c.KeyID)
		}
	case AccessToken:
		if c.Token == "" || c.UserID != "" {
			t.Fatal("access token without token")
		}
		if !strings.Contains(r.Header.Get("Authorization"), c.Token) {
			t.Fatal("token is not the one sent")
		}
	default:
		if c.UserID == "" || len(c.UserID) > maxUserIDLen {
			t.Fatalf("%v: user id of %d bytes", c.Scheme, len(c.UserID))
		}
	}
}

// FuzzSFDictionary checks the RFC 8941 Dictionary parser: it fails only
// with errSF; a parsed dictionary respects the member, list and parameter
// caps and the item grammar; serializing it and parsing again gives the
// same value, and serializing that gives the same bytes; allocation is
// linear in the input.
func FuzzSFDictionary(f *testing.F) {
	for _, s := range []string{
		`sig1=("@method" "@target-uri");created=1618884473;keyid="k"`,
		`a=1, b=2;x=?0, c=(1 2.5 "s" tok :AAAA:);p`,
		`sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:`,
		`a="\"\\", b=-12.345, c=*t/x:y, d`,
		`a=(), b=?1;c;d=?0`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var (
			ms  []sfMember
			err error
		)
		checkAllocs(t, "parseSFDictionary", len(s), func() { ms, err = parseSFDictionary(s) })
		if err != nil {
			if err != errSF {
				t.Fatalf("error %v, want errSF", err)
			}
			return
		}
		checkSFDictionary(t, ms)
		ser := appendSFDictionary(nil, ms)
		ms2, err := parseSFDictionary(string(ser))
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", ser, s, err)
		}
		if a, b := sfNorm(ms), sfNorm(ms2); a != b {
			t.Fatalf("round trip changed the value:\n%s\n%s\nserialized %q", a, b, ser)
		}
		if ser2 := appendSFDictionary(nil, ms2); !bytes.Equal(ser, ser2) {
			t.Fatalf("serialization not canonical: %q then %q", ser, ser2)
		}
	})
}

func checkSFDictionary(t *testing.T, ms []sfMember) {
	t.Helper()
	if len(ms) > maxCovered {
		t.Fatalf("%d members", len(ms))
	}
	seen := map[string]bool{}
	for _, m := range ms {
		checkSFKey(t, m.key)
		if seen[m.key] {
			t.Fatalf("key %q twice", m.key)
		}
		seen[m.key] = true
		checkSFParams(t, m.params)
		if !m.isList {
			checkSFItem(t, m.item)
			continue
		}
		if len(m.list) > maxCovered {
			t.Fatalf("inner list of %d", len(m.list))
		}
		for _, in := range m.list {
			checkSFItem(t, in.item)
			checkSFParams(t, in.params)
		}
	}
}

func checkSFKey(t *testing.T, k string) {
	t.Helper()
	if k == "" || !(isLCAlpha(k[0]) || k[0] == '*') {
		t.Fatalf("bad key %q", k)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isLCAlpha(c) && !isDigit(c) && !strings.ContainsRune("_-.*", rune(c)) {
			t.Fatalf("bad key %q", k)
		}
	}
}

func checkSFParams(t *testing.T, ps []sfParam) {
	t.Helper()
	if len(ps) > maxCovered {
		t.Fatalf("%d parameters", len(ps))
	}
	seen := map[string]bool{}
	for _, p := range ps {
		checkSFKey(t, p.key)
		if seen[p.key] {
			t.Fatalf("parameter %q twice", p.key)
		}
		seen[p.key] = true
		checkSFItem(t, p.val)
	}
}

func checkSFItem(t *testing.T, it sfItem) {
	t.Helper()
	switch it.kind {
	case sfInteger:
		if it.n > 999_999_999_999_999_9 || it.n < -999_999_999_999_999 {
			t.Fatalf("integer %d out of range", it.n)
		}
	case sfDecimal:
		if _, err := strconv.ParseFloat(it.s, 64); err != nil {
			t.Fatalf("decimal %q", it.s)
		}
	case sfString:
		for i := 0; i < len(it.s); i++ {
			if !isPrintableASCII(it.s[i]) {
				t.Fatalf("string with byte %#x", it.s[i])
			}
		}
	case sfToken:
		if it.s == "" || !(isAlpha(it.s[0]) || it.s[0] == '*') {
			t.Fatalf("token %q", it.s)
		}
	case sfBytes:
		for i := 0; i < len(it.s); i++ {
			if c := it.s[i]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=' {
				t.Fatalf("byte sequence %q", it.s)
			}
		}
	case sfBool:
	default:
		t.Fatalf("item kind %d", it.kind)
	}
}

// appendCavageParams serializes a parsed cavage signature in the canonical
// form: every parameter explicit.
func appendCavageParams(c *cavageSig) string {
	quote := func(v string) string {
		if strings.IndexByte(v, '"') < 0 {
			return `"` + v + `"`
		}
		return v // a value with a quote was sent bare, so it has no separator
	}
	alg := "hmac-sha256"
	if c.sha512 {
		alg = "hs2019"
	}
	p := "keyId=" + quote(c.keyID) + `,algorithm="` + alg + `"`
	if c.created != "" {
		p += ",created=" + c.created
	}
	if c.expires != "" {
		p += ",expires=" + c.expires
	}
	return p + ",headers=" + quote(strings.Join(c.headers, " ")) + `,signature="` + base64.StdEncoding.EncodeToString(c.sig) + `"`
}

// FuzzCavage checks the draft-cavage parameter parser (Signature header and
// Authorization: Signature): it fails only with ErrMalformed; a parse gives
// a bounded key id, 1..maxCovered lower-case covered names, decimal
// created/expires and a SHA-256 or SHA-512 sized MAC; the canonical
// serialization parses to the same signature; input past maxHeaderLen is
// refused; allocation is linear.
func FuzzCavage(f *testing.F) {
	f.Add(`keyId="u1",algorithm="hs2019",headers="(request-target) host date digest",signature="` + knownCavage + `"`)
	f.Add(`keyId=app,algorithm=hmac-sha256,created=1741964966,expires=1741965000,headers="(request-target) (created) host",signature="` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `"`)
	f.Add(`keyId="a",signature="` + base64.StdEncoding.EncodeToString(make([]byte, 64)) + `",foo="x,keyId=b"`)
	f.Fuzz(func(t *testing.T, v string) {
		var (
			c   Credential
			err error
		)
		checkAllocs(t, "parseCavage", len(v), func() { c, err = parseCavage(v, inSignatureHeaders) })
		if _, err2 := parseCavage(v+strings.Repeat(",", maxHeaderLen), inSignatureHeaders); !errors.Is(err2, ErrMalformed) {
			t.Fatalf("oversized parameters: %v", err2)
		}
		if err != nil {
			wantSentinel(t, "parseCavage", err, ErrMalformed)
			return
		}
		s := c.sig.(*cavageSig)
		if c.Scheme != HTTPSignature || c.UserID != s.keyID || s.keyID == "" || len(s.keyID) > maxUserIDLen {
			t.Fatalf("credential %v user %q", c.Scheme, c.UserID)
		}
		if len(s.headers) == 0 || len(s.headers) > maxCovered {
			t.Fatalf("%d covered names", len(s.headers))
		}
		for _, h := range s.headers {
			if h == "" || h != strings.ToLower(h) || strings.ContainsAny(h, " \t") {
				t.Fatalf("covered name %q", h)
			}
		}
		for _, n := range []string{s.created, s.expires} {
			if _, ok := parseDecimal(n); n != "" && !ok {
				t.Fatalf("created/expires %q", n)
			}
		}
		// Either size is accepted for either algorithm: an hs2019 signature
		// of 32 bytes parses and then fails at Verify with ErrBadSignature
		// (testdata/fuzz/FuzzCavage/3ba20b2b542ec481).
		if len(s.sig) != sha256.Size && len(s.sig) != sha512.Size {
			t.Fatalf("MAC of %d bytes", len(s.sig))
		}
		if len(s.headers) > 1 && strings.Contains(strings.Join(s.headers, ""), `"`) {
			return // split at a Unicode space in a bare value: no faithful serialization
		}
		again := appendCavageParams(s)
		c2, err := parseCavage(again, inSignatureHeaders)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", again, err)
		}
		if !reflect.DeepEqual(s, c2.sig.(*cavageSig)) {
			t.Fatalf("round trip changed the signature:\n%+v\n%+v", s, c2.sig)
		}
	})
}

// FuzzRFC9421 checks the RFC 9421 Signature-Input/Signature parser: it
// fails only with ErrMalformed; the selected signature has a bounded keyid,
// a positive created, only lower-case string components without
// parameters (derived ones from the supported set) and a 32-byte MAC; the
// signature parameters keygate rebuilds for the signature base parse back
// to the same components and parameters; oversized fields are refused;
// allocation is linear.
func FuzzRFC9421(f *testing.F) {
	f.Add(`sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`, `sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:`)
	f.Add(`proxy=("@method");created=1, mine=("@method" "@target-uri" "content-digest");created=1741964966;keyid="app-9";alg="hmac-sha256";nonce="n-1"`,
		`proxy=:AAAA:, mine=:`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`:`)
	f.Add(`sig=("@query-param";name="a");created=1;keyid="k"`, `sig=:AAAA:`)
	f.Fuzz(func(t *testing.T, input, sig string) {
		h := http.Header{}
		h.Set("Signature-Input", input)
		h.Set("Signature", sig)
		var (
			c   Credential
			err error
		)
		checkAllocs(t, "parseRFC9421", len(input)+len(sig), func() { c, err = parseRFC9421(h) })
		long := h.Clone()
		long.Add("Signature-Input", strings.Repeat(" ", maxHeaderLen))
		if _, err2 := parseRFC9421(long); !errors.Is(err2, ErrMalformed) {
			t.Fatalf("oversized Signature-Input: %v", err2)
		}
		if err != nil {
			wantSentinel(t, "parseRFC9421", err, ErrMalformed)
			return
		}
		s := c.sig.(*rfc9421Sig)
		if c.UserID != s.keyID || s.keyID == "" || len(s.keyID) > maxUserIDLen || s.created <= 0 || len(s.sig) != sha256.Size {
			t.Fatalf("signature %+v", s)
		}
		for _, comp := range s.components {
			n := comp.item.s
			if comp.item.kind != sfString || n == "" || n != strings.ToLower(n) || len(comp.params) > 0 {
				t.Fatalf("component %+v", comp)
			}
			if n[0] == '@' && !strings.Contains(" @method @target-uri @authority @scheme @request-target @path @query ", " "+n+" ") {
				t.Fatalf("derived component %q", n)
			}
		}
		// Rebuild the fields from what was parsed, as a client would have
		// sent them, and parse again: same signature.
		h2 := http.Header{}
		h2.Set("Signature-Input", s.label+"="+string(appendSFInnerList(nil, s.components, s.params)))
		h2.Set("Signature", s.label+"=:"+base64.StdEncoding.EncodeToString(s.sig)+":")
		c2, err := parseRFC9421(h2)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", h2.Get("Signature-Input"), err)
		}
		s2 := c2.sig.(*rfc9421Sig)
		norm := func(s *rfc9421Sig) string {
			return sfNorm([]sfMember{{key: s.label, isList: true, list: s.components, params: s.params}}) +
				s.keyID + strconv.FormatInt(s.created, 10) + strconv.FormatInt(s.expires, 10) + strconv.FormatBool(s.hasNonce) + string(s.sig)
		}
		if a, b := norm(s), norm(s2); a != b {
			t.Fatalf("round trip changed the signature:\n%s\n%s", a, b)
		}
	})
}

// FuzzSigV4 checks both SigV4 forms. The Authorization parameters and
// X-Amz-Date: errors wrap ErrMalformed; a parse has a bounded access key
// id, a well-formed scope and date, signed headers that include host, and
// serializes back to the same credential. The presigned query: errors wrap
// ErrMalformed; a parse has 1 s ≤ X-Amz-Expires ≤ 7 days and round-trips
// through a query built from it; a query past maxTargetLen is refused.
// Allocation is linear in both.
func FuzzSigV4(f *testing.F) {
	f.Add("Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature="+awsGetVanillaSig, "20150830T123600Z", "")
	f.Add("Credential=a/b/20250314/eu-central-1/execute-api/aws4_request,SignedHeaders=content-type;host,Signature="+strings.Repeat("AB", 32), "20250314T150926Z",
		"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=4711%2F20250314%2Feu-central-1%2Fexecute-api%2Faws4_request&X-Amz-Date=20250314T150926Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature="+awsGetVanillaSig+"&id=9")
	f.Fuzz(func(t *testing.T, param, amzDate, rawQuery string) {
		h := http.Header{}
		if amzDate != "" {
			h.Set("X-Amz-Date", amzDate)
		}
		var (
			c   Credential
			err error
		)
		checkAllocs(t, "parseSigV4Header", len(param)+len(amzDate), func() { c, err = parseSigV4Header(param, h) })
		if err != nil {
			wantSentinel(t, "parseSigV4Header", err, ErrMalformed)
		} else {
			s := checkSigV4(t, c, false)
			again := "Credential=" + s.akid + "/" + s.scope + ", SignedHeaders=" + s.signedHeaders + ", Signature=" + hex.EncodeToString(s.sig[:])
			c2, err := parseSigV4Header(again, h)
			if err != nil {
				t.Fatalf("re-parse of %q: %v", again, err)
			}
			if !reflect.DeepEqual(s, c2.sig.(*sigV4)) {
				t.Fatalf("round trip changed the credential:\n%+v\n%+v", s, c2.sig)
			}
		}

		checkAllocs(t, "parseSigV4Query", len(rawQuery), func() { c, err = parseSigV4Query(rawQuery) })
		if _, err2 := parseSigV4Query(rawQuery + "&" + strings.Repeat("a", maxTargetLen)); !errors.Is(err2, ErrMalformed) {
			t.Fatalf("oversized query: %v", err2)
		}
		if err != nil {
			wantSentinel(t, "parseSigV4Query", err, ErrMalformed)
			return
		}
		s := checkSigV4(t, c, true)
		q := url.Values{}
		q.Set("X-Amz-Algorithm", sigV4Algorithm)
		q.Set("X-Amz-Credential", s.akid+"/"+s.scope)
		q.Set("X-Amz-Date", s.amzDate)
		q.Set("X-Amz-Expires", strconv.FormatInt(s.expires, 10))
		q.Set("X-Amz-SignedHeaders", s.signedHeaders)
		q.Set("X-Amz-Signature", hex.EncodeToString(s.sig[:]))
		c2, err := parseSigV4Query(q.Encode())
		if err != nil {
			t.Fatalf("re-parse of %q: %v", q.Encode(), err)
		}
		if !reflect.DeepEqual(s, c2.sig.(*sigV4)) {
			t.Fatalf("round trip changed the credential:\n%+v\n%+v", s, c2.sig)
		}
	})
}

func checkSigV4(t *testing.T, c Credential, presigned bool) *sigV4 {
	t.Helper()
	s := c.sig.(*sigV4)
	if c.Scheme != SigV4 || c.UserID != s.akid || s.akid == "" || len(s.akid) > maxUserIDLen || s.presigned != presigned {
		t.Fatalf("credential %v %+v", c.Scheme, s)
	}
	if s.scope != s.date+"/"+s.region+"/"+s.service+"/aws4_request" || len(s.date) != 8 || s.region == "" || s.service == "" {
		t.Fatalf("scope %q", s.scope)
	}
	if ts, err := time.Parse(amzDateLayout, s.amzDate); err != nil || !ts.Equal(s.ts) {
		t.Fatalf("date %q", s.amzDate)
	}
	if hs := strings.Split(s.signedHeaders, ";"); len(hs) > maxCovered || !strings.Contains(";"+s.signedHeaders+";", ";host;") || s.signedHeaders != strings.ToLower(s.signedHeaders) {
		t.Fatalf("signed headers %q", s.signedHeaders)
	}
	if presigned && (s.expires < 1 || s.expires > maxPresignExpiry) {
		t.Fatalf("expires %d", s.expires)
	}
	return s
}

// FuzzWalleeMAC checks the x-mac-* header parser: errors wrap ErrMalformed;
// a parse has version 1, a bounded user id without '|' (the signed string's
// separator), a decimal timestamp and a 64-byte MAC, and the headers
// rebuilt from it (MAC in canonical base64) parse to the same credential;
// a header past maxHeaderLen is refused; allocation is linear.
func FuzzWalleeMAC(f *testing.F) {
	f.Add("1", "100", "1741964966", knownMAC)
	f.Add("1", "4711", "1741964966", base64.StdEncoding.EncodeToString(make([]byte, 32)))
	f.Add("2", "7|8", "12x", "!!notbase64!!")
	f.Fuzz(func(t *testing.T, version, userID, ts, mac string) {
		h := http.Header{}
		for i, v := range [4]string{version, userID, ts, mac} {
			h.Set(macHeaders[i], v)
		}
		var (
			c   Credential
			err error
		)
		checkAllocs(t, "parseWalleeMAC", len(version)+len(userID)+len(ts)+len(mac), func() { c, err = parseWalleeMAC(h) })
		long := h.Clone()
		long.Set("X-Mac-Value", mac+strings.Repeat("A", maxHeaderLen))
		if _, err2 := parseWalleeMAC(long); !errors.Is(err2, ErrMalformed) {
			t.Fatalf("oversized X-Mac-Value: %v", err2)
		}
		if err != nil {
			wantSentinel(t, "parseWalleeMAC", err, ErrMalformed)
			return
		}
		m := c.sig.(*walleeMAC)
		if version != "1" || c.UserID != userID || m.userID != userID || userID == "" || len(userID) > maxUserIDLen || strings.Contains(userID, "|") {
			t.Fatalf("credential %+v from version %q user %q", m, version, userID)
		}
		if n, ok := parseDecimal(ts); !ok || n != m.tsUnix || m.ts != ts {
			t.Fatalf("timestamp %q parsed as %d", ts, m.tsUnix)
		}
		h2 := h.Clone()
		h2.Set("X-Mac-Value", base64.StdEncoding.EncodeToString(m.mac[:]))
		c2, err := parseWalleeMAC(h2)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if !reflect.DeepEqual(m, c2.sig.(*walleeMAC)) {
			t.Fatalf("round trip changed the credential:\n%+v\n%+v", m, c2.sig)
		}
	})
}

// FuzzWalleeJWT checks Bearer JWT classification and the wallee JWT
// parser. Errors wrap ErrMalformed. A token with a known kid is an access
// token passed through unchanged; a wallee JWT has alg HS256 (checked
// independently with encoding/json), a bounded sub and covers exactly
// header.payload. Then the property that matters: the same header and
// claims signed with secretA verify with secretA for the method and path
// they claim, and fail with another secret, another method or another path.
func FuzzWalleeJWT(f *testing.F) {
	f.Add(knownJWT)
	key := b64dec(secretA)
	f.Add(makeJWT(`{"alg":"HS256","typ":"JWT","ver":1}`, walleeClaims("4711", testNow.Unix(), "POST", "/api/v2.0/x?q=a%20b"), key))
	f.Add(makeJWT(`{"alg":"HS256","type":"JWT","ver":"1"}`, `{"sub":4711,"iat":1741964966.5,"exp":1741965966,"requestPath":"/a","requestMethod":"GET","jti":"n1"}`, key))
	f.Add(makeJWT(`{"alg":"RS256","typ":"JWT","kid":"kg-1"}`, `{"sub":"7"}`, []byte("k")))
	f.Add(makeJWT(`{"alg":"none"}`, `{}`, key))
	d := Detector{IsTokenKID: func(kid string) bool { return kid == "kg-1" }}
	f.Fuzz(func(t *testing.T, tok string) {
		var (
			c   Credential
			ok  bool
			err error
		)
		checkAllocs(t, "parseBearerJWT", len(tok), func() { noKnownPanic(t, func() { c, ok, err = d.parseBearerJWT(tok) }) })
		if err != nil {
			wantSentinel(t, "parseBearerJWT", err, ErrMalformed)
			return
		}
		if !ok {
			t.Fatal("every scheme is on, yet the token was passed over")
		}
		hp, pp, _, _ := splitJWT(tok)
		raw, _ := base64.RawURLEncoding.DecodeString(hp)
		claims, _ := base64.RawURLEncoding.DecodeString(pp)
		parts := [][]byte{raw, claims}
		if c.Scheme == AccessToken {
			parts = parts[:1] // the token verifier reads the claims, later
		}
		for _, part := range parts {
			if !json.Valid(part) {
				// Once a stray '}' or ']' after the value got through
				// (testdata/fuzz/FuzzWalleeJWT/168d220e7f6b0bbb, fixed in e207d7a).
				t.Fatalf("accepted JWT part %q is not JSON", part)
			}
		}
		var hdr map[string]any
		if json.Unmarshal(raw, &hdr) != nil {
			t.Fatalf("accepted header %q is not a JSON object", raw)
		}
		// encoding/json matches member names case-insensitively, last one
		// wins; keygate reads the header with it, so compare the same way.
		member := func(name string) any {
			var v any
			for k, x := range hdr {
				if strings.EqualFold(k, name) {
					v = x
				}
			}
			return v
		}
		if c.Scheme == AccessToken {
			if c.Token != tok || member("kid") == nil {
				t.Fatalf("access token %q kid %v", c.Token, member("kid"))
			}
			return
		}
		j := c.sig.(*walleeJWT)
		if c.Scheme != WalleeJWT || member("alg") == nil || c.UserID == "" || len(c.UserID) > maxUserIDLen || j.signingInput != hp+"."+pp {
			t.Fatalf("wallee jwt %v alg %v user %q", c.Scheme, member("alg"), c.UserID)
		}
		if !strings.HasPrefix(j.path, "/") || len(j.path) > maxTargetLen || strings.ContainsAny(j.path, "#") {
			return // not a target a request can carry
		}
		// Re-sign header.payload with secretA and verify it against the
		// request it claims.
		signed := j.signingInput + "." + base64.RawURLEncoding.EncodeToString(hmac256(b64dec(secretA), j.signingInput))
		if len("Bearer "+signed) > maxHeaderLen {
			return
		}
		verify := func(method, target string, secrets []Secret) error {
			r := &http.Request{Method: method, URL: &url.URL{Path: "/"}, Host: "example.com", Header: http.Header{}, RequestURI: target}
			r.Header.Set("Authorization", "Bearer "+signed)
			c, err := (&Detector{}).Detect(r)
			if err != nil {
				return err
			}
			_, err = c.Verify(r, secrets, VerifyOptions{Now: time.Unix(j.iat, 0)})
			return err
		}
		err = verify(j.method, j.path, twoSecrets)
		if j.exp != 0 && j.exp < j.iat {
			if !errors.Is(err, ErrStale) {
				t.Fatalf("expired token: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("re-signed token does not verify for %s %q: %v", j.method, j.path, err)
		}
		if err := verify(j.method, j.path, []Secret{{ID: "sc", Value: secretC}}); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("other secret: %v", err)
		}
		if err := verify(j.method+"X", j.path, twoSecrets); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("other method: %v", err)
		}
		if err := verify(j.method, "/zz"+j.path, twoSecrets); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("other path: %v", err)
		}
	})
}

// FuzzDigest checks Content-Digest (RFC 9530) and the legacy Digest header
// against a fuzzed body, sent with a Content-Length or chunked. Errors wrap
// ErrMalformed, ErrBadSignature or ErrBodyTooLarge. Whatever the outcome,
// the upstream still reads the whole body, and the check holds at most
// maxBody+1 bytes of the shared budget. A header that passes for a body
// fails for any other body (so a pass means a real SHA-256/SHA-512 match),
// and the correct header for the body always passes. Allocation is linear
// in header and body.
func FuzzDigest(f *testing.F) {
	b := []byte(`{"hello": "world"}`)
	f.Add("sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:", b, false, false)
	f.Add("sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, md5=:AAAA:", b, false, true)
	f.Add(bodyDigest(string(b))+", MD5=abc", b, true, false)
	f.Add("SHA-512=", []byte{}, true, true)
	const maxBody = 4096
	f.Fuzz(func(t *testing.T, header string, body []byte, legacy, chunked bool) {
		check, name := checkContentDigest, "Content-Digest"
		if legacy {
			check, name = checkDigestHeader, "Digest"
		}
		run := func(header string, body []byte) error {
			r := &http.Request{Method: "POST", Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
			if chunked {
				r.ContentLength = -1
			}
			r.Header.Set(name, header)
			budget := NewBodyBudget(1<<20, 0)
			hold := budget.Hold(netip.Addr{})
			defer hold.Release()
			e := &env{maxBody: maxBody, hold: hold}
			var err error
			checkAllocs(t, name, len(header)+len(body), func() { err = check(r, e) })
			if hold.Held() > maxBody+1 || budget.Used() != hold.Held() {
				t.Fatalf("holds %d bytes (budget says %d) for a %d-byte limit", hold.Held(), budget.Used(), maxBody)
			}
			got, rerr := io.ReadAll(r.Body)
			if rerr != nil || !bytes.Equal(got, body) {
				t.Fatalf("upstream reads %d of %d body bytes after the check (%v)", len(got), len(body), rerr)
			}
			return err
		}
		err := run(header, body)
		if err != nil {
			wantSentinel(t, name, err, ErrMalformed, ErrBadSignature, ErrBodyTooLarge)
		} else {
			if len(body) > maxBody {
				t.Fatalf("passed a body of %d bytes over the %d limit", len(body), maxBody)
			}
			err := run(header, append(bytes.Clone(body), 'x'))
			if !errors.Is(err, ErrBadSignature) && !(len(body) == maxBody && errors.Is(err, ErrBodyTooLarge)) {
				t.Fatalf("%s %q passes for two bodies (%v)", name, header, err)
			}
		}
		if len(body) > maxBody {
			return
		}
		s256, s512 := sha256.Sum256(body), sha512.Sum512(body)
		good := "sha-256=:" + base64.StdEncoding.EncodeToString(s256[:]) + ":, sha-512=:" + base64.StdEncoding.EncodeToString(s512[:]) + ":"
		if legacy {
			good = "SHA-256=" + base64.StdEncoding.EncodeToString(s256[:]) + ",sha-512=" + base64.StdEncoding.EncodeToString(s512[:])
		}
		if err := run(good, body); err != nil {
			t.Fatalf("correct %s refused: %v", name, err)
		}
	})
}
