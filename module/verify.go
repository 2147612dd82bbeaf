package module

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/ratelimit"
)

// verifyWindow is the window of the request limit that POST /v1/verify
// counts in: the default of the gateway's routes, so that a user's calls
// through the gateway and through verify share one count.
const verifyWindow = 2 * time.Minute

// newVerifier returns the handler that POST /v1/verify runs credentials
// through: a gateway route for access keys and access tokens whose tenant
// is given per call. Nothing is copied: it is the gateway's decision.
func (a *App) newVerifier(logger *zap.Logger) (*Handler, error) {
	v := &Handler{Tenant: "-", Schemes: []string{"access_key", "access_token"}, ForeignKeys: true}
	if err := v.provision(a, logger); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	return v, nil
}

// Verify implements admin.Verifier.
func (a *App) Verify(ctx context.Context, callerKey string, req admin.VerifyRequest) (admin.VerifyResult, error) {
	if a.verifier == nil {
		return admin.VerifyResult{}, fmt.Errorf("verify: not set up: %w", keys.ErrUnavailable)
	}
	v := a.verifier
	now := time.Now()

	// The caller: an access key valid in its own tenant, with role ADMIN
	// or customer role VERIFIER there, or a superadmin's.
	callerID, ok := keys.ParseAccessKey(callerKey)
	if !ok {
		return admin.VerifyResult{}, admin.ErrVerifyUnauthorized
	}
	k, err := a.resolver.Key(ctx, callerID, now)
	if err != nil {
		return admin.VerifyResult{}, verifyLookupError(err)
	}
	cid, out := v.authenticate(bearerRequest(ctx, callerKey), k.TenantID, now, verifyVia{}, nil)
	if out != nil {
		if out.status == http.StatusServiceUnavailable {
			return admin.VerifyResult{}, fmt.Errorf("verify: caller: %s: %w", out.reason, keys.ErrUnavailable)
		}
		return admin.VerifyResult{}, admin.ErrVerifyUnauthorized
	}
	superadmin := cid.principal.User.Superadmin
	tenant := req.Tenant
	if tenant == "" {
		tenant = k.TenantID
	}
	mayVerify := cid.perm.Role == keys.RoleAdmin || slices.Contains(cid.perm.CustomerRoles, admin.VerifyRole)
	if !superadmin && (tenant != k.TenantID || !mayVerify) {
		return admin.VerifyResult{}, admin.ErrVerifyForbidden
	}

	// The credential asked about, exactly as the gateway would see it.
	cred := req.Key
	if cred == "" {
		cred = req.Token
	}
	res := admin.VerifyResult{Tenant: tenant, Code: "INVALID"}
	id, out := v.authenticate(bearerRequest(ctx, cred), tenant, now, verifyVia{}, nil)
	switch {
	case out == nil:
	case out.status == http.StatusServiceUnavailable:
		return admin.VerifyResult{}, fmt.Errorf("verify: %s: %w", out.reason, keys.ErrUnavailable)
	case out.status == http.StatusForbidden && id.principal != nil:
		// Valid, but not in this tenant: who it belongs to is none of the
		// caller's business (the user, and the key, may be another
		// tenant's).
		res.Code = "FORBIDDEN"
		return res, nil
	default:
		// Unknown, wrong, expired, revoked: one answer.
		return res, nil
	}
	u := &id.principal.User
	res.User = &admin.VerifyUser{ID: u.ID, Name: u.Name, Type: string(u.Type)}
	res.KeyID = id.keyID
	res.Role, res.CustomerRoles = string(id.perm.Role), id.perm.CustomerRoles
	res.Valid, res.Code = true, "VALID"

	if req.Consume == nil || *req.Consume != 0 {
		if limit := id.principal.User.RequestLimit; limit > 0 {
			d, err := v.limiter.Allow(ctx, ratelimit.Key(tenant, id.principal.User.ID), limit, verifyWindow)
			if err != nil {
				storeErrors.WithLabelValues("ratelimit").Inc()
				return admin.VerifyResult{}, fmt.Errorf("verify: rate limiter: %w", keys.ErrUnavailable)
			}
			res.RateLimit = &admin.VerifyRateLimit{Limit: d.Limit, Remaining: d.Remaining, Reset: d.ResetSeconds(verifyWindow)}
			if !d.Allowed {
				res.Valid, res.Code = false, "RATE_LIMITED"
				res.RateLimit.Reset = d.RetryAfterSeconds(verifyWindow)
				return res, nil
			}
		}
		a.usage.Record(id.principal.User.ID, id.keyID, "", now)
	}
	return res, nil
}

// bearerRequest is a request carrying cred the way a client would send it
// to the gateway.
func bearerRequest(ctx context.Context, cred string) *http.Request {
	r := &http.Request{
		Method:     http.MethodPost,
		URL:        &url.URL{Path: "/v1/verify"},
		RequestURI: "/v1/verify",
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Authorization": {"Bearer " + cred}},
		Body:   http.NoBody,
		Host:   "keygate",
	}
	return r.WithContext(ctx)
}

// verifyLookupError maps a failed lookup of the caller's key.
func verifyLookupError(err error) error {
	if errors.Is(err, keys.ErrNotFound) {
		return admin.ErrVerifyUnauthorized
	}
	return fmt.Errorf("verify: caller key: %w", err)
}
