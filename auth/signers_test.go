package auth

// Test-side signers, written the way the client libraries build their
// signatures and kept apart from the verifier's code paths.

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

var (
	// Two secrets as keygate issues them: base64 of 32 bytes.
	secretA = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789ABCDEF"))
	secretB = base64.StdEncoding.EncodeToString([]byte("fedcba9876543210FEDCBA9876543210"))
	secretC = base64.StdEncoding.EncodeToString([]byte("not-the-right-secret-for-anybody"))

	testNow = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
)

func b64dec(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func hmac256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func hmac512(key []byte, msg string) []byte {
	m := hmac.New(sha512.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// signWalleeMAC sets the x-mac headers as the wallee SDKs do; signed is the
// path?query string the SDK signs (it may differ from what it sends).
func signWalleeMAC(r *http.Request, userID, secret string, ts int64, signed string) {
	data := strings.Join([]string{"1", userID, strconv.FormatInt(ts, 10), r.Method, signed}, "|")
	r.Header.Set("x-mac-version", "1")
	r.Header.Set("x-mac-userid", userID)
	r.Header.Set("x-mac-timestamp", strconv.FormatInt(ts, 10))
	r.Header.Set("x-mac-value", base64.StdEncoding.EncodeToString(hmac512(b64dec(secret), data)))
}

// jsEncodeURIComponent mirrors JavaScript's encodeURIComponent.
func jsEncodeURIComponent(s string) string {
	const keep = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"
	var b strings.Builder
	for _, c := range []byte(s) {
		if strings.IndexByte(keep, c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
	}
	return b.String()
}

// makeJWT builds a compact HS256 JWS from literal JSON parts.
func makeJWT(headerJSON, claimsJSON string, key []byte) string {
	enc := base64.RawURLEncoding
	in := enc.EncodeToString([]byte(headerJSON)) + "." + enc.EncodeToString([]byte(claimsJSON))
	return in + "." + enc.EncodeToString(hmac256(key, in))
}

func walleeClaims(sub string, iat int64, method, path string) string {
	return `{"sub":"` + sub + `","iat":` + strconv.FormatInt(iat, 10) +
		`,"requestPath":"` + path + `","requestMethod":"` + method + `"}`
}

// signCavage builds a draft-cavage-12 signing string and returns the
// parameter list (for Authorization: Signature … or the Signature header).
func signCavage(r *http.Request, keyID, alg string, headers []string, secret string, created, expires int64) string {
	var lines []string
	for _, h := range headers {
		switch h {
		case "(request-target)":
			lines = append(lines, h+": "+strings.ToLower(r.Method)+" "+r.RequestURI)
		case "(created)":
			lines = append(lines, h+": "+strconv.FormatInt(created, 10))
		case "(expires)":
			lines = append(lines, h+": "+strconv.FormatInt(expires, 10))
		case "host":
			lines = append(lines, "host: "+r.Host)
		default:
			lines = append(lines, h+": "+strings.Join(r.Header.Values(h), ", "))
		}
	}
	str := strings.Join(lines, "\n")
	var sig []byte
	if alg == "hmac-sha256" {
		sig = hmac256([]byte(secret), str)
	} else {
		sig = hmac512([]byte(secret), str)
	}
	p := `keyId="` + keyID + `",algorithm="` + alg + `"`
	if created != 0 {
		p += `,created=` + strconv.FormatInt(created, 10)
	}
	if expires != 0 {
		p += `,expires=` + strconv.FormatInt(expires, 10)
	}
	return p + `,headers="` + strings.Join(headers, " ") + `",signature="` + base64.StdEncoding.EncodeToString(sig) + `"`
}

// sign9421 signs r per RFC 9421 with hmac-sha256 over the given components
// and sets Signature-Input and Signature under label. params is the
// serialized parameter string, e.g. `;created=1;keyid="u"`.
func sign9421(r *http.Request, label string, components []string, params string, key []byte) {
	var b strings.Builder
	u, _ := url.ParseRequestURI(r.RequestURI)
	for _, c := range components {
		var v string
		switch c {
		case "@method":
			v = r.Method
		case "@authority":
			v = strings.ToLower(r.Host)
		case "@path":
			v = u.EscapedPath()
		case "@query":
			v = "?" + u.RawQuery
		case "@target-uri":
			v = "http://" + r.Host + r.RequestURI
		case "@request-target":
			v = r.RequestURI
		case "@scheme":
			v = "http"
		default:
			v = strings.Join(r.Header.Values(c), ", ")
		}
		b.WriteString(`"` + c + `": ` + v + "\n")
	}
	list := `("` + strings.Join(components, `" "`) + `")` + params
	if len(components) == 0 {
		list = "()" + params
	}
	b.WriteString(`"@signature-params": ` + list)
	sig := hmac256(key, b.String())
	r.Header.Set("Signature-Input", label+"="+list)
	r.Header.Set("Signature", label+"=:"+base64.StdEncoding.EncodeToString(sig)+":")
}

// awsEscape is the SDKs' RFC 3986 encoder.
func awsEscape(s string, keepSlash bool) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
			b.WriteByte(c)
		case c == '/' && keepSlash:
			b.WriteByte(c)
		default:
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
	}
	return b.String()
}

type v4Opts struct {
	akid, secret, region, service string
	at                            time.Time
	payloadHash                   string // "" = hash of body (header form) / UNSIGNED-PAYLOAD (presigned)
	body                          string
	presign                       bool
	expires                       int
	signed                        []string // lowercase header names besides host (and x-amz-date in header form)
	s3                            bool     // single-encode the path
}

// signV4 signs r the way the AWS SDKs do: rawPath is the path as the SDK
// sends it (already escaped once); the canonical URI escapes it again.
func signV4(r *http.Request, o v4Opts) {
	amzDate := o.at.UTC().Format("20060102T150405Z")
	date := amzDate[:8]
	scope := date + "/" + o.region + "/" + o.service + "/aws4_request"
	hdrs := append([]string{"host"}, o.signed...)
	if !o.presign {
		r.Header.Set("X-Amz-Date", amzDate)
		hdrs = append(hdrs, "x-amz-date")
	}
	sort.Strings(hdrs)
	signedHeaders := strings.Join(hdrs, ";")
	q, _ := url.ParseQuery(r.URL.RawQuery)
	if o.presign {
		q.Set("X-Amz-Algorithm", "AWS4-HMAC-SHA256")
		q.Set("X-Amz-Credential", o.akid+"/"+scope)
		q.Set("X-Amz-Date", amzDate)
		q.Set("X-Amz-Expires", strconv.Itoa(o.expires))
		q.Set("X-Amz-SignedHeaders", signedHeaders)
	}
	var keys []string
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cq []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			cq = append(cq, awsEscape(k, false)+"="+awsEscape(v, false))
		}
	}
	canonQuery := strings.Join(cq, "&")
	var ch strings.Builder
	for _, h := range hdrs {
		v := r.Header.Get(h)
		if h == "host" {
			v = r.Host
		}
		ch.WriteString(h + ":" + strings.Join(strings.Fields(v), " ") + "\n")
	}
	payload := o.payloadHash
	if payload == "" {
		if o.presign {
			payload = "UNSIGNED-PAYLOAD"
		} else {
			s := sha256.Sum256([]byte(o.body))
			payload = hex.EncodeToString(s[:])
		}
	}
	canonURI := awsEscape(r.URL.EscapedPath(), true)
	if o.s3 {
		canonURI = awsEscape(r.URL.Path, true)
	}
	creq := strings.Join([]string{r.Method, canonURI, canonQuery, ch.String(), signedHeaders, payload}, "\n")
	ch2 := sha256.Sum256([]byte(creq))
	sts := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(ch2[:])
	k := hmac256([]byte("AWS4"+o.secret), date)
	k = hmac256(k, o.region)
	k = hmac256(k, o.service)
	k = hmac256(k, "aws4_request")
	sig := hex.EncodeToString(hmac256(k, sts))
	if o.presign {
		r.URL.RawQuery = q.Encode() + "&X-Amz-Signature=" + sig
		r.RequestURI = r.URL.RequestURI()
		return
	}
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+o.akid+"/"+scope+", SignedHeaders="+signedHeaders+", Signature="+sig)
}
