package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/keys"
)

// Paging limits of every list.
const (
	defaultPageSize = 30
	maxPageSize     = 100
	// maxOffset bounds (page-1)*size so a hostile page number cannot overflow.
	maxOffset = 100_000_000
)

// decodeJSON reads the request body into dst: application/json only (415),
// at most maxBody bytes (413), no unknown fields, no wrong types and no
// trailing data (400 naming the field).
func decodeJSON(w http.ResponseWriter, r *http.Request, maxBody int64, dst any) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
		return newError(http.StatusUnsupportedMediaType, "unsupported-media-type",
			"Unsupported media type", "request bodies must be application/json")
	}
	if r.ContentLength > maxBody {
		return errTooLarge(maxBody)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errTooLarge(maxBody)
		}
		return errBadRequest("reading the request body failed")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errBadRequest("a JSON request body is required")
	}
	if !utf8.Valid(body) {
		return errBadRequest("the request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errBadRequest("unexpected data after the JSON value")
	}
	return nil
}

func errTooLarge(limit int64) *apiError {
	return newError(http.StatusRequestEntityTooLarge, "payload-too-large", "Payload too large",
		fmt.Sprintf("request bodies are limited to %d bytes", limit))
}

// jsonError turns a decoding error into a 400 that names the field.
func jsonError(err error) *apiError {
	var (
		te *json.UnmarshalTypeError
		se *json.SyntaxError
	)
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return errBadRequest("the request body must be a JSON object")
		}
		return errField(field, "must be "+typeName(te.Type))
	case errors.As(err, &se):
		return errBadRequest(fmt.Sprintf("malformed JSON at byte %d", se.Offset))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errBadRequest("truncated JSON")
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if s, err := strconv.Unquote(name); err == nil {
			name = s
		}
		return errField(clip(name, 64), "unknown field")
	}
	return errBadRequest("malformed JSON")
}

// typeName describes a Go type the way a JSON client thinks of it.
func typeName(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	switch t {
	case reflect.TypeFor[time.Time](), reflect.TypeFor[timestamp]():
		return "an RFC 3339 timestamp"
	case reflect.TypeFor[duration]():
		return "a duration such as \"24h\" or a number of seconds"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return "of another type"
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// opt is a JSON merge-patch field: Set when the member was present, Null
// when it was null.
type opt[T any] struct {
	Set  bool
	Null bool
	V    T
}

// UnmarshalJSON records presence and decodes the value.
func (o *opt[T]) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	if err := json.Unmarshal(b, &o.V); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			return te
		}
		return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeOf(o.V)}
	}
	return nil
}

// timestamp is an RFC 3339 time in a request body.
type timestamp struct{ time.Time }

// UnmarshalJSON accepts an RFC 3339 string.
func (t *timestamp) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeFor[timestamp]()}
	}
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "string", Type: reflect.TypeFor[timestamp]()}
	}
	t.Time = v.UTC()
	return nil
}

// duration is a Go duration string ("24h", "90m") or a number of seconds.
type duration time.Duration

// UnmarshalJSON accepts "24h" or 86400.
func (d *duration) UnmarshalJSON(b []byte) error {
	bad := &json.UnmarshalTypeError{Value: "value", Type: reflect.TypeFor[duration]()}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return bad
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return bad
		}
		*d = duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return bad
	}
	if secs > float64(1<<62)/float64(time.Second) || secs < -float64(1<<62)/float64(time.Second) {
		return bad
	}
	*d = duration(time.Duration(secs * float64(time.Second)))
	return nil
}

// precondition is what the caller expects the current version to be.
type precondition struct {
	any      bool    // If-Match: *
	versions []int64 // If-Match entity tags, or the body's version
}

// decodeUpdate reads the JSON body of a PATCH, PUT or DELETE into dst and
// its precondition: If-Match, or the body's version (the field version points at).
func (h *Handler) decodeUpdate(w http.ResponseWriter, r *http.Request, dst any, version **int64) (*precondition, error) {
	if err := decodeJSON(w, r, h.maxBody, dst); err != nil {
		return nil, err
	}
	return parsePrecondition(r, *version, true)
}

// ifMatchVersion is the expected version of a body-less DELETE: If-Match is
// required and must match current (428 and 412 otherwise); 0 for "*".
func ifMatchVersion(r *http.Request, current int64) (int64, error) {
	pre, err := parsePrecondition(r, nil, true)
	if err != nil {
		return 0, err
	}
	return pre.expect(current)
}

// parsePrecondition reads If-Match and a body version. PATCH, PUT and DELETE
// on versioned resources need one of them (428 otherwise, when required).
func parsePrecondition(r *http.Request, bodyVersion *int64, required bool) (*precondition, error) {
	values := r.Header.Values("If-Match")
	if len(values) == 0 && bodyVersion == nil {
		if required {
			return nil, errPreconditionRequired
		}
		return nil, nil
	}
	p := &precondition{}
	if len(values) > 0 {
		joined := strings.Join(values, ",")
		if len(joined) > 1024 {
			return nil, errBadRequest("If-Match is too long")
		}
		for part := range strings.SplitSeq(joined, ",") {
			part = strings.TrimSpace(part)
			switch {
			case part == "":
				continue
			case part == "*":
				p.any = true
			case strings.HasPrefix(part, "W/"):
				// A weak tag never matches under the strong comparison If-Match requires.
				p.versions = append(p.versions, -1)
			case len(part) >= 2 && part[0] == '"' && part[len(part)-1] == '"':
				v, err := strconv.ParseInt(part[1:len(part)-1], 10, 64)
				if err != nil || v < 1 {
					p.versions = append(p.versions, -1)
					continue
				}
				p.versions = append(p.versions, v)
			default:
				return nil, errBadRequest("If-Match must list entity tags such as \"7\", or be *")
			}
		}
		if !p.any && len(p.versions) == 0 {
			return nil, errBadRequest("If-Match must list entity tags such as \"7\", or be *")
		}
	}
	if bodyVersion != nil {
		if *bodyVersion < 1 {
			return nil, errField("version", "must be a positive integer")
		}
		if len(values) > 0 && !p.any && !contains(p.versions, *bodyVersion) {
			return nil, errPreconditionFailed
		}
		p.any = false
		p.versions = []int64{*bodyVersion}
	}
	return p, nil
}

// expect resolves the precondition against the current version: it returns
// the version to hand the store (0 = any), or 412 when none matches. The
// store compares again atomically, so a concurrent change still gives 412.
func (p *precondition) expect(current int64) (int64, error) {
	if p == nil || p.any {
		return 0, nil
	}
	if contains(p.versions, current) {
		return current, nil
	}
	return 0, errPreconditionFailed
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// parseList reads page, size and sort. sortable lists the accepted sort fields.
func parseList(q url.Values, sortable ...string) (keys.ListOptions, error) {
	lo := keys.ListOptions{Page: 1, Size: defaultPageSize}
	if s := q.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return lo, errField("page", "must be an integer of at least 1")
		}
		lo.Page = n
	}
	if s := q.Get("size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return lo, errField("size", fmt.Sprintf("must be an integer from 1 to %d", maxPageSize))
		}
		lo.Size = n
	}
	// Divide rather than multiply: (page-1)*size wraps around for a page
	// near the int64 maximum and would slip past the bound.
	if lo.Page-1 > maxOffset/lo.Size {
		return lo, errField("page", fmt.Sprintf("is too large: (page-1) × size may be at most %d", maxOffset))
	}
	if s := q.Get("sort"); s != "" {
		if len(s) > 256 {
			return lo, errField("sort", "is too long")
		}
		for f := range strings.SplitSeq(s, ",") {
			f = strings.TrimSpace(f)
			desc := false
			if rest, ok := strings.CutPrefix(f, "-"); ok {
				f, desc = rest, true
			} else if rest, ok := strings.CutPrefix(f, "+"); ok {
				f = rest
			}
			if !contains(sortable, f) {
				msg := "cannot sort"
				if len(sortable) > 0 {
					msg = "unknown sort field " + strconv.Quote(clip(f, 64)) + "; use " + strings.Join(sortable, ", ")
				}
				return lo, errField("sort", msg)
			}
			lo.Sort = append(lo.Sort, keys.Sort{Field: f, Desc: desc})
		}
	}
	return lo, nil
}

// queryString returns a bounded query parameter.
func queryString(q url.Values, name string, max int) (string, error) {
	v := q.Get(name)
	if len(v) > max {
		return "", errField(name, fmt.Sprintf("must be at most %d bytes", max))
	}
	return v, nil
}

// queryEnum returns a query parameter that must be one of allowed (or empty).
func queryEnum(q url.Values, name string, allowed ...string) (string, error) {
	v := q.Get(name)
	if v == "" || contains(allowed, v) {
		return v, nil
	}
	return "", errField(name, "must be one of "+strings.Join(allowed, ", "))
}
