package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keygate/keygate/keys"
)

// requestBodies returns a fresh value of every body type the API decodes,
// in a fixed order (FuzzAdminDecode picks one by index).
func requestBodies() []any {
	return []any{new(userBody), new(tenantBody), new(keyBody), new(replaceBody),
		new(secretBody), new(permissionBody), new(bootstrapBody)}
}

// FuzzAdminDecode checks decodeJSON, the decoder of every admin request
// body, on each body type: it fails only with a 400, 413 or 415 problem;
// 415 exactly when the media type is not JSON; 413 whenever the body is
// over the limit; it accepts only bodies that are valid UTF-8 JSON under
// the limit, and then decodes them exactly as a plain encoding/json decoder
// with DisallowUnknownFields would; allocation is linear in the body.
func FuzzAdminDecode(f *testing.F) {
	for _, b := range []string{
		`{"name":"svc","primaryTenant":"a","role":"ADMIN","type":"TECHNICAL","customerRoles":["x"],"requestLimit":5}`,
		`{"id":"t1","name":"Tenant","status":"ACTIVE","version":3}`,
		`{"name":"main","expiresAt":"2031-01-02T03:04:05Z","status":"DISABLED","tenant":"a"}`,
		`{"gracePeriod":"24h","expiresAt":"2031-01-02T03:04:05.5+02:00"}`,
		`{"gracePeriod":86400.5}`,
		`{"user":{"id":"1","userName":"x"},"workspace":{"id":"a"},"role":"MEMBER","customerRoles":[],"createdAt":null}`,
		`{"tenant":"root","user":"ops","expiresAt":"2031-01-01T00:00:00Z"}`,
		`{"name":null,"plannedPurgeDate":null}`, `null`, `[]`, `{"name":1}`, `{"nope":1}`, `{} {}`, `{"a":`, "\xff",
	} {
		f.Add(uint8(len(b)), []byte(b), "application/json")
	}
	f.Add(uint8(1), []byte(`{"name":"x"}`), "application/merge-patch+json; charset=utf-8")
	f.Add(uint8(2), []byte(`{"name":"x"}`), "text/plain")
	const maxBody = 2048
	f.Fuzz(func(t *testing.T, kind uint8, body []byte, contentType string) {
		bodies := requestBodies()
		dst := bodies[int(kind)%len(bodies)]
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		var err error
		allocs := heapBytes(func() { err = decodeJSON(httptest.NewRecorder(), r, maxBody, dst) })
		if limit := uint64(64<<10 + 128*(len(body)+len(contentType))); allocs > limit {
			t.Fatalf("decodeJSON allocated %d bytes for a %d-byte body", allocs, len(body))
		}
		mt, _, mterr := mime.ParseMediaType(contentType)
		jsonType := mterr == nil && (mt == "application/json" || mt == "application/merge-patch+json")
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v is not a problem", err, err)
			}
			switch {
			case (ae.status == http.StatusUnsupportedMediaType) != !jsonType:
				t.Fatalf("status %d for media type %q", ae.status, contentType)
			case jsonType && len(body) > maxBody && ae.status != http.StatusRequestEntityTooLarge:
				t.Fatalf("status %d for a %d-byte body", ae.status, len(body))
			case ae.status != 400 && ae.status != 413 && ae.status != 415:
				t.Fatalf("status %d", ae.status)
			}
			return
		}
		if !jsonType || len(body) > maxBody || !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("accepted a %d-byte body %q as %q", len(body), body, contentType)
		}
		again := requestBodies()[int(kind)%len(bodies)]
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(again); err != nil {
			t.Fatalf("encoding/json refuses what decodeJSON accepted: %v", err)
		}
		if !reflect.DeepEqual(dst, again) {
			t.Fatalf("decoded %+v, encoding/json %+v", dst, again)
		}
	})
}

// heapBytes returns the bytes fn allocated (ReadMemStats flushes every
// per-P cache, so the figure is exact).
func heapBytes(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// FuzzAdminHandler sends fuzzed JSON bodies to every admin route that reads
// one, through the real handler over a bbolt store, as the superadmin (or
// as a trusted caller for bootstrap), and checks: the API never answers 5xx
// (a panic or an unmapped error); every answer is the JSON envelope with
// status OK (2xx) or a problem+json whose status is the HTTP status; a body
// that is not JSON is never accepted; no answer contains the caller's key.
func FuzzAdminHandler(f *testing.F) {
	for i, b := range []string{
		`{"id":"t9","name":"Tenant nine"}`,
		`{"name":"Renamed","version":1}`,
		`{"name":"svc","primaryTenant":"a","role":"MEMBER"}`,
		`{"description":"x","customerRoles":["r1"],"requestLimit":10}`,
		`{"name":"k2","expiresAt":"2030-06-01T00:00:00Z"}`,
		`{"name":"s1"}`,
		`{"user":{"id":"1"},"workspace":{"id":"a"},"role":"VIEWER"}`,
		`{"tenant":"boot","user":"ops2"}`,
		`{"gracePeriod":"1h"}`,
		`{"status":"DISABLED","version":1}`,
		`{"links":[{"rel":"self","href":"/v1/permissions/x"}],"user":{"id":"1","scimManaged":false,"technicalUser":true},"workspace":{"id":"a"},"role":"VIEWER","status":"ACTIVE","active":true,"ignoreBlacklist":false,"count":0,"replayed":false}`,
		``,
	} {
		f.Add(uint8(i), []byte(b), i%2 == 0)
	}
	e := newEnv(f, newFileStore)
	keyID, ok := keys.ParseAccessKey(e.memberA)
	if !ok {
		f.Fatal("member key does not parse")
	}
	user := "/v1/users/" + e.memberAID
	routes := []struct {
		method, path string
		trusted      bool
	}{
		{"POST", "/v1/tenants", false},
		{"PATCH", "/v1/tenants/a", false},
		{"POST", "/v1/users", false},
		{"PATCH", user, false},
		{"POST", user + "/keys", false},
		{"POST", user + "/secrets", false},
		{"POST", "/v1/permissions", false},
		{"POST", "/v1/bootstrap", true},
		{"POST", user + "/keys/" + keyID + "/replace", false},
		{"PATCH", user + "/keys/" + keyID, false},
		{"POST", "/services/mtm/v1/permissions", false},
		{"POST", "/v1/console/session", false},
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte, ifMatch bool) {
		rt := routes[int(route)%len(routes)]
		r := req(rt.method, rt.path, e.rootKey, body)
		if rt.trusted {
			r = req(rt.method, rt.path, "", body)
			r = r.WithContext(WithTrustedCaller(context.Background(), "fuzz"))
		}
		if ifMatch {
			r.Header.Set("If-Match", "*")
		}
		res := e.serveAs(t, r)
		if res.code >= 500 {
			t.Fatalf("%s %s: %d %s", rt.method, rt.path, res.code, res.body)
		}
		if bytes.Contains(res.body, []byte(e.rootKey)) {
			t.Fatal("the answer contains the caller's key")
		}
		if res.code < 300 {
			if !json.Valid(body) {
				t.Fatalf("%s %s accepted a body that is not JSON: %q", rt.method, rt.path, body)
			}
			var env Envelope
			if ct := res.header.Get("Content-Type"); ct != "application/json" || json.Unmarshal(res.body, &env) != nil || env.Status != "OK" {
				t.Fatalf("%d answer %q: %s", res.code, ct, res.body)
			}
			return
		}
		var p Problem
		if ct := res.header.Get("Content-Type"); ct != "application/problem+json" || json.Unmarshal(res.body, &p) != nil ||
			p.Status != res.code || !strings.HasPrefix(p.Type, ProblemTypeBase) {
			t.Fatalf("%d answer %q: %s", res.code, ct, res.body)
		}
	})
}

// FuzzAdminCredential throws hostile credentials at the admin API's
// authentication (access keys, console session tokens, JWT shapes, two
// headers at once): every answer is a 200 or the one 401 problem, never a
// 5xx, and no session is created from a credential that is not a key.
func FuzzAdminCredential(f *testing.F) {
	e := newEnv(f, newFileStore)
	var sess ConsoleIdentity
	e.do("POST", "/v1/console/session", e.adminA, nil).want(201).data(&sess)
	for _, s := range []string{e.adminA, sess.Token, "kgs_", sess.Token + "x", "kgs_" + e.adminA[3:], "eyJ.eyJ.sig", "Bearer", "kg_" + sess.Token[4:], ""} {
		f.Add(s, "")
		f.Add("", s)
	}
	f.Add(sess.Token, e.adminA)
	f.Fuzz(func(t *testing.T, authz, apiKey string) {
		r := req("GET", "/v1/console/session", "", nil)
		if authz != "" {
			r.Header.Set("Authorization", "Bearer "+authz)
		}
		if apiKey != "" {
			r.Header.Set("X-Api-Key", apiKey)
		}
		if !utf8.ValidString(authz) || strings.ContainsAny(authz+apiKey, "\r\n\x00") {
			return // not a header value a server receives
		}
		res := e.serveAs(t, r)
		switch res.code {
		case 200:
			var env struct {
				Data ConsoleIdentity `json:"data"`
			}
			if err := json.Unmarshal(res.body, &env); err != nil || env.Data.User.ID != e.adminAID {
				t.Fatalf("authenticated as %s (%v)", res.body, err)
			}
		case 401:
			var p Problem
			if err := json.Unmarshal(res.body, &p); err != nil || p.Type != ProblemTypeBase+"unauthorized" {
				t.Fatalf("401 answer %s", res.body)
			}
		default:
			t.Fatalf("answered %d: %s", res.code, res.body)
		}
	})
}
