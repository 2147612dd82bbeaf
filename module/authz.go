package module

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/ratelimit"
)

// credentialKind is the kind of credential a scheme uses, for the user
// type's credential policy.
func credentialKind(s auth.Scheme) keys.CredentialKind {
	switch {
	case s == auth.AccessKey:
		return keys.CredAccessKey
	case s == auth.AccessToken:
		return keys.CredToken
	default:
		return keys.CredSignature
	}
}

// credentialPolicy builds the policy of the `credentials` option: the
// seed defaults, with the types the option names replaced.
func credentialPolicy(cfg map[string][]string) (keys.CredentialPolicy, error) {
	p := keys.CredentialPolicy{}
	for t, kinds := range cfg {
		list := make([]keys.CredentialKind, 0, len(kinds))
		for _, k := range kinds {
			list = append(list, keys.CredentialKind(k))
		}
		p[keys.UserType(t)] = list
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p.WithDefaults(), nil
}

// checkPrincipal applies the rules that hold for every credential once its
// user is known: the user's type allows the credential's kind, and neither
// the tenant at hand nor (for an access key) the key's tenant is ARCHIVED.
// Every refusal is 401, the body of every credential problem; the reason
// goes to the log only.
func (h *Handler) checkPrincipal(ctx context.Context, id *identity, tenant string, now time.Time) *outcome {
	kind := credentialKind(id.scheme)
	if t := id.principal.User.Type; !h.app.credentials.Allows(t, kind) {
		return revokedOutcome(fmt.Sprintf("user type %s may not use %s credentials", t, kind))
	}
	if id.keyTenant != "" && id.keyTenant != tenant {
		if out := h.tenantArchived(ctx, id.keyTenant, now); out != nil {
			return out
		}
	}
	return h.tenantArchived(ctx, tenant, now)
}

// tenantArchived refuses a tenant that is not ACTIVE. An unknown tenant is
// left to the permission check (403), and an unreachable store is 503.
func (h *Handler) tenantArchived(ctx context.Context, tenant string, now time.Time) *outcome {
	var (
		t   *keys.Tenant
		err error
	)
	if h.limiter.Mode == ratelimit.FailOpen {
		t, err = h.app.resolver.TenantOrStale(ctx, tenant, now)
	} else {
		t, err = h.app.resolver.Tenant(ctx, tenant, now)
	}
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return nil
	case err != nil:
		return lookupFailure("loading tenant", err)
	case t.Status != keys.TenantActive:
		return revokedOutcome("tenant " + tenant + " is " + string(t.Status))
	}
	return nil
}

// exchangeRefusal tells why the token endpoint must not issue a token for
// an access key of user p valid in tenant: the user's type does not use the
// token exchange, or the tenant is not ACTIVE. Empty when it may.
func (a *App) exchangeRefusal(ctx context.Context, p *keys.Principal, tenant string, now time.Time) (string, error) {
	if t := p.User.Type; !a.credentials.Allows(t, keys.CredToken) {
		return fmt.Sprintf("user type %s may not use the token exchange", t), nil
	}
	t, err := a.resolver.Tenant(ctx, tenant, now)
	switch {
	case errors.Is(err, keys.ErrNotFound):
		return "tenant " + tenant + " not found", nil
	case err != nil:
		return "", err
	case t.Status != keys.TenantActive:
		return "tenant " + tenant + " is " + string(t.Status), nil
	}
	return "", nil
}
