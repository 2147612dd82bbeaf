package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// maxResponse bounds a response body the Client reads.
const maxResponse = 64 << 20

// Client is a small typed client of the admin API, for the CLI. It talks
// to a server over HTTP (BaseURL + Do = http.DefaultClient.Do) or to a
// Handler in process (Do = InProcess(h, actor)).
type Client struct {
	// BaseURL is where /v1/ lives, e.g. "http://localhost:2019/keygate".
	// Default: empty, for InProcess.
	BaseURL string
	// Key is sent as "Authorization: Bearer <Key>" when not empty.
	Key string
	// Do sends a request. Default: http.DefaultClient.Do.
	Do func(*http.Request) (*http.Response, error)
}

// ProblemError is an error answer of the API.
type ProblemError struct {
	Problem
}

func (e *ProblemError) Error() string {
	msg := fmt.Sprintf("admin api: %d %s", e.Status, e.Title)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// InProcess returns a Client.Do that serves requests with h directly, as a
// trusted caller named actor (see WithTrustedCaller). The CLI uses it when
// no server runs and it holds the store itself.
func InProcess(h http.Handler, actor string) func(*http.Request) (*http.Response, error) {
	return func(r *http.Request) (*http.Response, error) {
		w := &memWriter{header: http.Header{}}
		h.ServeHTTP(w, r.WithContext(WithTrustedCaller(r.Context(), actor)))
		if w.status == 0 {
			w.status = http.StatusOK
		}
		return &http.Response{
			StatusCode: w.status, Status: strconv.Itoa(w.status) + " " + http.StatusText(w.status),
			Header: w.header, Body: io.NopCloser(&w.body), ContentLength: int64(w.body.Len()),
			Request: r, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}, nil
	}
}

// memWriter is an in-memory http.ResponseWriter.
type memWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *memWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Call sends method path (with query) and body (JSON-encoded unless nil)
// with the given headers, and decodes the envelope's data into out (unless
// nil). It returns the envelope (Data left raw) and, on error answers, a
// *ProblemError.
func (c *Client) Call(ctx context.Context, method, path string, body, out any, hdr http.Header) (*Envelope, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, nil, fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	r, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.BaseURL, "/")+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("building request: %w", err)
	}
	for k, v := range hdr {
		r.Header[k] = v
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	r.Header.Set("Accept", "application/json")
	if c.Key != "" {
		r.Header.Set("Authorization", "Bearer "+c.Key)
	}
	do := c.Do
	if do == nil {
		do = http.DefaultClient.Do
	}
	resp, err := do(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, resp.Header, fmt.Errorf("%s %s: reading response: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		pe := &ProblemError{}
		if json.Unmarshal(data, &pe.Problem) != nil || pe.Status == 0 {
			pe.Status, pe.Title = resp.StatusCode, http.StatusText(resp.StatusCode)
		}
		return nil, resp.Header, pe
	}
	if resp.StatusCode == http.StatusNoContent {
		return &Envelope{Status: "OK"}, resp.Header, nil
	}
	var env struct {
		Envelope
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, resp.Header, fmt.Errorf("%s %s: decoding response: %w", method, path, err)
	}
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			return nil, resp.Header, fmt.Errorf("%s %s: decoding data: %w", method, path, err)
		}
	}
	env.Envelope.Data = env.Data
	return &env.Envelope, resp.Header, nil
}

// ifMatch is the header set of a versioned change; version 0 means any ("*").
func ifMatch(version int64) http.Header {
	if version == 0 {
		return http.Header{"If-Match": {"*"}}
	}
	return http.Header{"If-Match": {etag(version)}}
}

// ListOptions are the paging options of the Client's list calls.
type ListOptions struct {
	Page, Size int
	Sort       string
	// Filters are further query parameters (q, status, tenant, …).
	Filters map[string]string
}

func (o ListOptions) query() string {
	v := url.Values{}
	if o.Page > 0 {
		v.Set("page", strconv.Itoa(o.Page))
	}
	if o.Size > 0 {
		v.Set("size", strconv.Itoa(o.Size))
	}
	if o.Sort != "" {
		v.Set("sort", o.Sort)
	}
	for k, val := range o.Filters {
		if val != "" {
			v.Set(k, val)
		}
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// Bootstrap calls POST /v1/bootstrap (trusted callers only).
func (c *Client) Bootstrap(ctx context.Context, req BootstrapRequest) (BootstrapResult, error) {
	var out BootstrapResult
	_, _, err := c.Call(ctx, "POST", "/v1/bootstrap", req, &out, nil)
	return out, err
}

// CreateTenant creates a tenant (superadmin).
func (c *Client) CreateTenant(ctx context.Context, id, name string) (keys.Tenant, error) {
	var out keys.Tenant
	_, _, err := c.Call(ctx, "POST", "/v1/tenants", map[string]string{"id": id, "name": name}, &out, nil)
	return out, err
}

// ListTenants lists tenants; it returns one page and the total.
func (c *Client) ListTenants(ctx context.Context, o ListOptions) ([]keys.Tenant, int, error) {
	var out []keys.Tenant
	env, _, err := c.Call(ctx, "GET", "/v1/tenants"+o.query(), nil, &out, nil)
	if err != nil {
		return nil, 0, err
	}
	return out, env.Total, nil
}

// UserInput is the body of CreateUser and UpdateUser: the user fields of
// SPEC section 2. Pointer fields are sent only when set; UpdateUser sends a
// JSON merge patch.
type UserInput struct {
	ID                    string          `json:"id,omitempty"`
	Name                  *string         `json:"name,omitempty"`
	Description           *string         `json:"description,omitempty"`
	Email                 *string         `json:"email,omitempty"`
	Type                  keys.UserType   `json:"type,omitempty"`
	Role                  keys.Role       `json:"role,omitempty"`
	CustomerRoles         []string        `json:"customerRoles,omitempty"`
	AccessControlEntities []string        `json:"accessControlEntities,omitempty"`
	PrimaryTenant         string          `json:"primaryTenant,omitempty"`
	Scope                 *string         `json:"scope,omitempty"`
	RequestLimit          *int64          `json:"requestLimit,omitempty"`
	PlannedPurgeDate      *time.Time      `json:"plannedPurgeDate,omitempty"`
	Status                keys.UserStatus `json:"status,omitempty"`
	Superadmin            *bool           `json:"superadmin,omitempty"`
}

// CreateUser calls POST /v1/users.
func (c *Client) CreateUser(ctx context.Context, in UserInput) (keys.User, error) {
	var out keys.User
	_, _, err := c.Call(ctx, "POST", "/v1/users", in, &out, nil)
	return out, err
}

// GetUser calls GET /v1/users/{id}.
func (c *Client) GetUser(ctx context.Context, id string) (keys.User, error) {
	var out keys.User
	_, _, err := c.Call(ctx, "GET", "/v1/users/"+url.PathEscape(id), nil, &out, nil)
	return out, err
}

// ListUsers calls GET /v1/users; Filters take q, status, type, role, tenant.
func (c *Client) ListUsers(ctx context.Context, o ListOptions) ([]keys.User, int, error) {
	var out []keys.User
	env, _, err := c.Call(ctx, "GET", "/v1/users"+o.query(), nil, &out, nil)
	if err != nil {
		return nil, 0, err
	}
	return out, env.Total, nil
}

// UpdateUser calls PATCH /v1/users/{id}; version 0 means any version.
func (c *Client) UpdateUser(ctx context.Context, id string, version int64, in UserInput) (keys.User, error) {
	var out keys.User
	_, _, err := c.Call(ctx, "PATCH", "/v1/users/"+url.PathEscape(id), in, &out, ifMatch(version))
	return out, err
}

// DisableUser sets a user INACTIVE.
func (c *Client) DisableUser(ctx context.Context, id string, version int64) (keys.User, error) {
	return c.UpdateUser(ctx, id, version, UserInput{Status: keys.UserInactive})
}

// DeleteUser calls DELETE /v1/users/{id}.
func (c *Client) DeleteUser(ctx context.Context, id string, version int64) (keys.User, error) {
	var out keys.User
	_, _, err := c.Call(ctx, "DELETE", "/v1/users/"+url.PathEscape(id), nil, &out, ifMatch(version))
	return out, err
}

// CreateKey calls POST /v1/users/{id}/keys; tenant may be empty (the
// user's primary tenant). The result's Key field is the full key, shown once.
func (c *Client) CreateKey(ctx context.Context, userID, name, tenant string, expiresAt time.Time) (KeyView, error) {
	var out KeyView
	body := map[string]any{"name": name, "expiresAt": expiresAt.UTC().Format(time.RFC3339)}
	if tenant != "" {
		body["tenant"] = tenant
	}
	_, _, err := c.Call(ctx, "POST", "/v1/users/"+url.PathEscape(userID)+"/keys", body, &out, nil)
	return out, err
}

// ListKeys calls GET /v1/users/{id}/keys (masked keys).
func (c *Client) ListKeys(ctx context.Context, userID string, o ListOptions) ([]KeyView, int, error) {
	var out []KeyView
	env, _, err := c.Call(ctx, "GET", "/v1/users/"+url.PathEscape(userID)+"/keys"+o.query(), nil, &out, nil)
	if err != nil {
		return nil, 0, err
	}
	return out, env.Total, nil
}

// RevokeKey calls DELETE /v1/users/{id}/keys/{keyId}.
func (c *Client) RevokeKey(ctx context.Context, userID, keyID string, version int64) (KeyView, error) {
	var out KeyView
	_, _, err := c.Call(ctx, "DELETE", "/v1/users/"+url.PathEscape(userID)+"/keys/"+url.PathEscape(keyID), nil, &out, ifMatch(version))
	return out, err
}

// ReplaceKey calls POST …/keys/{keyId}/replace; grace 0 disables the old
// key at once. The result's Key field is the new key, shown once.
func (c *Client) ReplaceKey(ctx context.Context, userID, keyID string, grace time.Duration) (KeyView, error) {
	var out KeyView
	body := map[string]any{"gracePeriod": grace.String()}
	_, _, err := c.Call(ctx, "POST", "/v1/users/"+url.PathEscape(userID)+"/keys/"+url.PathEscape(keyID)+"/replace", body, &out, nil)
	return out, err
}

// CreateSecret calls POST /v1/users/{id}/secrets; the result's Secret field
// is the value, shown once.
func (c *Client) CreateSecret(ctx context.Context, userID, name string) (SecretView, error) {
	var out SecretView
	body := map[string]any{}
	if name != "" {
		body["name"] = name
	}
	_, _, err := c.Call(ctx, "POST", "/v1/users/"+url.PathEscape(userID)+"/secrets", body, &out, nil)
	return out, err
}

// ListSecrets calls GET /v1/users/{id}/secrets (no values).
func (c *Client) ListSecrets(ctx context.Context, userID string) ([]SecretView, error) {
	var out []SecretView
	_, _, err := c.Call(ctx, "GET", "/v1/users/"+url.PathEscape(userID)+"/secrets?size=100", nil, &out, nil)
	return out, err
}

// PermissionInput is the body of PutPermission (seed 001 shape).
type PermissionInput struct {
	UserID                string
	Workspace             string
	Role                  keys.Role
	Status                keys.PermissionStatus
	CustomerRoles         []string
	AccessControlEntities []string
}

// PutPermission calls POST /v1/permissions (create or update).
func (c *Client) PutPermission(ctx context.Context, in PermissionInput) (PermissionView, error) {
	var out PermissionView
	body := map[string]any{
		"user": map[string]string{"id": in.UserID}, "workspace": map[string]string{"id": in.Workspace},
		"role": in.Role, "status": in.Status,
	}
	if in.CustomerRoles != nil {
		body["customerRoles"] = in.CustomerRoles
	}
	if in.AccessControlEntities != nil {
		body["accessControlEntities"] = in.AccessControlEntities
	}
	_, _, err := c.Call(ctx, "POST", "/v1/permissions", body, &out, nil)
	return out, err
}

// ListPermissions calls GET /v1/workspaces/{id}/permissions; Filters take
// q, email, status, includeTechnicalUsers, user.
func (c *Client) ListPermissions(ctx context.Context, workspace string, o ListOptions) ([]PermissionView, int, error) {
	var out []PermissionView
	env, _, err := c.Call(ctx, "GET", "/v1/workspaces/"+url.PathEscape(workspace)+"/permissions"+o.query(), nil, &out, nil)
	if err != nil {
		return nil, 0, err
	}
	return out, env.Total, nil
}
