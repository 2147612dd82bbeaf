package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/keys"
)

// ProblemTypeBase prefixes the type URI of every problem this API answers.
const ProblemTypeBase = "https://keygate.dev/problems/"

// Problem is an RFC 9457 problem details document, the body of every error
// response (Content-Type application/problem+json).
type Problem struct {
	// Type is ProblemTypeBase followed by a stable slug, e.g. "not-found".
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	// Detail explains this occurrence; it never contains credentials.
	Detail string `json:"detail,omitempty"`
	// Errors lists the invalid fields of a 400 validation problem; empty otherwise.
	Errors []keys.FieldError `json:"errors"`
}

// apiError is an error that knows its HTTP answer. Handlers return it (or a
// store error, which problemFor maps).
type apiError struct {
	status int
	slug   string
	title  string
	detail string
	fields []keys.FieldError
	header http.Header
}

func (e *apiError) Error() string {
	if e.detail != "" {
		return e.title + ": " + e.detail
	}
	return e.title
}

func newError(status int, slug, title, detail string) *apiError {
	return &apiError{status: status, slug: slug, title: title, detail: detail}
}

func errBadRequest(detail string) *apiError {
	return newError(http.StatusBadRequest, "bad-request", "Bad request", detail)
}

// errField is a 400 validation problem naming one field.
func errField(field, message string) *apiError {
	e := newError(http.StatusBadRequest, "validation-error", "Invalid input", field+": "+message)
	e.fields = []keys.FieldError{{Field: field, Message: message}}
	return e
}

// errValidation turns a ValidationError into a 400 problem.
func errValidation(v *keys.ValidationError) *apiError {
	e := newError(http.StatusBadRequest, "validation-error", "Invalid input", v.Error())
	e.fields = append([]keys.FieldError(nil), v.Fields...)
	return e
}

func errNotFound(what string) *apiError {
	return newError(http.StatusNotFound, "not-found", "Not found", what+" not found")
}

func errForbidden(detail string) *apiError {
	return newError(http.StatusForbidden, "forbidden", "Forbidden", detail)
}

func errConflict(detail string) *apiError {
	return newError(http.StatusConflict, "conflict", "Conflict", detail)
}

var (
	errUnauthorized = &apiError{
		status: http.StatusUnauthorized, slug: "unauthorized", title: "Unauthorized",
		detail: "a valid keygate access key is required",
		header: http.Header{"Www-Authenticate": {`Bearer realm="keygate"`}},
	}
	errPreconditionRequired = newError(http.StatusPreconditionRequired, "precondition-required",
		"Precondition required", "send If-Match with the resource's ETag, or a version field in the body")
	errPreconditionFailed = newError(http.StatusPreconditionFailed, "precondition-failed",
		"Precondition failed", "the resource was changed by someone else; fetch it again")
	errNoSealer = newError(http.StatusServiceUnavailable, "master-key-missing",
		"Service unavailable", "master key not configured")
	errUnavailable = newError(http.StatusServiceUnavailable, "store-unavailable",
		"Service unavailable", "the key store cannot be reached; retry later")
	errInternal = newError(http.StatusInternalServerError, "internal",
		"Internal server error", "")
)

// problemFor maps any error to its HTTP answer. Store sentinels map to their
// statuses; anything unknown is a 500 whose cause is only logged.
func problemFor(err error) (*apiError, bool) {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae, true
	}
	var ve *keys.ValidationError
	switch {
	case errors.As(err, &ve):
		return errValidation(ve), true
	case errors.Is(err, keys.ErrVersionMismatch):
		return errPreconditionFailed, true
	case errors.Is(err, keys.ErrNotFound):
		return errNotFound("resource"), true
	case errors.Is(err, keys.ErrConflict):
		return errConflict(err.Error()), true
	case errors.Is(err, keys.ErrInvalid):
		return errBadRequest(err.Error()), true
	case errors.Is(err, keys.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		e := *errUnavailable
		e.header = http.Header{"Retry-After": {"1"}}
		return &e, false
	}
	return errInternal, false
}

// writeProblem writes e as application/problem+json.
func writeProblem(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	fields := e.fields
	if fields == nil {
		fields = []keys.FieldError{}
	}
	body, _ := json.Marshal(Problem{
		Type:   ProblemTypeBase + e.slug,
		Title:  e.title,
		Status: e.status,
		Detail: e.detail,
		Errors: fields,
	})
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(e.status)
	_, _ = w.Write(append(body, '\n'))
}

// Envelope wraps every successful response body (seed 001).
type Envelope struct {
	// Status is "OK".
	Status string `json:"status"`
	// Type names the kind of data: "User", "Key", "Permission", ….
	Type string `json:"type"`
	// Errors is always empty in a successful response.
	Errors []keys.FieldError `json:"errors"`
	// Total is how many objects the answer is about: for a list the number
	// of all matching items (all pages), for a single object 1, whether it
	// was read, created or changed.
	Total int `json:"total"`
	// Page and Size echo the paging of a list; absent for single objects.
	Page int `json:"page,omitempty"`
	Size int `json:"size,omitempty"`
	// Code is the HTTP status code of the response (seed 003's "Response
	// Code").
	Code int `json:"code"`
	// Timestamp is when keygate received the call, UTC (seed 003's
	// "Timestamp").
	Timestamp time.Time `json:"timestamp"`
	// Account is the tenant the call acted on, or else the tenant of the
	// caller's key (seed 003's "Account"); absent when there is neither
	// (a trusted local caller acting on no tenant).
	Account string `json:"account,omitempty"`
	// Data is the object, or the array of objects of a list.
	Data any `json:"data"`
}

// stamp fills the envelope's code, timestamp and account from the call.
func (e *Envelope) stamp(w http.ResponseWriter, status int) {
	e.Code = status
	if rec, ok := w.(*statusRecorder); ok && rec.state != nil {
		e.Timestamp = rec.state.at
		e.Account = rec.state.tenant
		if e.Account == "" {
			e.Account = rec.state.account
		}
		return
	}
	e.Timestamp = time.Now().UTC()
}

// writeJSON writes v with status as application/json.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, errInternal)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeOne writes a single object in the envelope with its strong ETag.
func writeOne(w http.ResponseWriter, status int, typ string, version int64, data any) {
	if version > 0 {
		w.Header().Set("ETag", etag(version))
	}
	env := Envelope{Status: "OK", Type: typ, Errors: []keys.FieldError{}, Total: 1, Data: data}
	env.stamp(w, status)
	writeJSON(w, status, env)
}

// writeList writes a page of objects in the envelope.
func writeList[T any](w http.ResponseWriter, typ string, items []T, total int, lo keys.ListOptions) {
	if items == nil {
		items = []T{}
	}
	env := Envelope{
		Status: "OK", Type: typ, Errors: []keys.FieldError{}, Total: total,
		Page: lo.Page, Size: lo.Size, Data: items,
	}
	env.stamp(w, http.StatusOK)
	writeJSON(w, http.StatusOK, env)
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }
