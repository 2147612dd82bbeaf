package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// DefaultMaxBody is the default limit on request bodies: 1 MiB.
const DefaultMaxBody int64 = 1 << 20

// Config configures a Handler.
type Config struct {
	// Store keeps the model. Required.
	Store keys.Store
	// Hasher hashes new access keys and verifies presented ones. It must be
	// the gateway's Hasher (same pepper). Default: plain SHA-256.
	Hasher *keys.Hasher
	// Sealer encrypts signing secrets. If nil, the secret routes answer 503
	// "master key not configured".
	Sealer *keys.Sealer
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Logger receives errors the API cannot report to the caller (store
	// failures, a failed activity-log write). It never receives keys,
	// secrets, hashes or request bodies. Default: discard.
	Logger *slog.Logger
	// MaxBody limits request bodies in bytes. Default: DefaultMaxBody.
	MaxBody int64
	// DefaultKeyLifetime is the expiry of the bootstrap key when the request
	// gives none. Default: one year.
	DefaultKeyLifetime time.Duration
	// Credentials says which credentials each user type may hold: creating
	// one the user's type does not allow is 409, and an access key of such
	// a user does not authenticate. Default: keys.DefaultCredentialPolicy.
	Credentials keys.CredentialPolicy
	// Verifier answers POST /v1/verify with the gateway's logic. If nil,
	// that route answers 503.
	Verifier Verifier
	// Tokens, when set, lets callers authenticate with an access token
	// instead of an access key. If nil, only access keys authenticate.
	Tokens TokenVerifier
	// OnEvent, when set, is called after a call put something in the
	// outbox or back in line (a replay), so the event dispatcher looks at
	// once. Optional.
	OnEvent func()
	// SessionLifetime is how long a console session (POST
	// /v1/console/session) lasts, never longer than the key it came from.
	// Default: DefaultSessionLifetime.
	SessionLifetime time.Duration
}

// Handler is the admin REST API (SPEC section 5) as a plain http.Handler.
// Create it with New; it is safe for concurrent use.
type Handler struct {
	store    keys.Store
	hasher   *keys.Hasher
	sealer   *keys.Sealer
	now      func() time.Time
	log      *slog.Logger
	maxBody  int64
	keyLife  time.Duration
	creds    keys.CredentialPolicy
	verifier Verifier
	tokens   TokenVerifier
	onEvent  func()
	mux      *http.ServeMux
	openapi  []byte
	// sessionLife is the lifetime of console sessions.
	sessionLife time.Duration
}

// New returns a Handler for cfg. It panics if cfg.Store is nil.
func New(cfg Config) *Handler {
	if cfg.Store == nil {
		panic("admin: Config.Store is required")
	}
	h := &Handler{
		store:    cfg.Store,
		hasher:   cfg.Hasher,
		sealer:   cfg.Sealer,
		now:      cfg.Now,
		log:      cfg.Logger,
		maxBody:  cfg.MaxBody,
		keyLife:  cfg.DefaultKeyLifetime,
		creds:    cfg.Credentials,
		verifier: cfg.Verifier,
		tokens:   cfg.Tokens,
		onEvent:  cfg.OnEvent,
		mux:      http.NewServeMux(),
	}
	if h.creds == nil {
		h.creds = keys.DefaultCredentialPolicy()
	}
	if h.hasher == nil {
		h.hasher = keys.NewHasher(nil)
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBody
	}
	if h.keyLife <= 0 {
		h.keyLife = 365 * 24 * time.Hour
	}
	h.sessionLife = cfg.SessionLifetime
	if h.sessionLife <= 0 {
		h.sessionLife = DefaultSessionLifetime
	}
	h.openapi = buildOpenAPI()
	allowed := map[string][]string{}
	for _, rt := range routeTable {
		h.mux.Handle(rt.Method+" "+rt.Pattern, h.wrap(rt))
		if rt.Method == http.MethodGet {
			allowed[rt.Pattern] = append(allowed[rt.Pattern], http.MethodHead)
		}
		allowed[rt.Pattern] = append(allowed[rt.Pattern], rt.Method)
	}
	for pattern, methods := range allowed {
		slices.Sort(methods)
		allow := strings.Join(methods, ", ")
		h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeProblem(w, newError(http.StatusMethodNotAllowed, "method-not-allowed",
				"Method not allowed", "allowed: "+allow))
		})
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, errNotFound("route"))
	})
	return h
}

// ServeHTTP routes r to the API's routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// authMode says how a route authenticates its caller.
type authMode int

const (
	// authAdmin: an access key of a superadmin or tenant admin, or a trusted caller.
	authAdmin authMode = iota
	// authSelf: any ACTIVE user's own usable key (accepting an invitation), or a trusted caller.
	authSelf
	// authTrusted: trusted callers only (bootstrap); everyone else gets 404.
	authTrusted
	// authPublic: no credential (the OpenAPI document).
	authPublic
	// authVerify: the route's Verifier authenticates the caller through the
	// gateway's cache; calls are data plane, not in the activity log.
	authVerify
	// authRead: any caller that administers a tenant or holds an ACTIVE
	// permission in its key's tenant (403 otherwise); the route decides
	// what the caller may read (its own records, or profiles).
	authRead
	// authAny: any authenticated caller; the route decides (the console
	// sign-in, which refuses some callers with a reason).
	authAny
)

// route is one row of the route table. The table is data so the OpenAPI
// document and its test can enumerate every route.
type route struct {
	Method  string
	Pattern string
	Auth    authMode
	// Summary, Tag, Request (body schema), Response (data schema), List and
	// Query describe the route in the OpenAPI document.
	Summary  string
	Tag      string
	Request  string
	Response string
	List     bool
	Status   int
	Query    []string
	// QueryDocs documents query parameters whose meaning differs from queryDocs.
	QueryDocs map[string]obj
	// Alias names the route this one serves under another path (the MTM
	// paths of seed 001), for the OpenAPI document.
	Alias string
	// NoPrecondition: a DELETE that needs no If-Match (no version).
	NoPrecondition bool
	// OptionalPrecondition: a POST that takes an optional If-Match (412
	// when it does not match).
	OptionalPrecondition bool
	// OptionalBody: a POST whose body may be left out.
	OptionalBody bool
	handle       func(h *Handler, w http.ResponseWriter, r *http.Request, c *caller) error
}

// canonical is the pattern of the route rt serves: its own, or the one it
// is an alias of.
func (rt *route) canonical() string {
	if rt.Alias != "" {
		return rt.Alias
	}
	return rt.Pattern
}

// Routes returns "METHOD /pattern" for every route, in table order.
func Routes() []string {
	out := make([]string, len(routeTable))
	for i, rt := range routeTable {
		out[i] = rt.Method + " " + rt.Pattern
	}
	return out
}

var (
	listQuery       = []string{"page", "size", "sort"}
	userListQuery   = append([]string{"q", "status", "type", "role", "tenant"}, listQuery...)
	permListQuery   = append([]string{"q", "email", "status", "includeTechnicalUsers", "user"}, listQuery...)
	activityQuery   = append([]string{"actor", "from", "to", "tenant"}, listQuery...)
	tenantListQuery = append([]string{"q", "status"}, listQuery...)
	roleQuery       = []string{"workspace"}
	webhookQuery    = append([]string{"tenant"}, listQuery...)
	deliveryQuery   = append([]string{"status", "kind", "tenant"}, listQuery...)
	importQuery     = []string{"from", "tenant", "dryRun", "continue", "expires", "window", "tykPlain"}
	importQueryDocs = map[string]obj{
		"from":     {"type": "string", "enum": []string{"kong", "tyk", "unkey", "krakend", "csv"}, "description": "the format of the body (required)"},
		"tenant":   {"type": "string", "description": "the tenant to import into; default: the caller's tenant"},
		"dryRun":   {"type": "boolean", "default": false, "description": "report what would be created, updated, skipped and failed; write nothing"},
		"continue": {"type": "boolean", "default": false, "description": "write everything but the failed items; without it one failed item writes nothing (422)"},
		"expires":  {"type": "string", "description": "expiry of keys the file gives none (RFC 3339 time, date, or a duration such as 8760h); required when any key has none"},
		"window":   {"type": "string", "default": "2m", "description": "the routes' rate-limit window, to map the peer's limits to requestLimit"},
		"tykPlain": {"type": "boolean", "default": false, "description": "Tyk ran with hash_keys false: session ids are the keys themselves"},
	}
	usageQuery = []string{"from", "to", "step"}
)

// mtmPrefix is where seed 001's MTM clients call the permissions API.
const mtmPrefix = "/services/mtm"

// routeTable lists every route of the API.
var routeTable = []route{
	{Method: "GET", Pattern: "/v1/openapi.json", Auth: authPublic, Summary: "This API's OpenAPI 3.1 document", Tag: "meta", handle: (*Handler).openAPI},
	{Method: "POST", Pattern: "/v1/bootstrap", Auth: authTrusted, Summary: "Create a tenant, a superadmin user and its first key (trusted local callers only)", Tag: "meta", Request: "BootstrapRequest", Response: "Bootstrap", Status: 201, handle: (*Handler).bootstrap},

	{Method: "GET", Pattern: "/v1/tenants", Summary: "List tenants", Tag: "tenants", Response: "Tenant", List: true, Query: tenantListQuery, handle: (*Handler).listTenants},
	{Method: "POST", Pattern: "/v1/tenants", Summary: "Create a tenant (superadmin)", Tag: "tenants", Request: "TenantCreate", Response: "Tenant", Status: 201, handle: (*Handler).createTenant},
	{Method: "GET", Pattern: "/v1/tenants/{id}", Summary: "Get a tenant", Tag: "tenants", Response: "Tenant", handle: (*Handler).getTenant},
	{Method: "PATCH", Pattern: "/v1/tenants/{id}", Summary: "Change a tenant's name or status (If-Match)", Tag: "tenants", Request: "TenantPatch", Response: "Tenant", handle: (*Handler).patchTenant},
	{Method: "GET", Pattern: "/v1/tenants/{id}/export", Summary: "The tenant as a tenant file (users, roles, permissions, limits, key metadata; never a secret or a hash) and the stored versions, for keygate export and apply", Tag: "tenants", Response: "TenantExport", handle: (*Handler).exportTenant},
	{Method: "GET", Pattern: "/v1/schemas/tenant-file.json", Auth: authPublic, Summary: "The JSON Schema of the tenant file (keygate export, keygate apply)", Tag: "meta", handle: (*Handler).tenantFileSchema},

	{Method: "GET", Pattern: "/v1/tenants/{id}/overview", Summary: "The gateway overview of a tenant: its routes' requests in the last hour and the last day (allowed, rate-limited, refused by reason, throttled), hour by hour, the top users by requests and by refusals, and the keys expiring in the next 14 days", Tag: "tenants", Response: "Overview", Query: []string{"top", "keys"}, handle: (*Handler).overview},
	{Method: "GET", Pattern: "/v1/tenants/{id}/usage", Summary: "A tenant's gateway requests per step (default: per hour over the last 24 hours and the current one), by outcome and refusal reason", Tag: "tenants", Response: "TenantUsage", Query: usageQuery, handle: (*Handler).tenantUsage},
	{Method: "GET", Pattern: "/v1/tenants/{id}/usage/users", Summary: "The users of a tenant's routes ranked by requests or refusals over [from, to) (default: the last 24 hours and the current one), paged", Tag: "tenants", Response: "UserUsage", List: true, Query: []string{"by", "from", "to", "page", "size"}, handle: (*Handler).tenantUsageUsers},
	{Method: "GET", Pattern: "/v1/tenants/{id}/keys/expiring", Summary: "A tenant's ACTIVE keys that expire before ?before= (default: in the next 14 days), soonest first, paged", Tag: "tenants", Response: "ExpiringKey", List: true, Query: []string{"before", "page", "size"}, handle: (*Handler).tenantExpiringKeys},

	{Method: "POST", Pattern: "/v1/console/session", Auth: authAny, Summary: "Sign in to the console: exchange the presented access key or access token for a short-lived console session token bound to that key (it ends when the key stops working); SERVICE and APPLICATION users, and users without an ACTIVE permission in the key's tenant, are refused (403)", Tag: "console", Request: "ConsoleSessionInput", Response: "ConsoleSession", Status: 201, handle: (*Handler).createSession},
	{Method: "GET", Pattern: "/v1/console/session", Auth: authAny, Summary: "Who the caller is: user, tenant, the role and status of its permission there, whether it administers it", Tag: "console", Response: "ConsoleSession", handle: (*Handler).getSession},
	{Method: "DELETE", Pattern: "/v1/console/session", Auth: authAny, Summary: "Sign out: end the presented console session; 204", Tag: "console", Status: 204, NoPrecondition: true, handle: (*Handler).deleteSession},

	{Method: "GET", Pattern: "/v1/users", Auth: authRead, Summary: "List users; a MEMBER or VIEWER lists the profiles (id, name, type, role, status) of its tenant's users", Tag: "users", Response: "User", List: true, Query: userListQuery, handle: (*Handler).listUsers},
	{Method: "POST", Pattern: "/v1/users", Summary: "Create a user and its permission in its primary tenant", Tag: "users", Request: "UserInput", Response: "User", Status: 201, handle: (*Handler).createUser},
	{Method: "GET", Pattern: "/v1/users/{id}", Auth: authRead, Summary: "Get a user: in full to its administrators and to itself, as a profile (id, name, type, role, status) to the MEMBERs and VIEWERs of its tenants", Tag: "users", Response: "User", handle: (*Handler).getUser},
	{Method: "PATCH", Pattern: "/v1/users/{id}", Summary: "Change a user (JSON merge patch, If-Match)", Tag: "users", Request: "UserInput", Response: "User", handle: (*Handler).patchUser},
	{Method: "DELETE", Pattern: "/v1/users/{id}", Summary: "Delete a user (If-Match): DELETING (its keys revoked, secrets deactivated, permissions archived, console sessions ended, at once), then DELETED (its usage counts taken off it); 200 with the DELETED user, 202 with the DELETING one when the second step runs later", Tag: "users", Response: "User", handle: (*Handler).deleteUser},
	{Method: "GET", Pattern: "/v1/users/{id}/permissions", Auth: authRead, Summary: "A user's permissions in every tenant the caller may see: all of them for superadmins and the user itself, its tenant's for a tenant admin", Tag: "permissions", Response: "Permission", List: true, Query: []string{"page", "size"}, handle: (*Handler).userPermissions},

	{Method: "GET", Pattern: "/v1/users/{id}/keys", Auth: authRead, Summary: "List a user's access keys (masked); users read their own", Tag: "keys", Response: "Key", List: true, Query: listQuery, handle: (*Handler).listKeys},
	{Method: "POST", Pattern: "/v1/users/{id}/keys", Summary: "Create an access key; the key is returned once. 409 unless the user holds an ACTIVE permission in the key's tenant", Tag: "keys", Request: "KeyCreate", Response: "Key", Status: 201, handle: (*Handler).createKey},
	{Method: "GET", Pattern: "/v1/users/{id}/keys/{keyId}", Auth: authRead, Summary: "Get an access key (masked); users read their own", Tag: "keys", Response: "Key", handle: (*Handler).getKey},
	{Method: "PATCH", Pattern: "/v1/users/{id}/keys/{keyId}", Summary: "Rename, change expiry, enable or disable a key (If-Match)", Tag: "keys", Request: "KeyPatch", Response: "Key", handle: (*Handler).patchKey},
	{Method: "DELETE", Pattern: "/v1/users/{id}/keys/{keyId}", Summary: "Revoke a key for good (If-Match)", Tag: "keys", Response: "Key", handle: (*Handler).deleteKey},
	{Method: "POST", Pattern: "/v1/users/{id}/keys/{keyId}/replace", Summary: "Replace a key, optionally after a grace period; the new key is returned once", Tag: "keys", Request: "KeyReplace", Response: "Key", Status: 201, handle: (*Handler).replaceKey},

	{Method: "GET", Pattern: "/v1/users/{id}/secrets", Summary: "List a user's signing secrets (no values)", Tag: "secrets", Response: "Secret", List: true, Query: listQuery, handle: (*Handler).listSecrets},
	{Method: "POST", Pattern: "/v1/users/{id}/secrets", Summary: "Create a signing secret (at most two live); the value is returned once", Tag: "secrets", Request: "SecretInput", Response: "Secret", Status: 201, handle: (*Handler).createSecret},
	{Method: "PATCH", Pattern: "/v1/users/{id}/secrets/{secretId}", Summary: "Rename, activate or deactivate a signing secret (If-Match)", Tag: "secrets", Request: "SecretInput", Response: "Secret", handle: (*Handler).patchSecret},
	{Method: "DELETE", Pattern: "/v1/users/{id}/secrets/{secretId}", Summary: "Delete a signing secret (If-Match); 204", Tag: "secrets", Status: 204, handle: (*Handler).deleteSecret},

	{Method: "GET", Pattern: "/v1/users/{id}/roles", Auth: authRead, Summary: "All the roles of the user, one entry per tenant it holds a permission in (\"tenants\"), with its personal data (\"user\"), and the roles of its permission in ?workspace= (default: the caller's tenant, for a superadmin the user's primary tenant): the roles that count there. Users read their own", Tag: "roles", Response: "Roles", Query: roleQuery, handle: (*Handler).getRoles},
	{Method: "GET", Pattern: "/v1/users/{id}/roles/{roleKey}", Auth: authRead, Summary: "The roles of the user's permission in ?workspace= when roleKey is one of them (its standard role or a customer role); 404 otherwise", Tag: "roles", Response: "Roles", Query: roleQuery, handle: (*Handler).getRole},
	{Method: "PUT", Pattern: "/v1/users/{id}/roles/{roleKey}", Summary: "Set the permission's standard role (ADMIN, MEMBER, VIEWER) or add a customer role, in ?workspace=; takes effect at once on the gateway and the admin API", Tag: "roles", Response: "Roles", Query: roleQuery, handle: (*Handler).putRole},
	{Method: "DELETE", Pattern: "/v1/users/{id}/roles/{roleKey}", Summary: "Remove a customer role, or set the standard role back to the default (MEMBER), in ?workspace=", Tag: "roles", Response: "Roles", Query: roleQuery, handle: (*Handler).deleteRole},

	{Method: "GET", Pattern: "/v1/workspaces/{id}/permissions", Summary: "List the permissions of a workspace (tenant)", Tag: "permissions", Response: "Permission", List: true, Query: permListQuery, handle: (*Handler).listPermissions},
	{Method: "POST", Pattern: "/v1/permissions", Summary: "Create or update the permission of a user in a workspace", Tag: "permissions", Request: "PermissionInput", Response: "Permission", Status: 200, handle: (*Handler).putPermission},
	{Method: "GET", Pattern: mtmPrefix + "/v1/workspaces/{id}/permissions", Alias: "/v1/workspaces/{id}/permissions", Summary: "Alias of GET /v1/workspaces/{id}/permissions at the path of the MTM API (seed 001)", Tag: "permissions", Response: "Permission", List: true, Query: permListQuery, handle: (*Handler).listPermissions},
	{Method: "POST", Pattern: mtmPrefix + "/v1/permissions", Alias: "/v1/permissions", Summary: "Alias of POST /v1/permissions at the path of the MTM API (seed 001)", Tag: "permissions", Request: "PermissionInput", Response: "Permission", Status: 200, handle: (*Handler).putPermission},
	{Method: "GET", Pattern: "/v1/permissions/{id}", Summary: "Get a permission by id (its \"self\" link)", Tag: "permissions", Response: "Permission", handle: (*Handler).getPermission},
	{Method: "POST", Pattern: "/v1/permissions/{id}/accept", Auth: authSelf, Summary: "Accept an invitation (INVITED → ACTIVE), with the invited user's own key", Tag: "permissions", Response: "Permission", handle: (*Handler).acceptPermission},

	{Method: "POST", Pattern: "/v1/verify", Auth: authVerify, Summary: "Check an access key or access token as the gateway would (and count it against the user's request limit), for services that check keys themselves; the caller's key needs role ADMIN or customer role " + VerifyRole + " in the tenant", Tag: "verify", Request: "VerifyRequest", Response: "VerifyResult", handle: (*Handler).verify},

	{Method: "GET", Pattern: "/v1/webhooks", Summary: "List webhooks (a tenant admin: its tenant's; a superadmin: all, or ?tenant=)", Tag: "events", Response: "Webhook", List: true, Query: webhookQuery, handle: (*Handler).listWebhooks},
	{Method: "POST", Pattern: "/v1/webhooks", Summary: "Create a webhook: URL, event types, enabled; its signing secret (whsec_…) is returned once", Tag: "events", Request: "WebhookInput", Response: "Webhook", Status: 201, handle: (*Handler).createWebhook},
	{Method: "GET", Pattern: "/v1/webhooks/{id}", Summary: "Get a webhook (no secret)", Tag: "events", Response: "Webhook", handle: (*Handler).getWebhook},
	{Method: "PATCH", Pattern: "/v1/webhooks/{id}", Summary: "Change a webhook's URL, event types, enabled flag or description (If-Match)", Tag: "events", Request: "WebhookInput", Response: "Webhook", handle: (*Handler).patchWebhook},
	{Method: "POST", Pattern: "/v1/webhooks/{id}/rotate-secret", Summary: "Give a webhook a new signing secret (whsec_…, returned once); during the optional gracePeriod deliveries are signed with the new and the old secret", Tag: "events", Request: "WebhookRotate", Response: "Webhook", OptionalPrecondition: true, OptionalBody: true, handle: (*Handler).rotateWebhookSecret},
	{Method: "DELETE", Pattern: "/v1/webhooks/{id}", Summary: "Delete a webhook (If-Match); 204", Tag: "events", Status: 204, handle: (*Handler).deleteWebhook},
	{Method: "GET", Pattern: "/v1/webhooks/{id}/deliveries", Summary: "A webhook's deliveries, newest first: status, attempts, last response", Tag: "events", Response: "Delivery", List: true, Query: []string{"status", "page", "size", "sort"}, handle: (*Handler).webhookDeliveries},
	{Method: "GET", Pattern: "/v1/deliveries", Summary: "Deliveries of webhooks and e-mail notifications, newest first", Tag: "events", Response: "Delivery", List: true, Query: deliveryQuery, handle: (*Handler).allDeliveries},
	{Method: "POST", Pattern: "/v1/deliveries/{id}/replay", Summary: "Send a delivered or failed delivery again (same event and webhook-id), with a new series of retries", Tag: "events", Response: "Delivery", handle: (*Handler).replayDelivery},
	{Method: "POST", Pattern: "/v1/imports", Summary: "Import users and keys from another gateway's export (superadmin, or an administrator of the tenant): every key keeps working as it is", Tag: "imports", Request: fileBody, Response: "ImportReport", Status: 201, Query: importQuery, QueryDocs: importQueryDocs, handle: (*Handler).importFile},

	{Method: "GET", Pattern: "/v1/users/{id}/history", Summary: "A user's changelog, newest first", Tag: "audit", Response: "HistoryEntry", List: true, Query: []string{"page", "size"}, handle: (*Handler).history},
	{Method: "GET", Pattern: "/v1/activity", Summary: "The admin API activity log, newest first", Tag: "audit", Response: "Activity", List: true, Query: activityQuery, handle: (*Handler).activity},
	{Method: "GET", Pattern: "/v1/users/{id}/usage", Summary: "A user's gateway requests per step (default: per hour over the last 7 days): allowed, rate-limited (429) and refused (401/403); hourly counts are kept 8 days", Tag: "audit", Response: "Usage", Query: []string{"from", "to", "step"}, handle: (*Handler).usage},
	{Method: "GET", Pattern: "/v1/users/{id}/export", Summary: "Everything stored about a user as one document (no secret values, no hashes)", Tag: "audit", Response: "Export", handle: (*Handler).export},
}

// statusRecorder remembers the status written, for the activity log, and
// carries the call's state to the envelope (timestamp, account).
type statusRecorder struct {
	http.ResponseWriter
	status int
	state  *callState
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// callState is what the activity log records about a call.
type callState struct {
	actor  string
	tenant string
	// path, when set, is recorded instead of the request path.
	path string
	// account is the tenant of the caller's key, the envelope's account
	// when the call acted on no tenant of its own.
	account string
	// at is when the call arrived, the envelope's timestamp.
	at time.Time
}

type callStateKey struct{}

// setActivityPath records path instead of the request path (e.g. with the
// import's source), for the activity log.
func setActivityPath(r *http.Request, path string) {
	if st, ok := r.Context().Value(callStateKey{}).(*callState); ok {
		st.path = path
	}
}

// setTenant records the tenant a call acted on, for the activity log.
func setTenant(r *http.Request, tenant string) {
	if st, ok := r.Context().Value(callStateKey{}).(*callState); ok && st.tenant == "" {
		st.tenant = tenant
	}
}

// wrap authenticates, runs a route, answers its error as a problem and
// records the call in the activity log.
func (h *Handler) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &callState{at: h.now().UTC()}
		r = r.WithContext(context.WithValue(r.Context(), callStateKey{}, st))
		rec := &statusRecorder{ResponseWriter: w, state: st}
		func() {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					h.log.Error("admin: handler panicked", "method", r.Method, "route", rt.Pattern, "panic", fmt.Sprint(v))
					if rec.status == 0 {
						writeProblem(rec, errInternal)
					}
				}
			}()
			err := h.serve(rt, rec, r, st)
			if err != nil {
				h.fail(rec, r, rt, err)
			}
		}()
		if rt.Auth == authPublic || rt.Auth == authVerify {
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Second)
		defer cancel()
		path := r.URL.Path
		if st.path != "" {
			path = st.path
		}
		err := h.store.AppendActivity(ctx, keys.Activity{
			At:     h.now().UTC(),
			Actor:  st.actor,
			Method: r.Method,
			Path:   clip(path, 512),
			Status: status,
			Tenant: st.tenant,
		})
		if err != nil {
			h.log.Error("admin: recording activity failed", "method", r.Method, "route", rt.Pattern, "error", err)
		}
	})
}

func (h *Handler) serve(rt route, w http.ResponseWriter, r *http.Request, st *callState) error {
	ctx := r.Context()
	var c *caller
	switch rt.Auth {
	case authPublic, authVerify:
		c = &caller{}
	case authTrusted:
		actor, ok := trustedActor(ctx)
		if !ok {
			return errNotFound("route")
		}
		c = &caller{actor: actor, trusted: true, superadmin: true}
	case authSelf:
		if actor, ok := trustedActor(ctx); ok {
			c = &caller{actor: actor, trusted: true, superadmin: true}
			break
		}
		k, u, err := h.authenticateKey(ctx, r)
		if err != nil {
			return err
		}
		c = &caller{actor: u.ID, user: u, keyID: k.ID, key: k, keyTenant: k.TenantID}
		st.account = k.TenantID
	case authAdmin, authRead, authAny: // authAdmin is the zero value of a route's Auth
		var err error
		if c, err = h.authenticate(ctx, r); err != nil {
			return err
		}
		st.actor, st.account = c.actor, c.keyTenant
		switch rt.Auth {
		case authAdmin:
			err = c.requireAdmin()
		case authRead:
			err = c.requireReader()
		}
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("route %s %s: unknown authentication mode %d", rt.Method, rt.Pattern, rt.Auth)
	}
	st.actor = c.actor
	return rt.handle(h, w, r, c)
}

// fail answers err as a problem; unexpected errors are logged, not shown.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, rt route, err error) {
	ae, known := problemFor(err)
	if !known {
		h.log.Error("admin: request failed", "method", r.Method, "route", rt.Pattern, "error", err)
	}
	writeProblem(w, ae)
}
