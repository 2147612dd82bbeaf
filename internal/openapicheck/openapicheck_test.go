package openapicheck

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/admin"
)

var adminSpec = sync.OnceValues(func() (*Spec, error) { return Load(admin.OpenAPI()) })

// TestAdminDocumentValid: the admin API's OpenAPI document passes
// kin-openapi's validation (issue 23, item 11: the step parameter of GET
// /v1/users/{id}/usage had a null schema).
func TestAdminDocumentValid(t *testing.T) {
	s, err := adminSpec()
	if err != nil {
		t.Fatal(err)
	}
	if !s.Document().IsOpenAPI31OrLater() {
		t.Fatalf("openapi %q: the document says 3.1", s.Document().OpenAPI)
	}
}

// TestLoadRefusesInvalid: a parameter without a schema is refused.
func TestLoadRefusesInvalid(t *testing.T) {
	_, err := Load([]byte(`{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/x":{"get":{
		"parameters":[{"name":"step","in":"query","schema":null}],"responses":{"200":{"description":"ok"}}}}}}`))
	if err == nil || !strings.Contains(err.Error(), "step") {
		t.Fatalf("Load of a document with a null parameter schema: %v", err)
	}
}

// TestResponseChecks: the checker sees each kind of drift (an undocumented
// member at any depth, a wrong type or enum value, a missing required
// member, an undocumented status, an undocumented route) and passes a
// documented answer.
func TestResponseChecks(t *testing.T) {
	s, err := adminSpec()
	if err != nil {
		t.Fatal(err)
	}
	json := http.Header{"Content-Type": {"application/json"}}
	problem := http.Header{"Content-Type": {"application/problem+json"}}
	get := httptest.NewRequest(http.MethodGet, "/v1/users/123", nil)
	list := httptest.NewRequest(http.MethodGet, "/v1/users/123/keys", nil)
	for _, tc := range []struct {
		name   string
		r      *http.Request
		status int
		header http.Header
		body   string
		want   string // "" passes
	}{
		{"documented", get, 200, json, `{"status":"OK","type":"User","errors":[],"total":1,"data":{"id":"123","name":"x","type":"SERVICE","customerRoles":[]}}`, ""},
		{"documented problem", get, 404, problem, `{"type":"https://keygate.dev/problems/not-found","title":"Not found","status":404,"errors":[]}`, ""},
		{"undocumented member", get, 200, json, `{"status":"OK","data":{"id":"123","bogus":1}}`, "data.bogus"},
		{"undocumented envelope member", get, 200, json, `{"status":"OK","extra":true,"data":{}}`, "extra"},
		{"undocumented member of a list item", list, 200, json, `{"status":"OK","data":[{"id":"k","previous":{"id":"p","oops":1}}]}`, "data[].previous.oops"},
		{"wrong type", get, 200, json, `{"status":"OK","data":{"id":123}}`, "id"},
		{"not in the enum", get, 200, json, `{"status":"OK","data":{"type":"ROBOT"}}`, "type"},
		{"missing required", get, 404, problem, `{"type":"t","status":404}`, "title"},
		{"undocumented status", get, 418, problem, `{"type":"t","title":"x","status":418}`, "status is not supported"},
		{"wrong content type", get, 200, http.Header{"Content-Type": {"text/html"}}, `<p>`, "Content-Type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Response(tc.r, tc.status, tc.header, []byte(tc.body))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("documented answer refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatal("drift not seen")
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
		})
	}
	if err := s.Response(httptest.NewRequest(http.MethodGet, "/v1/nowhere", nil), 404, problem, nil); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("undocumented route: %v", err)
	}
}
