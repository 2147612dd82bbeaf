package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/openapicheck"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/filestore"
	"github.com/keygate/keygate/keys/redisstore"
)

// clock is a settable time source shared by the store and the handler.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type storeFactory func(t testing.TB, now func() time.Time) keys.Store

func newFileStore(t testing.TB, now func() time.Time) keys.Store {
	t.Helper()
	s, err := filestore.NewStore(filepath.Join(t.TempDir(), "keygate.db"), filestore.Options{}, keys.StoreOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newRedisStore(t testing.TB, now func() time.Time) keys.Store {
	t.Helper()
	client, prefix := testredis.Client(t)
	s := redisstore.NewStore(client, redisstore.Options{Prefix: prefix, Timeout: 2 * time.Second}, keys.StoreOptions{Now: now})
	return s
}

// env is a handler over a fresh store with a superadmin, two tenants (a,
// b) and an admin in each.
type env struct {
	t      testing.TB
	clk    *clock
	store  keys.Store
	sealer *keys.Sealer
	h      *Handler

	rootKey   string // superadmin (tenant root)
	rootID    string
	adminA    string // key of tenant a's admin
	adminAID  string
	adminB    string // key of tenant b's admin
	adminBID  string
	memberA   string // key of a MEMBER of tenant a
	memberAID string
}

func newEnv(t testing.TB, factory storeFactory) *env {
	t.Helper()
	return newEnvPolicy(t, factory, nil)
}

// allCredentials lets every user type hold every credential, for tests in
// which one user carries keys and secrets alike.
var allCredentials = keys.CredentialPolicy{
	keys.UserTechnical:   keys.CredentialKinds,
	keys.UserService:     keys.CredentialKinds,
	keys.UserApplication: keys.CredentialKinds,
}

// newEnvPolicy is newEnv with a credential policy (nil: the default).
func newEnvPolicy(t testing.TB, factory storeFactory, policy keys.CredentialPolicy) *env {
	t.Helper()
	clk := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	e := &env{t: t, clk: clk}
	e.store = factory(t, clk.Now)
	sealer, err := keys.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	e.sealer = sealer
	e.h = New(Config{Store: e.store, Hasher: keys.NewHasher([]byte("pepper")), Sealer: sealer, Now: clk.Now, Credentials: policy})

	res := e.trusted("POST", "/v1/bootstrap", map[string]any{"tenant": "root", "user": "ops"})
	res.want(201)
	var boot BootstrapResult
	res.data(&boot)
	e.rootKey, e.rootID = boot.Key.Key, boot.User.ID
	for _, tn := range []string{"a", "b"} {
		e.do("POST", "/v1/tenants", e.rootKey, map[string]any{"id": tn, "name": "Tenant " + tn}).want(201)
	}
	e.adminAID, e.adminA = e.userWithKey(e.rootKey, "a", "admin-a", "ADMIN")
	e.adminBID, e.adminB = e.userWithKey(e.rootKey, "b", "admin-b", "ADMIN")
	e.memberAID, e.memberA = e.userWithKey(e.rootKey, "a", "member-a", "MEMBER")
	return e
}

// userWithKey creates a user in tenant with role and a key for it.
func (e *env) userWithKey(key, tenant, name, role string) (id, plaintext string) {
	e.t.Helper()
	var u keys.User
	e.do("POST", "/v1/users", key, map[string]any{"name": name, "primaryTenant": tenant, "role": role}).want(201).data(&u)
	var k KeyView
	e.do("POST", "/v1/users/"+u.ID+"/keys", key, map[string]any{
		"name": "main", "expiresAt": e.clk.Now().Add(365 * 24 * time.Hour).Format(time.RFC3339),
	}).want(201).data(&k)
	if k.Key == "" {
		e.t.Fatal("created key has no plaintext")
	}
	return u.ID, k.Key
}

type result struct {
	t      testing.TB
	method string
	path   string
	code   int
	header http.Header
	body   []byte
}

func (r *result) want(code int) *result {
	r.t.Helper()
	if r.code != code {
		r.t.Fatalf("%s %s: status %d, want %d: %s", r.method, r.path, r.code, code, r.body)
	}
	return r
}

// wantOneOf fails unless the status is one of codes.
func (r *result) wantOneOf(codes ...int) *result {
	r.t.Helper()
	if !slices.Contains(codes, r.code) {
		r.t.Fatalf("%s %s: status %d, want one of %v: %s", r.method, r.path, r.code, codes, r.body)
	}
	return r
}

// data decodes the envelope's data into v.
func (r *result) data(v any) *result {
	r.t.Helper()
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.body, &env); err != nil {
		r.t.Fatalf("%s %s: decoding envelope: %v: %s", r.method, r.path, err, r.body)
	}
	if env.Status != "OK" {
		r.t.Fatalf("%s %s: envelope status %q", r.method, r.path, env.Status)
	}
	if err := json.Unmarshal(env.Data, v); err != nil {
		r.t.Fatalf("%s %s: decoding data: %v: %s", r.method, r.path, err, env.Data)
	}
	return r
}

func (r *result) envelope() Envelope {
	r.t.Helper()
	var e Envelope
	if err := json.Unmarshal(r.body, &e); err != nil {
		r.t.Fatalf("decoding envelope: %v", err)
	}
	return e
}

func (r *result) problem() Problem {
	r.t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		r.t.Fatalf("%s %s: content type %q, want problem+json: %s", r.method, r.path, ct, r.body)
	}
	var p Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		r.t.Fatalf("decoding problem: %v", err)
	}
	if p.Status != r.code || !strings.HasPrefix(p.Type, ProblemTypeBase) {
		r.t.Fatalf("problem %+v does not match status %d", p, r.code)
	}
	return p
}

// wantProblem checks the status, the problem shape and, when field is not
// empty, that errors names field.
func (r *result) wantProblem(code int, field string) Problem {
	r.t.Helper()
	r.want(code)
	p := r.problem()
	if field != "" {
		found := false
		for _, f := range p.Errors {
			if f.Field == field {
				found = true
			}
		}
		if !found {
			r.t.Fatalf("%s %s: problem errors %v do not name %q", r.method, r.path, p.Errors, field)
		}
	}
	return p
}

// req builds a request. body may be nil, a string or []byte (sent raw), or
// anything else (JSON-encoded). hdr are header name/value pairs.
func req(method, path, key string, body any, hdr ...string) *http.Request {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(j)
	}
	r := httptest.NewRequest(method, path, rd)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	return r
}

func (e *env) serve(r *http.Request) *result { return e.serveAs(e.t, r) }

// serveAs is serve for t (a fuzz target's, whose env belongs to the *testing.F).
func (e *env) serveAs(t testing.TB, r *http.Request) *result {
	w := httptest.NewRecorder()
	checked(t, e.h).ServeHTTP(w, r)
	return &result{t: t, method: r.Method, path: r.URL.Path, code: w.Code, header: w.Header(), body: w.Body.Bytes()}
}

// apiSpec is the API's OpenAPI document, loaded and validated by
// kin-openapi (internal/openapicheck).
var apiSpec = sync.OnceValues(func() (*openapicheck.Spec, error) { return openapicheck.Load(OpenAPI()) })

// checked wraps h so that every answer it gives is checked against the
// OpenAPI document (status, schema, no undocumented member): a route that
// drifts from its documentation fails the test that called it.
func checked(t testing.TB, h http.Handler) http.Handler {
	t.Helper()
	spec, err := apiSpec()
	if err != nil {
		t.Fatal(err)
	}
	return spec.Handler(h, func(err error) {
		t.Helper()
		t.Errorf("the answer does not match the OpenAPI document: %v", err)
	})
}

func (e *env) do(method, path, key string, body any, hdr ...string) *result {
	return e.serve(req(method, path, key, body, hdr...))
}

func (e *env) trusted(method, path string, body any, hdr ...string) *result {
	r := req(method, path, "", body, hdr...)
	return e.serve(r.WithContext(WithTrustedCaller(context.Background(), "test-cli")))
}

// getUser returns a user as the superadmin sees it.
func (e *env) getUser(id string) (keys.User, string) {
	e.t.Helper()
	var u keys.User
	res := e.do("GET", "/v1/users/"+id, e.rootKey, nil).want(200).data(&u)
	return u, res.header.Get("ETag")
}

func (e *env) createUser(key string, body map[string]any) keys.User {
	e.t.Helper()
	var u keys.User
	e.do("POST", "/v1/users", key, body).want(201).data(&u)
	return u
}

func (e *env) createKey(key, userID, name string) KeyView {
	e.t.Helper()
	var k KeyView
	e.do("POST", "/v1/users/"+userID+"/keys", key, map[string]any{
		"name": name, "expiresAt": e.clk.Now().Add(48 * time.Hour).Format(time.RFC3339),
	}).want(201).data(&k)
	return k
}

func etagOf(v int64) string { return fmt.Sprintf("%q", fmt.Sprint(v)) }
