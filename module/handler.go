package module

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/time/rate"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/ratelimit"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the `keygate` gateway handler: it authenticates the request's
// access key or signature against the key store, checks the user's
// permission in the route's tenant, enforces the user's request limit and
// forwards the request with identity headers. Failures are answered here
// as RFC 9457 problem+json; the next handler is not called.
type Handler struct {
	// Tenant whose permission the caller needs: an id or a placeholder
	// such as {http.request.host.labels.2}. Required.
	Tenant string `json:"tenant,omitempty"`

	// Schemes accepted on this route: access_key, wallee_mac, wallee_jwt,
	// http_signature, sigv4, access_token. Default: all of them.
	Schemes []string `json:"schemes,omitempty"`

	// KeyHeader carries access keys besides Authorization: Bearer.
	// Default: X-Api-Key.
	KeyHeader string `json:"key_header,omitempty"`

	// KeyQuery, when set, also accepts access keys in this query parameter.
	// Default: off (query strings end up in logs).
	KeyQuery string `json:"key_query,omitempty"`

	// ForeignKeys also accepts keys imported from another gateway (keygate
	// import), whatever their shape, where the old gateway took them: in
	// KeyHeader (e.g. apikey for Kong), in KeyQuery, as Authorization:
	// Bearer, and, with key_header Authorization, as the raw Authorization
	// value (Tyk, KrakenD). They are found by their hash; kg_ keys take the
	// same path as without it. Default: off.
	ForeignKeys bool `json:"foreign_keys,omitempty"`

	// RequireRoles lets a request through only when the user's permission
	// role in the tenant, or one of its customer roles, is one of these.
	// Default: any ACTIVE permission.
	RequireRoles []string `json:"require_roles,omitempty"`

	// RequireACEs lets a request through only when the user's permission
	// in the tenant holds one of these access control entities (seed 000);
	// otherwise 403. Default: no entity required.
	RequireACEs []string `json:"require_ace,omitempty"`

	// Limit is the route's default request limit per window for users
	// without a requestLimit of their own. Default: 0, only users with a
	// requestLimit are limited.
	Limit int64 `json:"limit,omitempty"`

	// Window of the request limit. Default: 2m.
	Window caddy.Duration `json:"window,omitempty"`

	// MaxLimit caps a user's requestLimit on this route. Default: no cap.
	MaxLimit int64 `json:"max_limit,omitempty"`

	// OnStoreError is fail_closed (answer 503) or fail_open (allow and
	// count in-process) when the limiter's store is unreachable.
	// Default: fail_closed.
	OnStoreError string `json:"on_store_error,omitempty"`

	// MaxSkew bounds the age of signed requests' timestamps. Default: 5m.
	MaxSkew caddy.Duration `json:"max_skew,omitempty"`

	// ReplayProtection is on (single-use signatures that carry a nonce and
	// of unsafe methods), all (every signature single-use) or off.
	// Default: on.
	ReplayProtection string `json:"replay_protection,omitempty"`

	// SigV4Region, when set, must be the region of SigV4 credentials.
	SigV4Region string `json:"sigv4_region,omitempty"`

	// SigV4Service, when set, must be the service of SigV4 credentials.
	SigV4Service string `json:"sigv4_service,omitempty"`

	// SigV4MaxExpires caps X-Amz-Expires of presigned SigV4 URLs.
	// Default: 15m (AWS allows up to 7 days).
	SigV4MaxExpires caddy.Duration `json:"sigv4_max_expires,omitempty"`

	// SigV4UndeclaredPayload is what to do with a SigV4 request that has a
	// body and no X-Amz-Content-Sha256 header: refuse it (401), or read,
	// to read and hash the body before the signature can be checked (the
	// payload hash is part of what SigV4 signs). The AWS SDKs send the
	// header for S3 only; other clients can send it (signed), which lets
	// keygate check the signature before it reads a byte. With read, anyone
	// who knows a user id can make keygate hold a body until the
	// signature fails: bounded by max_signed_body and the per-client share
	// of signed_body_buffer. Default: refuse.
	SigV4UndeclaredPayload string `json:"sigv4_undeclared_payload,omitempty"`

	// RequireCovered names what signatures on this route must cover on top
	// of what every signature covers (method, target, and the body digest
	// when there is a body): header field names, or "host" / "@authority"
	// for the request's host. It can only add requirements.
	RequireCovered []string `json:"require_covered,omitempty"`

	// MaxSignedBody bounds, in bytes, the body keygate reads to check a
	// signed digest (draft-cavage Digest, RFC 9421 Content-Digest, SigV4
	// payload hash); a larger signed body is answered 413. Default: 10 MiB.
	MaxSignedBody int64 `json:"max_signed_body,omitempty"`

	// KeepMethodOverride forwards the method-override headers
	// X-HTTP-Method-Override, X-HTTP-Method and X-Method-Override (in any
	// spelling) to the upstream. By default they are removed: a signature
	// binds the request's method, and an upstream that honours them would
	// run a signed GET as a DELETE. keygate_auth cannot remove a header
	// from the request the proxy forwards, so it refuses (400) a request
	// that carries one. Default: removed (keygate), refused (keygate_auth).
	KeepMethodOverride bool `json:"keep_method_override,omitempty"`

	// HeaderPrefix of the identity headers. Default: X-Auth-
	HeaderPrefix string `json:"header_prefix,omitempty"`

	// KeepCredentials forwards the credential (Authorization, key header or
	// query parameter) to the upstream. Default: removed.
	KeepCredentials bool `json:"keep_credentials,omitempty"`

	// IdentityHeaders names the identity headers set on the forwarded
	// request (and, with forward auth, on the answer): user_id, user_name,
	// user_type, tenant, role, customer_roles, key_id, scheme,
	// access_control_entities (the permission's entities, comma separated,
	// an entity's own commas and percent signs percent-encoded), scope (the
	// user's scope), all, or none (the placeholders, such as
	// {http.auth.user.name}, are set anyway). Headers whose value is empty
	// are not set. Client-sent copies of every identity header are removed
	// whichever are set. Each header costs the proxy about 1.5 µs of CPU
	// per request (BENCHMARKS.md), so the default is what an upstream
	// needs to authorize: user_id, tenant, role and customer_roles (the
	// last only when the permission has customer roles); keygate_auth
	// offers all of them by default.
	IdentityHeaders []string `json:"identity_headers,omitempty"`

	// RateLimitHeaders selects the rate-limit fields of responses: ietf
	// (RateLimit-Policy and RateLimit), legacy (X-RateLimit-Limit,
	// X-RateLimit-Remaining, X-RateLimit-Reset), both, or none. A 429
	// always carries Retry-After. Default: ietf.
	RateLimitHeaders string `json:"rate_limit_headers,omitempty"`

	app        *App
	logger     *zap.Logger
	detector   *auth.Detector
	limiter    *ratelimit.Guarded
	replayMode auth.ReplayMode
	tenantRepl bool
	// tenantValue is Tenant boxed once, for the placeholder.
	tenantValue any
	roles       map[string]struct{}
	aces        map[string]struct{}
	require     []string
	// protected are the identity and credential header names that no
	// client spelling, Connection token or trailer may touch.
	protected []string
	hdr       identityHeaders
	// idSet is the identity headers to set (IdentityHeaders).
	idSet identitySet
	// rlHeaders is the rate-limit fields to write (RateLimitHeaders).
	rlHeaders ratelimit.HeaderSet
	keyHeader string
	lastWarn  *rate.Sometimes
	// sigv4ReadBody is SigV4UndeclaredPayload == "read".
	sigv4ReadBody bool
	// logged are the routeCredentials keys this route holds.
	logged []string
}

// numIdentity is how many identity headers there are.
const numIdentity = 10

// identityHeaders are the canonical names of the headers keygate sets.
type identityHeaders struct {
	userID, userName, userType, tenant, role, customerRoles, keyID, scheme, aces, scope string
}

func (h *identityHeaders) all() [numIdentity]string {
	return [numIdentity]string{h.userID, h.userName, h.userType, h.tenant, h.role, h.customerRoles, h.keyID, h.scheme, h.aces, h.scope}
}

// identitySet is a set of identity headers, one bit each.
type identitySet uint16

// The identity headers, in the order of identityHeaders.all.
const (
	idUserID identitySet = 1 << iota
	idUserName
	idUserType
	idTenant
	idRole
	idCustomerRoles
	idKeyID
	idScheme
	idACEs
	idScope
	idAll identitySet = 1<<iota - 1
	// idDefault is what an upstream needs to authorize the request.
	idDefault = idUserID | idTenant | idRole | idCustomerRoles
)

// identityNames are the names IdentityHeaders accepts.
var identityNames = map[string]identitySet{
	"user_id": idUserID, "user_name": idUserName, "user_type": idUserType, "tenant": idTenant,
	"role": idRole, "customer_roles": idCustomerRoles, "key_id": idKeyID, "scheme": idScheme,
	"access_control_entities": idACEs, "scope": idScope, "all": idAll, "none": 0,
}

// parseIdentitySet parses IdentityHeaders; none given means idDefault.
func parseIdentitySet(names []string) (identitySet, error) {
	if len(names) == 0 {
		return idDefault, nil
	}
	var set identitySet
	for _, n := range names {
		bit, ok := identityNames[n]
		if !ok {
			return 0, fmt.Errorf("identity_headers %q: must be one of user_id, user_name, user_type, tenant, role, customer_roles, key_id, scheme, access_control_entities, scope, all, none", n)
		}
		set |= bit
	}
	return set, nil
}

// parseRateLimitHeaders parses RateLimitHeaders.
func parseRateLimitHeaders(v string) (ratelimit.HeaderSet, error) {
	switch v {
	case "both":
		return ratelimit.HeadersIETF | ratelimit.HeadersLegacy, nil
	case "", "ietf":
		return ratelimit.HeadersIETF, nil
	case "legacy":
		return ratelimit.HeadersLegacy, nil
	case "none":
		return 0, nil
	}
	return 0, fmt.Errorf("rate_limit_headers %q: must be ietf, legacy, both or none", v)
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.keygate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision validates the route's options and takes the keygate app.
func (h *Handler) Provision(ctx caddy.Context) error {
	app, err := keygateApp(ctx)
	if err != nil {
		return err
	}
	atomic.AddInt64(&app.routes, 1)
	if err := h.provision(app, ctx.Logger()); err != nil {
		return err
	}
	// The keygate log format removes this route's credential fields too.
	h.logged = append(h.logged, "h:"+h.keyHeader)
	if h.KeyQuery != "" && h.detector.Schemes.Has(auth.AccessKey) {
		h.logged = append(h.logged, "q:"+h.KeyQuery)
	}
	for _, k := range h.logged {
		_, _ = routeCredentials.LoadOrStore(k, struct{}{})
	}
	return nil
}

// Cleanup releases the route's credential names from the log encoders.
func (h *Handler) Cleanup() error {
	for _, k := range h.logged {
		_, _ = routeCredentials.Delete(k)
	}
	h.logged = nil
	return nil
}

// provision sets the route up over app (split from Provision for tests).
func (h *Handler) provision(app *App, logger *zap.Logger) error {
	h.app, h.logger = app, logger
	if h.Tenant == "" {
		return errors.New("tenant is required")
	}
	h.tenantRepl = strings.Contains(h.Tenant, "{")
	h.tenantValue = h.Tenant
	set, err := auth.ParseSchemeSet(h.Schemes...)
	if err != nil {
		return fmt.Errorf("schemes: %w", err)
	}
	if h.KeyHeader == "" {
		h.KeyHeader = "X-Api-Key"
	}
	h.keyHeader = textproto.CanonicalMIMEHeaderKey(h.KeyHeader)
	h.detector = &auth.Detector{Schemes: set, KeyHeader: h.keyHeader, KeyQuery: h.KeyQuery, ForeignKeys: h.ForeignKeys, IsTokenKID: app.isTokenKID}
	if h.Window <= 0 {
		h.Window = caddy.Duration(2 * time.Minute)
	}
	if h.Limit < 0 || h.MaxLimit < 0 {
		return errors.New("limit and max_limit must not be negative")
	}
	h.lastWarn = &rate.Sometimes{Interval: 10 * time.Second}
	h.limiter = &ratelimit.Guarded{Primary: h.app.primary, Fallback: h.app.local, Mode: ratelimit.FailClosed}
	switch h.OnStoreError {
	case "", "fail_closed":
	case "fail_open":
		h.limiter.Mode = ratelimit.FailOpen
	default:
		return fmt.Errorf("on_store_error %q: must be fail_closed or fail_open", h.OnStoreError)
	}
	if h.MaxSkew <= 0 {
		h.MaxSkew = caddy.Duration(5 * time.Minute)
	}
	if h.SigV4MaxExpires < 0 || h.MaxSignedBody < 0 {
		return errors.New("sigv4_max_expires and max_signed_body must not be negative")
	}
	if h.SigV4MaxExpires == 0 {
		h.SigV4MaxExpires = caddy.Duration(auth.DefaultMaxPresignExpiry)
	}
	if h.MaxSignedBody == 0 {
		h.MaxSignedBody = auth.DefaultMaxBody
	}
	switch h.SigV4UndeclaredPayload {
	case "", "refuse":
	case "read":
		h.sigv4ReadBody = true
	default:
		return fmt.Errorf("sigv4_undeclared_payload %q: must be refuse or read", h.SigV4UndeclaredPayload)
	}
	if _, perClient := app.bodyBudget.Limits(); perClient > 0 && h.MaxSignedBody > perClient {
		logger.Warn("max_signed_body is larger than signed_body_per_client: signed bodies above the per-client share are always answered 503",
			zap.Int64("max_signed_body", h.MaxSignedBody), zap.Int64("signed_body_per_client", perClient))
	}
	h.require = make([]string, 0, len(h.RequireCovered))
	for _, name := range h.RequireCovered {
		n := strings.ToLower(strings.TrimSpace(name))
		if n == "host" {
			n = "@authority"
		}
		if n == "" || (strings.HasPrefix(n, "@") && n != "@authority") || strings.ContainsAny(n, " \t()\"") {
			return fmt.Errorf("require_covered %q: must be a header name, host or @authority", name)
		}
		h.require = append(h.require, n)
	}
	switch h.ReplayProtection {
	case "":
		h.replayMode = auth.ReplayOn
	case string(auth.ReplayOn), string(auth.ReplayAll), string(auth.ReplayOff):
		h.replayMode = auth.ReplayMode(h.ReplayProtection)
	default:
		return fmt.Errorf("replay_protection %q: must be on, all or off", h.ReplayProtection)
	}
	if len(h.RequireRoles) > 0 {
		h.roles = make(map[string]struct{}, len(h.RequireRoles))
		for _, r := range h.RequireRoles {
			h.roles[r] = struct{}{}
		}
	}
	if len(h.RequireACEs) > 0 {
		h.aces = make(map[string]struct{}, len(h.RequireACEs))
		for _, a := range h.RequireACEs {
			if a == "" {
				return errors.New("require_ace: an entity must not be empty")
			}
			h.aces[a] = struct{}{}
		}
	}
	if h.HeaderPrefix == "" {
		h.HeaderPrefix = "X-Auth-"
	}
	p := h.HeaderPrefix
	c := textproto.CanonicalMIMEHeaderKey
	h.hdr = identityHeaders{
		userID: c(p + "User-Id"), userName: c(p + "User-Name"), userType: c(p + "User-Type"),
		tenant: c(p + "Tenant"), role: c(p + "Role"), customerRoles: c(p + "Customer-Roles"),
		keyID: c(p + "Key-Id"), scheme: c(p + "Scheme"),
		aces: c(p + "Access-Control-Entities"), scope: c(p + "Scope"),
	}
	h.protected = h.protectedNames()
	if h.idSet, err = parseIdentitySet(h.IdentityHeaders); err != nil {
		return err
	}
	if h.rlHeaders, err = parseRateLimitHeaders(h.RateLimitHeaders); err != nil {
		return err
	}
	return nil
}

// stripIdentity removes client-sent copies of the identity headers, and
// spellings with '_' for '-' of the identity and credential headers, which
// upstreams such as CGI, PHP or some proxies treat as the same header.
func (h *Handler) stripIdentity(hd http.Header) {
	names := h.hdr.all()
	for _, name := range names {
		delete(hd, name)
	}
	for k := range hd {
		if strings.IndexByte(k, '_') >= 0 && h.isProtected(k) {
			delete(hd, k)
		}
	}
}

// outcome is why a request was refused, for logs and metrics; never sent.
type outcome struct {
	status int
	result string // metrics label: unauthenticated, forbidden, limited, store_error, bad_request
	reason string // log only
	err    error
	// key is the key a wrong secret was presented for (not usable for
	// anything but the failure-burst events).
	key *keys.Key
	// count is the reason in the usage counts when the status alone does
	// not tell it (expired, revoked); zero: derived from status and result.
	count keys.UsageOutcome
}

// usage is how the usage counts (the tenant overview) record the refusal.
func (o *outcome) usage() keys.UsageOutcome {
	if o.count != keys.UsageAllowed {
		return o.count
	}
	switch o.status {
	case http.StatusUnauthorized:
		if o.result == "signature_coverage" {
			return keys.UsageCoverage
		}
		return keys.UsageBadKey
	case http.StatusForbidden:
		return keys.UsageForbidden
	case http.StatusTooManyRequests:
		return keys.UsageLimited
	case http.StatusServiceUnavailable:
		return keys.UsageUnavailable
	}
	return keys.UsageInvalid
}

// revokedOutcome is the 401 of a credential that was good once: a key
// revoked, disabled or past its grace period, a user no longer ACTIVE, an
// archived tenant, a type that no longer allows it.
func revokedOutcome(reason string) *outcome {
	out := unauthenticated(reason, nil)
	out.count = keys.UsageRevoked
	return out
}

// unusableKey is the 401 of a key that verified but may not be used at now:
// expired, or revoked, disabled or past its replacement's grace period.
func unusableKey(k *keys.Key, reason string, now time.Time) *outcome {
	out := revokedOutcome(reason)
	if !now.Before(k.ExpiresAt) {
		out.count = keys.UsageExpired
	}
	return out
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.throttled(w, r) {
		tenant, _ := h.tenantOf(r)
		h.app.counts.Count(tenant, "", keys.UsageThrottled, time.Now())
		return nil
	}
	start := time.Now()
	// The one owner of the bytes this request buffers to check a signed
	// digest: released when the request is done (the upstream has read
	// the buffered body by then), whatever happened, panics included.
	var body bodySlot
	defer body.release()
	h.stripIdentity(r.Header)
	tenant, repl := h.tenantOf(r)
	id, out := h.admit(w, r, tenant, start, verifyVia{}, &body)
	authDuration.Observe(time.Since(start).Seconds())
	if out != nil {
		return h.refuse(w, r, id, out)
	}
	h.setIdentity(r.Header, repl, tenant, id)
	h.prepareForward(r)
	if c := okByScheme[id.scheme]; c != nil {
		c.Inc()
	}
	return next.ServeHTTP(w, r)
}

// tenantOf resolves the route's tenant for r.
func (h *Handler) tenantOf(r *http.Request) (string, *caddy.Replacer) {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if h.tenantRepl && repl != nil {
		return repl.ReplaceKnown(h.Tenant, ""), repl
	}
	return h.Tenant, repl
}

// verifyVia says how a signed request reaches keygate: its request-target
// as the client sent it (empty: originalURI of the request), and whether
// keygate gets its body (forward auth does not).
type verifyVia struct {
	target string
	noBody bool
}

// bodySlot is where a request's hold on the app's body budget lives. Its
// owner (the handler's ServeHTTP) declares it before anything can take from
// the budget and defers release; authenticate puts the hold in before
// Verify reserves a byte. So no path, refusal, panic or client gone, can
// skip the release: there is nothing to remember to do.
type bodySlot struct{ hold *auth.BodyHold }

// release gives back what the request holds; safe to call on an empty slot.
func (s *bodySlot) release() { s.hold.Release() }

func (v verifyVia) signedTarget(r *http.Request) string {
	if v.target != "" {
		return v.target
	}
	return originalURI(r)
}

// admit is the whole decision of the gateway and of forward auth: it
// authenticates r, checks the permission, applies the user's request
// limit (writing the RateLimit headers to w) and records the use.
//
// A single-use signature is remembered once every check of authenticate
// passed (so that refused requests, such as another tenant's, cannot fill
// the replay guard), and before the limiter (so that a replay is refused
// without taking from its user's quota); when the limiter then refuses or
// fails, it is forgotten again: the guard holds only signatures of
// requests that were let through.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, tenant string, now time.Time, via verifyVia, body *bodySlot) (identity, *outcome) {
	id, out := h.authenticate(r, tenant, now, via, body)
	if out == nil && id.replay {
		out = h.remember(r.Context(), id)
	}
	if out != nil {
		user := id.keyUser
		if id.principal != nil {
			user = id.principal.User.ID
		}
		h.app.counts.Count(tenant, user, out.usage(), now)
		return id, out
	}

	// Request limit: the user's own, else the route's, capped by max_limit.
	limit := id.principal.User.RequestLimit
	if limit <= 0 {
		limit = h.Limit
	}
	if h.MaxLimit > 0 && limit > h.MaxLimit {
		limit = h.MaxLimit
	}
	if limit > 0 {
		window := time.Duration(h.Window)
		ctx := r.Context()
		if bound := h.app.limiterBound; bound > 0 && time.Since(now) > h.app.storeTimeout {
			// The lookups already waited on a slow store: the request keeps
			// one budget, the limiter's bound from its start, so that two
			// waits on the same paused Redis do not add up.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, now.Add(bound))
			defer cancel()
		}
		d, err := h.limiter.Allow(ctx, ratelimit.Key(tenant, id.principal.User.ID), limit, window)
		if b := h.app.breaker; b != nil {
			circuitState.Set(float64(b.State()))
		}
		if err != nil {
			storeErrors.WithLabelValues("ratelimit").Inc()
			h.forget(r.Context(), id)
			h.app.counts.Count(tenant, id.principal.User.ID, keys.UsageUnavailable, now)
			return id, &outcome{status: http.StatusServiceUnavailable, result: "store_error", reason: "rate limiter unavailable", err: err}
		}
		ratelimit.WriteHeaderSet(w.Header(), d, window, h.rlHeaders)
		if lw := h.app.events.limitWatcher(); !d.Allowed || lw.Near(d.Limit, d.Remaining) {
			// Near the limit or over it: rare, so the event bookkeeping
			// stays off the common path (Near is two multiplications).
			lw.Observe(events.Usage{Tenant: tenant, User: id.principal.User.ID, Policy: "user", Limit: d.Limit,
				Remaining: d.Remaining, Window: window, Reset: d.Reset, Allowed: d.Allowed}, now)
		}
		switch {
		case d.Degraded:
			decisionDegraded.Inc()
			h.lastWarn.Do(func() {
				h.logger.Warn("rate limiter store unavailable; failing open and counting in-process")
			})
		case d.Allowed:
			decisionAllowed.Inc()
			if d.Leased {
				limiterLeased.Inc()
			}
		default:
			decisionLimited.Inc()
		}
		if !d.Allowed {
			h.forget(r.Context(), id)
			h.app.counts.Count(tenant, id.principal.User.ID, keys.UsageLimited, now)
			return id, &outcome{status: http.StatusTooManyRequests, result: "limited", reason: "request limit reached"}
		}
	}

	h.app.usage.Record(id.principal.User.ID, id.keyID, id.secretID, now)
	h.app.counts.Count(tenant, id.principal.User.ID, keys.UsageAllowed, now)
	return id, nil
}

// remember records the request's single-use signature in the replay
// guard: a replay is 401, a guard that cannot decide or is full 503 (never
// let through unguarded).
func (h *Handler) remember(ctx context.Context, id identity) *outcome {
	fresh, err := h.app.replay.Remember(ctx, id.replayKey, id.replayTTL)
	switch {
	case errors.Is(err, auth.ErrReplayFull):
		replayFull.Inc()
		h.app.replayFullWarn.Do(func() {
			h.logger.Warn("replay guard full: refusing signed requests that need a new entry (503) until entries expire; " +
				"more are counted in caddy_keygate_replay_full_total")
		})
		return &outcome{status: http.StatusServiceUnavailable, result: "replay_full", reason: "replay guard full", err: err}
	case err != nil:
		storeErrors.WithLabelValues("replay").Inc()
		return &outcome{status: http.StatusServiceUnavailable, result: "store_error", reason: "replay store unavailable", err: err}
	case !fresh:
		return unauthenticated("signature replayed", nil)
	}
	return nil
}

// forget drops the remembered signature of a request refused after
// remember (limited, or the limiter failed): it was not used. A failure
// leaves it remembered until it expires, which refuses more, never less.
func (h *Handler) forget(ctx context.Context, id identity) {
	if !id.replay {
		return
	}
	if err := h.app.replay.Forget(context.WithoutCancel(ctx), id.replayKey); err != nil {
		storeErrors.WithLabelValues("replay").Inc()
		if ce := h.logger.Check(zapcore.WarnLevel, "forgetting the signature of a refused request"); ce != nil {
			ce.Write(zap.Error(err))
		}
	}
}

// identity is who a request authenticated as.
type identity struct {
	cred      auth.Credential
	scheme    auth.Scheme
	principal *keys.Principal
	perm      *keys.Permission
	keyID     string // access key id, or empty
	keyUser   string // the user of that key, also when it was refused
	keyTenant string // the tenant an access key is valid in
	secretID  string // signing secret id, or empty
	// failUser, failKey and failTenant name the known user (and key) a
	// failed authentication was for, for the failure-burst events.
	failUser, failKey, failTenant string
	// replay is set for a signature that must be single-use: admit
	// remembers replayKey for replayTTL.
	replay    bool
	replayKey [32]byte
	replayTTL time.Duration
}

// authenticate finds and checks the credential and the permission. A
// signed request's body is held in body, which the caller owns and
// releases when the request is done; nil means the request ends here (the
// verify endpoint), and authenticate releases it itself.
func (h *Handler) authenticate(r *http.Request, tenant string, now time.Time, via verifyVia, body *bodySlot) (identity, *outcome) {
	var id identity
	cred, err := h.detector.Detect(r)
	if err != nil {
		if errors.Is(err, auth.ErrAmbiguous) {
			return id, &outcome{status: http.StatusBadRequest, result: "bad_request", reason: "more than one credential", err: err}
		}
		return id, unauthenticated("no valid credential", err)
	}
	id.cred = cred
	id.scheme = cred.Scheme
	ctx := r.Context()
	switch {
	case cred.Scheme == auth.AccessKey:
		k, p, out := h.app.verifyAccessKeyFrom(ctx, h.lookupKey, h.lookupPrincipal, cred.AccessKey, cred.KeyID, now)
		if k != nil {
			id.keyID, id.keyUser = k.ID, k.UserID
		}
		if out != nil {
			if fk := cmp.Or(out.key, k); fk != nil {
				id.failUser, id.failKey, id.failTenant = fk.UserID, fk.ID, fk.TenantID
			}
			return id, out
		}
		id.principal = p
		id.keyTenant = k.TenantID
	case cred.Scheme == auth.AccessToken:
		// Verified locally; the minting key and its user still come from
		// the cache so that revocation applies before exp.
		k, p, out := h.app.verifyAccessToken(ctx, h.lookupKey, h.lookupPrincipal, cred.Token, tenant, now)
		if k != nil {
			id.keyID, id.keyUser = k.ID, k.UserID
		}
		if out != nil {
			return id, out
		}
		id.principal = p
	case cred.Scheme.Signed():
		p, err := h.lookupPrincipal(ctx, cred.UserID, now)
		if err != nil {
			return id, lookupFailure("unknown signing user", err)
		}
		id.failUser, id.failTenant = p.User.ID, p.User.PrimaryTenant
		secrets, err := h.app.resolver.Secrets(ctx, p)
		if err != nil {
			return id, lookupFailure("loading signing secrets", err)
		}
		if len(secrets) == 0 {
			return id, unauthenticated("user has no live signing secret", nil)
		}
		var buf [keys.MaxLiveSecrets]auth.Secret
		cands := buf[:0]
		for _, s := range secrets {
			cands = append(cands, auth.Secret{ID: s.ID, Value: s.Value})
		}
		if body == nil {
			body = new(bodySlot)
			defer body.release()
		}
		if body.hold == nil {
			body.hold = h.app.bodyBudget.Hold(bodyClient(r))
		}
		v, err := cred.Verify(r, cands, auth.VerifyOptions{
			Now:              now,
			MaxSkew:          time.Duration(h.MaxSkew),
			OriginalURI:      via.signedTarget(r),
			NoBody:           via.noBody,
			Region:           h.SigV4Region,
			Service:          h.SigV4Service,
			MaxBody:          h.MaxSignedBody,
			Require:          h.require,
			MaxPresignExpiry: time.Duration(h.SigV4MaxExpires),
			Body:             body.hold,

			SigV4ReadUndeclaredBody: h.sigv4ReadBody,
		})
		if err != nil {
			if errors.Is(err, auth.ErrCoverage) {
				// A valid signature that binds too little: its user sent
				// it (for the usage counts and the top refusals).
				id.keyUser = p.User.ID
			}
			return id, signatureFailure(err)
		}
		id.principal = p
		id.secretID = v.SecretID
		if auth.NeedsReplayCheck(h.replayMode, r.Method, v.HasNonce) {
			id.replay, id.replayKey, id.replayTTL = true, v.ReplayKey, v.ReplayTTL
		}
	default:
		return id, unauthenticated("scheme not available on this route", nil)
	}

	if id.principal.User.Status != keys.UserActive {
		return id, revokedOutcome("user not active")
	}
	// The user's type allows this credential, and no tenant involved is
	// archived (401, like every credential problem).
	if out := h.checkPrincipal(r.Context(), &id, tenant, now); out != nil {
		return id, out
	}
	// A key is valid in exactly one tenant: elsewhere it is a valid
	// credential without permission (checked after the user's status, so an
	// inactive user's key is 401 everywhere).
	if id.keyTenant != "" && id.keyTenant != tenant {
		return id, &outcome{status: http.StatusForbidden, result: "forbidden", reason: "key belongs to another tenant"}
	}
	perm := id.principal.Permission(tenant)
	if perm == nil || perm.Status != keys.PermissionActive {
		return id, &outcome{status: http.StatusForbidden, result: "forbidden", reason: "no active permission in tenant"}
	}
	id.perm = perm
	if h.roles != nil && !h.hasRole(perm) {
		return id, &outcome{status: http.StatusForbidden, result: "forbidden", reason: "required role missing"}
	}
	if h.aces != nil && !h.hasACE(perm) {
		return id, &outcome{status: http.StatusForbidden, result: "forbidden", reason: "required access control entity missing"}
	}
	// The permission's lastLogin (written in batches, off the request path).
	h.app.usage.RecordLogin(id.principal.User.ID, tenant, now)
	return id, nil
}

// lookupKey reads a key through the cache; a fail_open route accepts a
// stale cached key while the store is unreachable.
func (h *Handler) lookupKey(ctx context.Context, id string, now time.Time) (*keys.Key, error) {
	if h.limiter.Mode == ratelimit.FailOpen {
		return h.app.resolver.KeyOrStale(ctx, id, now)
	}
	return h.app.resolver.Key(ctx, id, now)
}

// lookupPrincipal is lookupKey for users and their permissions.
func (h *Handler) lookupPrincipal(ctx context.Context, id string, now time.Time) (*keys.Principal, error) {
	if h.limiter.Mode == ratelimit.FailOpen {
		return h.app.resolver.PrincipalOrStale(ctx, id, now)
	}
	return h.app.resolver.Principal(ctx, id, now)
}

func (h *Handler) hasRole(p *keys.Permission) bool {
	if _, ok := h.roles[string(p.Role)]; ok {
		return true
	}
	for _, cr := range p.CustomerRoles {
		if _, ok := h.roles[cr]; ok {
			return true
		}
	}
	return false
}

// hasACE reports whether the permission holds one of the route's entities.
func (h *Handler) hasACE(p *keys.Permission) bool {
	for _, a := range p.AccessControlEntities {
		if _, ok := h.aces[a]; ok {
			return true
		}
	}
	return false
}

// joinEntities joins access control entities with commas, percent-encoding
// the commas and percent signs inside an entity so the list splits back
// unambiguously.
func joinEntities(aces []string) string {
	if !slices.ContainsFunc(aces, func(a string) bool { return strings.ContainsAny(a, ",%") }) {
		return strings.Join(aces, ",")
	}
	esc := strings.NewReplacer("%", "%25", ",", "%2C")
	out := make([]string, len(aces))
	for i, a := range aces {
		out[i] = esc.Replace(a)
	}
	return strings.Join(out, ",")
}

// signatureFailure maps a Verify error to the answer: a body over
// max_signed_body is 413, a spent body budget 503 (the request may pass
// later), anything else the one 401 of every credential problem, with
// signature_coverage in the log and metrics when the signature binds too
// little.
func signatureFailure(err error) *outcome {
	switch {
	case errors.Is(err, auth.ErrBodyTooLarge):
		return &outcome{status: http.StatusRequestEntityTooLarge, result: "body_too_large", reason: "signed body larger than max_signed_body", err: err}
	case errors.Is(err, auth.ErrBodyBudget):
		return &outcome{status: http.StatusServiceUnavailable, result: "busy", reason: "signed body buffer budget exhausted", err: err}
	case errors.Is(err, auth.ErrNoBody):
		return unauthenticated("signature covers a body digest; forward auth gets no body (use keygate as the proxy)", err)
	case errors.Is(err, auth.ErrUndeclaredPayload):
		return unauthenticated("sigv4 body without x-amz-content-sha256 (the route does not read bodies before their signature is checked: sigv4_undeclared_payload)", err)
	case errors.Is(err, auth.ErrCoverage):
		return &outcome{status: http.StatusUnauthorized, result: "signature_coverage", reason: "signature_coverage", err: err}
	}
	return unauthenticated("signature rejected", err)
}

func unauthenticated(reason string, err error) *outcome {
	return &outcome{status: http.StatusUnauthorized, result: "unauthenticated", reason: reason, err: err}
}

// bodyClient is the client a request's buffered body is counted under in
// the body budget: its client IP (honouring trusted_proxies), an IPv6
// client by its /64, as the auth_failures throttle counts it.
func bodyClient(r *http.Request) netip.Addr {
	ip, _ := clientAddr(r)
	return ratelimit.ThrottleKey(ip)
}

// lookupFailure tells a missing record (401) from an unreachable store
// (503): keygate never answers 401 because its store is down.
func lookupFailure(reason string, err error) *outcome {
	if errors.Is(err, keys.ErrNotFound) {
		return unauthenticated(reason, nil)
	}
	return &outcome{status: http.StatusServiceUnavailable, result: "store_error", reason: "key store unavailable", err: err}
}

// refuse logs the reason, counts it and answers with the problem body.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, id identity, out *outcome) error {
	h.countFailure(r, out.status)
	if out.status == http.StatusUnauthorized && id.failUser != "" {
		ip, _ := clientAddr(r)
		h.app.events.failureWatcher().Fail(id.failTenant, id.failUser, id.failKey, ip, time.Now())
	}
	scheme := "none"
	if id.scheme != 0 {
		scheme = id.scheme.String()
	}
	requestsTotal.WithLabelValues(out.result, scheme).Inc()
	level := zapcore.InfoLevel
	if out.status == http.StatusServiceUnavailable && out.result != "replay_full" {
		// (A full replay guard is warned about once per interval.)
		level = zapcore.WarnLevel
	}
	if ce := h.logger.Check(level, "request refused"); ce != nil {
		fields := []zap.Field{zap.Int("status", out.status), zap.String("reason", out.reason), zap.String("scheme", scheme)}
		if id.principal != nil {
			fields = append(fields, zap.String("user_id", id.principal.User.ID))
		}
		if id.keyID != "" {
			fields = append(fields, zap.String("key_id", id.keyID))
		}
		if out.err != nil {
			// auth and store errors carry no secrets by contract.
			fields = append(fields, zap.Error(out.err))
		}
		ce.Write(fields...)
	}
	writeProblem(w, out.status)
	return nil
}

// roleValues box the standard roles once, for placeholders.
var roleValues = map[keys.Role]any{keys.RoleAdmin: string(keys.RoleAdmin), keys.RoleMember: string(keys.RoleMember), keys.RoleViewer: string(keys.RoleViewer)}

// setIdentity sets the identity headers of idSet and the placeholders. The
// header values share one backing array (each slice capped at length 1, so
// an append by a later handler copies instead of overwriting its
// neighbour).
func (h *Handler) setIdentity(hd http.Header, repl *caddy.Replacer, tenant string, id identity) {
	u := &id.principal.User
	role := string(id.perm.Role)
	if set := h.idSet; set != 0 {
		// In the order of identityHeaders.all and of the identitySet bits.
		// The last two (entities, scope) get room only when they are set,
		// so the usual request allocates no more than before they existed.
		aces := set&idACEs != 0 && len(id.perm.AccessControlEntities) > 0
		scope := set&idScope != 0 && u.Scope != ""
		var v []string
		if aces || scope {
			v = new([numIdentity]string)[:]
		} else {
			v = new([numIdentity - 2]string)[:]
		}
		v[0], v[1], v[2], v[3], v[4], v[7] = u.ID, u.Name, string(u.Type), tenant, role, id.scheme.String()
		if set&idCustomerRoles != 0 && len(id.perm.CustomerRoles) > 0 {
			v[5] = strings.Join(id.perm.CustomerRoles, ",")
		}
		v[6] = id.keyID
		if v[6] == "" {
			v[6] = id.secretID
		}
		if aces {
			v[8] = joinEntities(id.perm.AccessControlEntities)
		}
		if scope {
			v[9] = u.Scope
		}
		names := h.hdr.all()
		for i := range v {
			if set&(1<<i) != 0 && v[i] != "" {
				hd[names[i]] = v[i : i+1 : i+1]
			}
		}
	}
	if repl != nil {
		repl.Set("http.auth.user.id", id.principal.IDValue)
		repl.Set("http.auth.user.name", id.principal.NameValue)
		if h.tenantValue != nil && !h.tenantRepl {
			repl.Set("http.auth.user.tenant", h.tenantValue)
		} else {
			repl.Set("http.auth.user.tenant", tenant)
		}
		if rv, ok := roleValues[id.perm.Role]; ok {
			repl.Set("http.auth.user.role", rv)
		} else {
			repl.Set("http.auth.user.role", role)
		}
	}
}

// originalURI is the request-target as the client sent it, before any
// rewrite or handle_path strip (signatures cover what the client sent).
func originalURI(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.RequestURI != "" {
		return orig.RequestURI
	}
	return r.RequestURI
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
