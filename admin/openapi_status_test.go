package admin

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// observed collects, across every test of the package, the statuses each
// route answered ("METHOD /pattern" → statuses); TestMain then checks that
// the OpenAPI document lists each of them.
var observed = struct {
	sync.Mutex
	m map[string]map[int]bool
}{m: map[string]map[int]bool{}}

// schemaDoc is the OpenAPI document, decoded once for observeBody.
var schemaDoc = sync.OnceValue(func() map[string]any {
	var doc map[string]any
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		panic(err)
	}
	return doc
})

// mismatches collects responses whose members the document does not describe.
var mismatches = struct {
	sync.Mutex
	seen map[string]bool
}{seen: map[string]bool{}}

// dig walks nested maps by keys.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// schemaProps returns the properties of a schema, following one $ref.
func schemaProps(schema any) map[string]any {
	if r, ok := dig(schema, "$ref").(string); ok {
		schema = dig(schemaDoc(), "components", "schemas", strings.TrimPrefix(r, "#/components/schemas/"))
	}
	props, _ := dig(schema, "properties").(map[string]any)
	return props
}

// observeBody checks that every member of a response body (problem, or the
// envelope's data object or list items) is a documented property of the
// route's response schema.
func observeBody(pattern string, code int, contentType string, body []byte) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok || len(body) == 0 {
		return
	}
	var got map[string]any
	if json.Unmarshal(body, &got) != nil {
		return
	}
	var (
		props map[string]any
		items []any
	)
	switch contentType {
	case "application/problem+json":
		props = schemaProps(dig(schemaDoc(), "paths", path, strings.ToLower(method), "responses", strconv.Itoa(code), "content", "application/problem+json", "schema"))
		if props == nil {
			props = schemaProps(dig(schemaDoc(), "components", "schemas", "Problem"))
		}
		items = []any{got}
	case "application/json":
		resp := dig(schemaDoc(), "paths", path, strings.ToLower(method), "responses", strconv.Itoa(code), "content", "application/json", "schema")
		allOf, _ := dig(resp, "allOf").([]any)
		if len(allOf) < 2 || got["data"] == nil {
			return
		}
		data := dig(allOf[1], "properties", "data")
		if dig(data, "type") == "array" {
			props = schemaProps(dig(data, "items"))
			items, _ = got["data"].([]any)
		} else {
			props = schemaProps(data)
			items = []any{got["data"]}
		}
	default:
		return
	}
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok {
			continue
		}
		for k := range m {
			if _, documented := props[k]; !documented {
				mismatches.Lock()
				mismatches.seen[fmt.Sprintf("%s %d: member %q", pattern, code, k)] = true
				mismatches.Unlock()
			}
		}
	}
}

// observeStatus records that the route with pattern answered code. Requests
// that matched no route (404 catch-all, 405) are not a route's answers.
func observeStatus(pattern string, code int) {
	if !strings.Contains(pattern, " ") {
		return
	}
	observed.Lock()
	defer observed.Unlock()
	if observed.m[pattern] == nil {
		observed.m[pattern] = map[int]bool{}
	}
	observed.m[pattern][code] = true
}

// checkObservedStatuses reports every observed status the OpenAPI document
// does not list for its route; false when there is one.
func checkObservedStatuses() bool {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		fmt.Fprintln(os.Stderr, "decoding the OpenAPI document:", err)
		return false
	}
	observed.Lock()
	defer observed.Unlock()
	ok := true
	mismatches.Lock()
	for m := range mismatches.seen {
		fmt.Fprintf(os.Stderr, "FAIL: OpenAPI: %s is not in the documented schema\n", m)
		ok = false
	}
	mismatches.Unlock()
	for pattern, codes := range observed.m {
		method, path, _ := strings.Cut(pattern, " ")
		op := doc.Paths[path][strings.ToLower(method)]
		var missing []int
		for code := range codes {
			if _, listed := op.Responses[strconv.Itoa(code)]; !listed {
				missing = append(missing, code)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			fmt.Fprintf(os.Stderr, "FAIL: OpenAPI: %s answered %v, which the document does not list\n", pattern, missing)
			ok = false
		}
	}
	return ok
}

// TestObserveBodyDetectsUndocumented: the schema check of TestMain sees an
// undocumented member (and documented ones pass).
func TestObserveBodyDetectsUndocumented(t *testing.T) {
	const pattern = "GET /v1/users/{id}"
	observeBody(pattern, 200, "application/json", []byte(`{"status":"OK","data":{"id":"1","name":"x","bogus":1}}`))
	observeBody(pattern, 404, "application/problem+json", []byte(`{"type":"t","title":"x","status":404,"errors":[]}`))
	key := pattern + ` 200: member "bogus"`
	mismatches.Lock()
	defer mismatches.Unlock()
	found := mismatches.seen[key]
	delete(mismatches.seen, key)
	if !found {
		t.Fatal("an undocumented member went unnoticed")
	}
	for m := range mismatches.seen {
		if strings.HasPrefix(m, pattern+" 404") {
			t.Fatalf("a documented problem was flagged: %s", m)
		}
	}
}
