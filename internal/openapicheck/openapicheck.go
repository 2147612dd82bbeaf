// Package openapicheck validates an API against its OpenAPI document, for
// the admin API's tests (the document is admin.OpenAPI): the document
// itself with kin-openapi (OpenAPI 3.1, JSON Schema 2020-12), and every
// answer a test records: its route and status are documented, its body
// matches the route's schema, and every member of every object in it is a
// documented property (the document's response schemas allow more, for
// clients' forward compatibility; the API must not send undocumented
// members).
//
// Only tests import it (admin's and module's), so kin-openapi never
// reaches the keygate binary. It takes the document as bytes rather than
// importing admin, so that admin's own tests can use it.
package openapicheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// Spec is a loaded, validated document and a router over it.
type Spec struct {
	doc    *openapi3.T
	router routers.Router
}

// Load loads an OpenAPI document and validates it with kin-openapi.
func Load(data []byte) (*Spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("loading the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid: %w", err)
	}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing the OpenAPI document: %w", err)
	}
	return &Spec{doc: doc, router: router}, nil
}

// ErrNoRoute is returned (wrapped) for a request the document has no
// operation for.
var ErrNoRoute = errors.New("no documented operation")

// Document returns the loaded document.
func (s *Spec) Document() *openapi3.T { return s.doc }

// Response checks one answer to r against s.
func (s *Spec) Response(r *http.Request, status int, header http.Header, body []byte) error {
	// The router matches the path only; the query and body of r are not
	// looked at (this checks answers, not requests).
	req := &http.Request{Method: r.Method, URL: &url.URL{Path: r.URL.Path}, Header: r.Header}
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (%v)", r.Method, r.URL.Path, ErrNoRoute, err)
	}
	where := fmt.Sprintf("%s %s → %d", r.Method, route.Path, status)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	// Members the schema does not name.
	resp := route.Operation.Responses.Status(status)
	if resp == nil || resp.Value == nil || len(body) == 0 {
		return nil
	}
	mt, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	media := resp.Value.Content.Get(mt)
	if media == nil || media.Schema == nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%s: body is not JSON: %w", where, err)
	}
	var extra []string
	undocumented(media.Schema, v, "", &extra)
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("%s: undocumented members %s", where, strings.Join(slices.Compact(extra), ", "))
	}
	return nil
}

// undocumented appends to out the paths of the members of v (a decoded
// JSON value) that schema does not name as properties, following $ref,
// allOf and items. An object schema with no properties and no
// additionalProperties schema (anything goes) is not looked into.
func undocumented(ref *openapi3.SchemaRef, v any, path string, out *[]string) {
	if ref == nil || ref.Value == nil {
		return
	}
	switch v := v.(type) {
	case map[string]any:
		props, additional, open := objectSchema(ref.Value)
		if open {
			return
		}
		for k, child := range v {
			p := path + "." + k
			if s, ok := props[k]; ok {
				undocumented(s, child, p, out)
			} else if additional != nil {
				undocumented(additional, child, p, out)
			} else {
				*out = append(*out, strings.TrimPrefix(p, "."))
			}
		}
	case []any:
		items := itemsSchema(ref.Value)
		for _, child := range v {
			undocumented(items, child, path+"[]", out)
		}
	}
}

// objectSchema returns the properties s names (with those of its allOf
// branches), its additionalProperties schema, and whether it leaves the
// object's members open (no properties, no additionalProperties schema).
func objectSchema(s *openapi3.Schema) (props map[string]*openapi3.SchemaRef, additional *openapi3.SchemaRef, open bool) {
	props = map[string]*openapi3.SchemaRef{}
	var walk func(s *openapi3.Schema)
	walk = func(s *openapi3.Schema) {
		for k, p := range s.Properties {
			// allOf branches may name a member twice (the envelope's data
			// is {} in one, the route's schema in the other): keep the
			// one that says something.
			if prev, seen := props[k]; !seen || unconstrained(prev.Value) {
				props[k] = p
			}
		}
		if s.AdditionalProperties.Schema != nil {
			additional = s.AdditionalProperties.Schema
		}
		for _, b := range s.AllOf {
			if b.Value != nil {
				walk(b.Value)
			}
		}
	}
	walk(s)
	return props, additional, len(props) == 0 && additional == nil
}

// unconstrained reports whether s is the empty schema {}.
func unconstrained(s *openapi3.Schema) bool {
	return s == nil || (s.Type == nil && len(s.Properties) == 0 && s.Items == nil && len(s.AllOf) == 0 &&
		len(s.OneOf) == 0 && len(s.AnyOf) == 0 && s.AdditionalProperties.Schema == nil)
}

// itemsSchema returns the items schema of s or of one of its allOf branches.
func itemsSchema(s *openapi3.Schema) *openapi3.SchemaRef {
	if s.Items != nil {
		return s.Items
	}
	for _, b := range s.AllOf {
		if b.Value != nil {
			if it := itemsSchema(b.Value); it != nil {
				return it
			}
		}
	}
	return nil
}

// Handler wraps a handler of the API so that every answer is checked
// (Response) and each failure passed to fail; requests the document has no
// operation for (the catch-all 404, 405) are not checked.
func (s *Spec) Handler(h http.Handler, fail func(error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if err := s.Response(r, status, w.Header(), rec.body); err != nil && !errors.Is(err, ErrNoRoute) {
			fail(err)
		}
	})
}

// recorder passes an answer through and keeps a copy of its status and body.
type recorder struct {
	http.ResponseWriter
	status int
	body   []byte
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return r.ResponseWriter.Write(b)
}

// Flush lets the wrapped handler flush.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
