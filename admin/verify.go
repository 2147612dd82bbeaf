package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/keygate/keygate/keys"
)

// VerifyRole is the customer role that lets a user's access key call
// POST /v1/verify in its tenant without being an ADMIN there: give it to
// the technical user of a service that checks keys itself.
const VerifyRole = "VERIFIER"

// VerifyRequest is the body of POST /v1/verify: exactly one of Key and
// Token.
type VerifyRequest struct {
	// Key is an access key (kg_…) to check.
	Key string `json:"key,omitempty"`
	// Token is an access token from the token endpoint to check.
	Token string `json:"token,omitempty"`
	// Tenant in which the credential must be valid. Default: the tenant of
	// the caller's key.
	Tenant string `json:"tenant,omitempty"`
	// Consume is 1 (the default) to count the call against the user's
	// request limit, like a request through the gateway, or 0 to check the
	// credential only.
	Consume *int64 `json:"consume,omitempty"`
}

// VerifyResult is the answer of POST /v1/verify. Valid is false with a
// code for every credential problem; why a key is unknown, wrong, expired
// or revoked is never told apart.
type VerifyResult struct {
	// Valid reports whether the credential may be used now.
	Valid bool `json:"valid"`
	// Code is VALID, INVALID (unknown, wrong, expired, disabled or revoked;
	// the user not ACTIVE, of a type that may not use it, or its tenant
	// ARCHIVED), FORBIDDEN (valid, but no ACTIVE permission in the tenant or
	// a key of another tenant) or RATE_LIMITED (the user's request limit is
	// reached; ratelimit says when it frees).
	Code string `json:"code"`
	// User is who the credential belongs to (VALID and RATE_LIMITED only:
	// a FORBIDDEN credential may be another tenant's, and says nothing
	// about who holds it).
	User *VerifyUser `json:"user,omitempty"`
	// Tenant is the tenant the check was made in.
	Tenant string `json:"tenant"`
	// Role and CustomerRoles are those of the user's permission there.
	Role          string   `json:"role,omitempty"`
	CustomerRoles []string `json:"customerRoles,omitempty"`
	// KeyID is the id of the access key (or of the key a token came from).
	KeyID string `json:"keyId,omitempty"`
	// RateLimit is the user's request limit after this call; absent when
	// the user has none or Consume was 0.
	RateLimit *VerifyRateLimit `json:"ratelimit,omitempty"`
}

// VerifyUser is the user part of a VerifyResult.
type VerifyUser struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// VerifyRateLimit is the request limit part of a VerifyResult.
type VerifyRateLimit struct {
	// Limit is the user's requests per window.
	Limit int64 `json:"limit"`
	// Remaining is how many more are accepted now.
	Remaining int64 `json:"remaining"`
	// Reset is the number of seconds until quota frees.
	Reset int64 `json:"reset"`
}

// Verifier checks credentials for POST /v1/verify with the gateway's own
// logic, cache and limiter. caller is the access key the caller presented:
// Verify authenticates it (ErrVerifyUnauthorized) and checks that it may
// verify in the requested tenant (ErrVerifyForbidden), then answers for
// the credential being checked. A store that cannot be reached is an error
// wrapping keys.ErrUnavailable.
type Verifier interface {
	Verify(ctx context.Context, caller string, req VerifyRequest) (VerifyResult, error)
}

// Errors a Verifier returns about the caller (not about the credential
// being checked, which is answered in VerifyResult).
var (
	// ErrVerifyUnauthorized: the caller's own access key is not valid.
	ErrVerifyUnauthorized = errors.New("verify: caller not authenticated")
	// ErrVerifyForbidden: the caller may not verify in that tenant.
	ErrVerifyForbidden = errors.New("verify: caller may not verify in this tenant")
)

// verify serves POST /v1/verify.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request, _ *caller) error {
	if h.verifier == nil {
		return newError(http.StatusServiceUnavailable, "unavailable", "Service unavailable", "verification is not available in this process")
	}
	callerKey, ok := credential(r)
	if !ok {
		return errUnauthorized
	}
	var req VerifyRequest
	if err := decodeJSON(w, r, h.maxBody, &req); err != nil {
		return err
	}
	req.Key, req.Token, req.Tenant = strings.TrimSpace(req.Key), strings.TrimSpace(req.Token), strings.TrimSpace(req.Tenant)
	var errs []keys.FieldError
	if (req.Key == "") == (req.Token == "") {
		errs = append(errs, keys.FieldError{Field: "key", Message: "give exactly one of key and token"})
	}
	if len(req.Key) > 256 || len(req.Token) > 16<<10 {
		errs = append(errs, keys.FieldError{Field: "key", Message: "too long"})
	}
	if req.Consume != nil && *req.Consume != 0 && *req.Consume != 1 {
		errs = append(errs, keys.FieldError{Field: "consume", Message: "must be 0 or 1 (the limit counts requests)"})
	}
	if len(errs) > 0 {
		return errValidation(&keys.ValidationError{Fields: errs})
	}
	res, err := h.verifier.Verify(r.Context(), callerKey, req)
	switch {
	case errors.Is(err, ErrVerifyUnauthorized):
		return errUnauthorized
	case errors.Is(err, ErrVerifyForbidden):
		return errForbidden("verifying needs an ACTIVE permission with role ADMIN or customer role " +
			VerifyRole + " in the tenant, or a superadmin")
	case err != nil:
		return err
	}
	setTenant(r, res.Tenant)
	writeJSON(w, http.StatusOK, res)
	return nil
}
