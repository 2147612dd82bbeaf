package module_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/internal/testredis"
)

// A reqSigner signs req (whose body is body) in place as user with secret,
// the base64 string keygate issued.
type reqSigner func(t testing.TB, req *http.Request, user, secret string, body []byte)

// signedScheme is one signed scheme under test: how to sign and the
// X-Auth-Scheme keygate reports for it.
type signedScheme struct {
	label string // subtest name
	name  string // X-Auth-Scheme
	sign  reqSigner
}

var signedSchemes = []signedScheme{
	{"wallee_mac", "wallee_mac", signWalleeMAC},
	{"wallee_jwt", "wallee_jwt", signWalleeJWT},
	{"cavage_hs2019", "http_signature", signCavageHS2019},
	{"rfc9421", "http_signature", signRFC9421},
	{"sigv4", "sigv4", signSigV4},
}

func signHMAC512(key []byte, msg string) []byte {
	m := hmac.New(sha512.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func signHMAC256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func decodeSecret(t testing.TB, secret string) []byte {
	t.Helper()
	k, err := base64.StdEncoding.DecodeString(secret)
	if err != nil || len(k) != 32 {
		t.Fatalf("issued secret is not base64 of 32 bytes (len %d): %v", len(k), err)
	}
	return k
}

// signWalleeMAC signs like the wallee 4.x SDKs: HMAC-SHA512 keyed with the
// decoded secret over "1|user|ts|METHOD|path?query".
func signWalleeMAC(t testing.TB, req *http.Request, user, secret string, _ []byte) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	data := strings.Join([]string{"1", user, ts, req.Method, req.URL.RequestURI()}, "|")
	req.Header.Set("x-mac-version", "1")
	req.Header.Set("x-mac-userid", user)
	req.Header.Set("x-mac-timestamp", ts)
	req.Header.Set("x-mac-value", base64.StdEncoding.EncodeToString(signHMAC512(decodeSecret(t, secret), data)))
}

// signWalleeJWT signs like the wallee 5.x SDKs: an HS256 JWT keyed with the
// decoded secret, header {"alg":"HS256","typ":"JWT","ver":1}.
func signWalleeJWT(t testing.TB, req *http.Request, user, secret string, _ []byte) {
	enc := base64.RawURLEncoding
	hdr, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "JWT", "ver": 1})
	claims, _ := json.Marshal(map[string]any{
		"sub": user, "iat": time.Now().Unix(),
		"requestPath": req.URL.RequestURI(), "requestMethod": req.Method,
	})
	in := enc.EncodeToString(hdr) + "." + enc.EncodeToString(claims)
	req.Header.Set("Authorization", "Bearer "+in+"."+enc.EncodeToString(signHMAC256(decodeSecret(t, secret), in)))
}

// signCavageHS2019 signs per draft-cavage-12 with hs2019 (HMAC-SHA512 keyed
// with the secret string as issued) over (request-target), (created), host
// and, with a body, digest.
func signCavageHS2019(_ testing.TB, req *http.Request, user, secret string, body []byte) {
	created := time.Now().Unix()
	headers := []string{"(request-target)", "(created)", "host"}
	lines := []string{
		"(request-target): " + strings.ToLower(req.Method) + " " + req.URL.RequestURI(),
		"(created): " + strconv.FormatInt(created, 10),
		"host: " + req.URL.Host,
	}
	if body != nil {
		sum := sha256.Sum256(body)
		req.Header.Set("Digest", "SHA-256="+base64.StdEncoding.EncodeToString(sum[:]))
		headers = append(headers, "digest")
		lines = append(lines, "digest: "+req.Header.Get("Digest"))
	}
	sig := base64.StdEncoding.EncodeToString(signHMAC512([]byte(secret), strings.Join(lines, "\n")))
	req.Header.Set("Authorization", fmt.Sprintf(`Signature keyId="%s",algorithm="hs2019",created=%d,headers="%s",signature="%s"`,
		user, created, strings.Join(headers, " "), sig))
}

// signRFC9421 signs per RFC 9421 with hmac-sha256 (keyed with the secret
// string as issued) over @method, @authority, @path, @query and, with a
// body, content-digest (RFC 9530 sha-256).
func signRFC9421(_ testing.TB, req *http.Request, user, secret string, body []byte) {
	comps := []string{"@method", "@authority", "@path", "@query"}
	vals := []string{req.Method, req.URL.Host, req.URL.EscapedPath(), "?" + req.URL.RawQuery}
	if body != nil {
		sum := sha256.Sum256(body)
		req.Header.Set("Content-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(sum[:])+":")
		comps = append(comps, "content-digest")
		vals = append(vals, req.Header.Get("Content-Digest"))
	}
	params := fmt.Sprintf(`("%s");created=%d;keyid="%s";alg="hmac-sha256"`, strings.Join(comps, `" "`), time.Now().Unix(), user)
	var base strings.Builder
	for i, c := range comps {
		fmt.Fprintf(&base, "%q: %s\n", c, vals[i])
	}
	base.WriteString(`"@signature-params": ` + params)
	req.Header.Set("Signature-Input", "sig1="+params)
	req.Header.Set("Signature", "sig1=:"+base64.StdEncoding.EncodeToString(signHMAC256([]byte(secret), base.String()))+":")
}

// signSigV4 signs with the AWS SDK for Go v2 signer (header form): access
// key id = user id, secret access key = the secret string as issued. It
// declares the payload hash in X-Amz-Content-Sha256 (signed), which lets
// keygate check the signature before it reads the body.
func signSigV4(t testing.TB, req *http.Request, user, secret string, body []byte) {
	t.Helper()
	sum := sha256.Sum256(body)
	req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	signSigV4Undeclared(t, req, user, secret, body)
}

// signSigV4Undeclared signs like signSigV4 without X-Amz-Content-Sha256,
// as the SDK's signer does outside S3: keygate must read the body to check
// the signature, which routes do only with sigv4_undeclared_payload read.
func signSigV4Undeclared(t testing.TB, req *http.Request, user, secret string, body []byte) {
	t.Helper()
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: user, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "execute-api", "eu-central-1", time.Now()); err != nil {
		t.Fatal(err)
	}
}

// signedReq builds a request to the gateway, signed by s.
func (e *env) signedReq(s reqSigner, method, path string, body []byte, user, secret string) *http.Request {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.gateway+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	s(e.t, req, user, secret, body)
	return req
}

// sendSigned sends req (again, when called twice: the body is replayable).
func (e *env) sendSigned(req *http.Request) *http.Response {
	e.t.Helper()
	if req.GetBody != nil {
		req.Body, _ = req.GetBody()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// expectPass asserts a 200 from the upstream with the identity of user,
// authenticated by scheme with secret secretID.
func (e *env) expectPass(resp *http.Response, user, scheme, secretID string) {
	e.t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
	}
	_, h := e.up.snapshot()
	for k, v := range map[string]string{"X-Auth-User-Id": user, "X-Auth-Scheme": scheme, "X-Auth-Key-Id": secretID, "X-Auth-Tenant": "acme", "X-Auth-User-Type": "APPLICATION"} {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			e.t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Authorization", "X-Mac-Value", "Signature", "Signature-Input"} {
		if h.Get(k) != "" {
			e.t.Errorf("credential header %s forwarded", k)
		}
	}
}

// appUser creates an APPLICATION user (generated id) with an ACTIVE
// MEMBER permission in tenant.
func (e *env) appUser(tenant, name string) string {
	e.t.Helper()
	var u struct {
		ID string `json:"id"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users", map[string]any{
		"name": name, "type": "APPLICATION", "role": "MEMBER", "primaryTenant": tenant,
	}, http.StatusCreated), &u)
	if u.ID == "" {
		e.t.Fatal("no user id in create response")
	}
	e.api(http.MethodPost, "/v1/permissions", map[string]any{
		"user": map[string]any{"id": u.ID}, "workspace": map[string]any{"id": tenant},
		"role": "MEMBER", "status": "ACTIVE",
	}, http.StatusOK)
	return u.ID
}

// newSecret issues a signing secret for user and returns its id and value.
func (e *env) newSecret(user, name string) (id, secret string) {
	e.t.Helper()
	var s struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	json.Unmarshal(e.api(http.MethodPost, "/v1/users/"+user+"/secrets", map[string]any{"name": name}, http.StatusCreated), &s)
	if s.ID == "" || s.Secret == "" {
		e.t.Fatal("no secret in create response")
	}
	return s.ID, s.Secret
}

// deactivateSecret sets a secret INACTIVE through the admin API.
func (e *env) deactivateSecret(user, id string) {
	e.t.Helper()
	e.api(http.MethodPatch, "/v1/users/"+user+"/secrets/"+id, map[string]any{"status": "INACTIVE"}, http.StatusOK)
}

// TestSignedSchemes runs every signed scheme through a real keygate on the
// embedded store (in-process replay cache).
func TestSignedSchemes(t *testing.T) {
	testSignedSchemes(t, startEnv(t, "", "replay_protection on"))
}

// signedRedisGlobal is the global option for a Redis store under prefix.
func signedRedisGlobal(addr, prefix string) string {
	return fmt.Sprintf(`keygate {
		store redis {
			address %s
			prefix %s
			timeout 2s
		}
		master_key a2V5Z2F0ZSBzaWduZWQtcmVxdWVzdCB0ZXN0IGtleSE=
	}`, addr, prefix)
}

// TestSignedSchemesRedis runs the same on the Redis store (replay guard in
// Redis), then checks that deactivating a secret through one node's admin
// API refuses it on a second node well under a second later.
func TestSignedSchemesRedis(t *testing.T) {
	_, prefix := testredis.Client(t)
	global := signedRedisGlobal(testredis.Options(t).Addr, prefix)
	e := startEnv(t, global, "replay_protection on")
	testSignedSchemes(t, e)

	// A second node on the same store.
	up2 := newUpstream(t)
	gw2 := testcaddy.FreePort(t)
	e2 := *e
	e2.up = up2
	e2.gateway = fmt.Sprintf("http://127.0.0.1:%d", gw2)
	e2.srv = testcaddy.Start(t, gatewayCaddyfile(global, "replay_protection on", gw2, testcaddy.FreePort(t), up2.addr()),
		testcaddy.Options{Wait: []string{e2.gateway}})

	user := e.appUser("acme", "two-nodes")
	idA, secA := e.newSecret(user, "a")
	idB, secB := e.newSecret(user, "b")
	// Both nodes have A cached and accept it. A POST replayed on the other
	// node is refused: the replay guard is shared (wallee MAC does not
	// sign the host, so only the guard can refuse it).
	e.expectPass(e.sendSigned(e.signedReq(signWalleeMAC, http.MethodGet, "/x", nil, user, secA)), user, "wallee_mac", idA)
	e2.expectPass(e2.sendSigned(e2.signedReq(signWalleeMAC, http.MethodGet, "/x", nil, user, secA)), user, "wallee_mac", idA)
	post := e.signedReq(signWalleeMAC, http.MethodPost, "/x", []byte(`{"n":1}`), user, secB)
	e.expectPass(e.sendSigned(post), user, "wallee_mac", idB)
	post.URL.Host = strings.TrimPrefix(e2.gateway, "http://")
	post.Host = ""
	expectProblem(t, e2.sendSigned(post), http.StatusUnauthorized)
	e.deactivateSecret(user, idA)
	deadline := time.Now().Add(time.Second)
	for {
		resp := e2.sendSigned(e2.signedReq(signWalleeMAC, http.MethodGet, "/x", nil, user, secA))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deactivated secret still accepted on the other node after 1s: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e2.expectPass(e2.sendSigned(e2.signedReq(signWalleeMAC, http.MethodGet, "/x", nil, user, secB)), user, "wallee_mac", idB)
}

func testSignedSchemes(t *testing.T, e *env) {
	user := e.appUser("acme", "shop-app")
	idA, secA := e.newSecret(user, "a")
	idB, secB := e.newSecret(user, "b")
	// A third live secret is refused.
	e.api(http.MethodPost, "/v1/users/"+user+"/secrets", map[string]any{"name": "c"}, http.StatusConflict)

	body := []byte(`{"amount":42,"currency":"CHF"}`)
	for _, s := range signedSchemes {
		t.Run(s.label, func(t *testing.T) {
			e := *e
			e.t = t

			// Either live secret passes, on GET with a query and on POST with a body.
			e.expectPass(e.sendSigned(e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, secA)), user, s.name, idA)
			e.expectPass(e.sendSigned(e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, secB)), user, s.name, idB)
			e.expectPass(e.sendSigned(e.signedReq(s.sign, http.MethodPost, "/api/transaction/create?spaceId=405", body, user, secA)), user, s.name, idA)

			// Two identical GETs (same signature, same second) both pass.
			get := e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=18", nil, user, secB)
			e.expectPass(e.sendSigned(get), user, s.name, idB)
			e.expectPass(e.sendSigned(get), user, s.name, idB)

			// A POST is single-use: the replay is refused.
			post := e.signedReq(s.sign, http.MethodPost, "/api/transaction/create?spaceId=405", body, user, secB)
			e.expectPass(e.sendSigned(post), user, s.name, idB)
			before, _ := e.up.snapshot()
			expectProblem(t, e.sendSigned(post), http.StatusUnauthorized)

			// Tampered requests are refused: path, query, method, secret,
			// claimed user, and the body where the scheme covers it (stale
			// timestamps are covered by the unit tests in auth/).
			tamper := map[string]func() *http.Request{
				"path": func() *http.Request {
					r := e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, secA)
					r.URL.Path = "/api/transaction/delete"
					return r
				},
				"query": func() *http.Request {
					r := e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, secA)
					r.URL.RawQuery = "spaceId=405&id=18"
					return r
				},
				"method": func() *http.Request {
					r := e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, secA)
					r.Method = http.MethodDelete
					return r
				},
				"wrong secret": func() *http.Request {
					other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
					return e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, other)
				},
				"other user": func() *http.Request {
					return e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, e.adminID, secA)
				},
			}
			if s.name == "http_signature" || s.name == "sigv4" {
				tamper["body"] = func() *http.Request {
					r := e.signedReq(s.sign, http.MethodPost, "/api/transaction/create?spaceId=405", body, user, secA)
					tampered := bytes.Replace(body, []byte("42"), []byte("43"), 1)
					r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tampered)), nil }
					return r
				}
			}
			for name, mk := range tamper {
				t.Run(name, func(t *testing.T) {
					expectProblem(t, e.sendSigned(mk()), http.StatusUnauthorized)
				})
			}
			if after, _ := e.up.snapshot(); after != before {
				t.Fatalf("upstream called %d times for refused requests", after-before)
			}
		})
	}

	// Rotation: deactivate A; A fails at once for every scheme, B passes.
	e.deactivateSecret(user, idA)
	for _, s := range signedSchemes {
		t.Run("rotated/"+s.label, func(t *testing.T) {
			e := *e
			e.t = t
			expectProblem(t, e.sendSigned(e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, secA)), http.StatusUnauthorized)
			e.expectPass(e.sendSigned(e.signedReq(s.sign, http.MethodGet, "/api/transaction/read?spaceId=405&id=17", nil, user, secB)), user, s.name, idB)
		})
	}
	// With A inactive a new secret may be issued, and works at once.
	idC, secC := e.newSecret(user, "c")
	e.expectPass(e.sendSigned(e.signedReq(signWalleeMAC, http.MethodGet, "/api/x", nil, user, secC)), user, "wallee_mac", idC)
	e.api(http.MethodPost, "/v1/users/"+user+"/secrets", map[string]any{"name": "d"}, http.StatusConflict)
}
