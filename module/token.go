package module

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keys"
)

// TokenConfig configures token exchange: the access tokens the
// `keygate_token` handler issues for API tokens (OAuth2 client
// credentials) and the `access_token` gateway scheme verifies.
type TokenConfig struct {
	// Issuer is the "iss" claim of issued tokens, checked on verification.
	// Default: keygate
	Issuer string `json:"issuer,omitempty"`
	// Audience, when set, is the "aud" claim of issued tokens and must be
	// the "aud" of every access token the gateway accepts. Default: none.
	Audience string `json:"audience,omitempty"`
	// Lifetime of an access token; expires_in is one second less.
	// Default: 1h
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// Algorithm signs tokens: RS256 (2048-bit RSA) or EdDSA (Ed25519).
	// Only this algorithm is accepted on verification. Default: RS256
	Algorithm string `json:"algorithm,omitempty"`
	// Rotate is how long one signing key signs before a new one is made;
	// the old key stays in the JWKS until its last token has expired.
	// Default: 720h
	Rotate caddy.Duration `json:"rotate,omitempty"`
	// Throttle limits requests to the token endpoint per client IP,
	// successful or not (each mint costs a signature). Failed ones count
	// against the keygate app's auth_failures too. Default: rate 20/1s,
	// burst 100.
	Throttle *ThrottleConfig `json:"throttle,omitempty"`
}

// Token defaults and bounds.
const (
	defaultTokenIssuer   = "keygate"
	defaultTokenLifetime = time.Hour
	defaultTokenRotate   = 720 * time.Hour
	// maxTokenLeeway tolerates clock differences between nodes and clients.
	maxTokenLeeway = 30 * time.Second
	// tokenReloadGap is the shortest time between two key-set reloads
	// triggered by tokens naming an unknown kid.
	tokenReloadGap = 2 * time.Second
	// tokenStoreTimeout bounds each store call of key management.
	tokenStoreTimeout = 2 * time.Second
)

// errTokensUnavailable: tokens cannot be signed (no master key, or the
// signing key could not be created or opened).
var errTokensUnavailable = errors.New("token signing unavailable")

// tokenKeySet is an immutable snapshot of the live token-signing keys.
type tokenKeySet struct {
	byKID   map[string]*auth.TokenKey
	signing *auth.TokenKey // current signing key, nil when none is usable
	signEnd time.Time      // signing's SignUntil
	jwks    []byte         // rendered JWKS document
}

// tokenKeys manages the signing keys of an App: it keeps them in the store
// (private keys sealed), loads them into memory, creates and rotates them,
// and verifies access tokens against the in-memory set.
type tokenKeys struct {
	store    keys.Store
	sealer   *keys.Sealer // nil: this node cannot sign
	logger   *zap.Logger
	alg      string
	lifetime time.Duration
	rotate   time.Duration
	leeway   time.Duration
	issuer   auth.TokenIssuer
	verifier auth.TokenVerifier

	verified   verifiedTokens
	set        atomic.Pointer[tokenKeySet]
	mu         sync.Mutex // serializes reloads and key creation
	lastReload time.Time  // guarded by mu
	warned     atomic.Bool
}

// newTokenKeys validates cfg (nil means defaults) and applies defaults.
func newTokenKeys(cfg *TokenConfig, store keys.Store, sealer *keys.Sealer, logger *zap.Logger) (*tokenKeys, error) {
	c := TokenConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Issuer == "" {
		c.Issuer = defaultTokenIssuer
	}
	if c.Lifetime == 0 {
		c.Lifetime = caddy.Duration(defaultTokenLifetime)
	}
	if time.Duration(c.Lifetime) < 2*time.Second {
		return nil, fmt.Errorf("token lifetime %s: must be at least 2s", time.Duration(c.Lifetime))
	}
	if c.Rotate == 0 {
		c.Rotate = caddy.Duration(defaultTokenRotate)
	}
	if c.Rotate < caddy.Duration(time.Second) {
		return nil, errors.New("token rotate: must be at least 1s")
	}
	switch c.Algorithm {
	case "":
		c.Algorithm = auth.AlgRS256
	case auth.AlgRS256, auth.AlgEdDSA:
	default:
		return nil, fmt.Errorf("token algorithm %q: must be RS256 or EdDSA", c.Algorithm)
	}
	lifetime := time.Duration(c.Lifetime)
	// A quarter of the lifetime at most, so a short-lived token does not
	// live many times its lifetime.
	leeway := min(maxTokenLeeway, lifetime/4)
	m := &tokenKeys{
		store: store, sealer: sealer, logger: logger,
		alg: c.Algorithm, lifetime: lifetime, rotate: time.Duration(c.Rotate), leeway: leeway,
		issuer: auth.TokenIssuer{Issuer: c.Issuer, Audience: c.Audience, Lifetime: lifetime},
	}
	m.verifier = auth.TokenVerifier{Alg: c.Algorithm, Issuer: c.Issuer, Audience: c.Audience, Leeway: leeway, Key: m.key}
	m.set.Store(&tokenKeySet{jwks: []byte(`{"keys":[]}`)})
	return m, nil
}

// maxVerifiedTokens bounds the cache of verified access tokens.
const maxVerifiedTokens = 100_000

// verifiedTokens remembers tokens whose signature and claims were checked,
// so a client that calls with the same access token pays the RSA or Ed25519
// verification once, not per request. Entries are keyed by the token's
// SHA-256 and used only until the token's exp (plus leeway) and while its
// signing key is still live; revocation is checked per request regardless.
type verifiedTokens struct {
	mu sync.RWMutex
	m  map[[sha256.Size]byte]auth.VerifiedToken
}

// verify checks an access token, from the cache when it was verified before.
func (m *tokenKeys) verify(tok string, now time.Time) (auth.VerifiedToken, error) {
	sum := sha256.Sum256([]byte(tok))
	m.verified.mu.RLock()
	vt, ok := m.verified.m[sum]
	m.verified.mu.RUnlock()
	if ok && now.Before(vt.ExpiresAt.Add(m.leeway)) && m.key(vt.SigningKey) != nil {
		return vt, nil
	}
	vt, err := m.verifier.Verify(tok, now)
	if err != nil {
		return vt, err
	}
	m.verified.mu.Lock()
	if m.verified.m == nil || len(m.verified.m) >= maxVerifiedTokens {
		// Drop what has expired; if that frees nothing, start over.
		for k, v := range m.verified.m {
			if !now.Before(v.ExpiresAt.Add(m.leeway)) {
				delete(m.verified.m, k)
			}
		}
		if m.verified.m == nil || len(m.verified.m) >= maxVerifiedTokens {
			m.verified.m = make(map[[sha256.Size]byte]auth.VerifiedToken)
		}
	}
	m.verified.m[sum] = vt
	m.verified.mu.Unlock()
	return vt, nil
}

// key returns the live key named kid, or nil (no reload).
func (m *tokenKeys) key(kid string) *auth.TokenKey { return m.set.Load().byKID[kid] }

// known reports whether kid names a live key, reloading the set (at most
// once per tokenReloadGap) when it does not: another node may have just
// rotated.
func (m *tokenKeys) known(kid string) bool {
	if m.key(kid) != nil {
		return true
	}
	if len(kid) > 128 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.key(kid) != nil {
		return true
	}
	if time.Since(m.lastReload) < tokenReloadGap {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), tokenStoreTimeout)
	defer cancel()
	if err := m.reloadLocked(ctx, time.Now()); err != nil {
		m.logger.Warn("reloading token-signing keys", zap.Error(err))
	}
	return m.key(kid) != nil
}

// reloadLocked reads the keys from the store, deletes retired ones and
// publishes a new set. Callers hold m.mu.
func (m *tokenKeys) reloadLocked(ctx context.Context, now time.Time) error {
	m.lastReload = now
	stored, err := m.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("listing signing keys: %w", err)
	}
	prev := m.set.Load()
	next := &tokenKeySet{byKID: make(map[string]*auth.TokenKey, len(stored))}
	var jwks struct {
		Keys []auth.JWK `json:"keys"`
	}
	jwks.Keys = []auth.JWK{}
	var newest keys.SigningKey
	for _, sk := range stored {
		if !now.Before(sk.RetireAt) {
			if err := m.store.DeleteSigningKey(ctx, sk.ID); err != nil && !errors.Is(err, keys.ErrNotFound) {
				m.logger.Warn("deleting retired token-signing key", zap.String("kid", sk.ID), zap.Error(err))
			} else if err == nil {
				m.logger.Info("retired token-signing key", zap.String("kid", sk.ID))
			}
			continue
		}
		var tk *auth.TokenKey
		canSign := sk.Algorithm == m.alg && now.Before(sk.SignUntil)
		if old := prev.byKID[sk.ID]; old != nil && (old.CanSign() || !canSign) {
			tk = old
		} else {
			var priv []byte
			if canSign && m.sealer != nil {
				if priv, err = m.sealer.Open(sk.SealedPrivate, keys.SigningKeyAAD(sk.ID)); err != nil {
					m.logger.Error("opening token-signing key: wrong master key?", zap.String("kid", sk.ID), zap.Error(err))
					priv = nil
				}
			}
			if tk, err = auth.NewTokenKey(sk.ID, sk.Algorithm, sk.Public, priv); err != nil {
				m.logger.Error("loading token-signing key", zap.String("kid", sk.ID), zap.Error(err))
				continue
			}
		}
		next.byKID[sk.ID] = tk
		jwks.Keys = append(jwks.Keys, tk.JWK())
		if canSign && tk.CanSign() && (next.signing == nil || sk.CreatedAt.After(newest.CreatedAt)) {
			next.signing, next.signEnd, newest = tk, sk.SignUntil, sk
		}
	}
	sort.Slice(jwks.Keys, func(i, j int) bool { return jwks.Keys[i].Kid < jwks.Keys[j].Kid })
	if next.jwks, err = json.Marshal(jwks); err != nil {
		return fmt.Errorf("rendering JWKS: %w", err)
	}
	m.set.Store(next)
	return nil
}

// ensureSigningKey reloads the set and, when no key may sign at now,
// creates one. Two nodes racing here both create a key; both are valid.
func (m *tokenKeys) ensureSigningKey(ctx context.Context, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.reloadLocked(ctx, now); err != nil {
		return err
	}
	if m.set.Load().signing != nil {
		return nil
	}
	if m.sealer == nil {
		return fmt.Errorf("%w: no master key (set master_key, e.g. {env.KEYGATE_MASTER_KEY})", errTokensUnavailable)
	}
	priv, pub, err := auth.GenerateTokenKey(m.alg)
	if err != nil {
		return err
	}
	kid := keys.RandomToken(10)
	signUntil := now.Add(m.rotate)
	sk := keys.SigningKey{
		ID:            kid,
		Algorithm:     m.alg,
		SealedPrivate: m.sealer.Seal(priv, keys.SigningKeyAAD(kid)),
		Public:        pub,
		CreatedAt:     now,
		SignUntil:     signUntil,
		RetireAt:      signUntil.Add(m.lifetime + m.leeway),
	}
	if err := m.store.PutSigningKey(ctx, sk); err != nil {
		return fmt.Errorf("storing signing key: %w", err)
	}
	m.logger.Info("created token-signing key", zap.String("kid", kid), zap.String("alg", m.alg), zap.Time("sign_until", signUntil))
	return m.reloadLocked(ctx, now)
}

// signingKey returns the key to sign with at now, creating or rotating
// one when needed.
func (m *tokenKeys) signingKey(ctx context.Context, now time.Time) (*auth.TokenKey, error) {
	if s := m.set.Load(); s.signing != nil && now.Before(s.signEnd) {
		return s.signing, nil
	}
	ctx, cancel := context.WithTimeout(ctx, tokenStoreTimeout)
	defer cancel()
	if err := m.ensureSigningKey(ctx, now); err != nil {
		return nil, err
	}
	if s := m.set.Load(); s.signing != nil {
		return s.signing, nil
	}
	return nil, errTokensUnavailable
}

// refreshInterval is how often the set is reloaded in the background.
func (m *tokenKeys) refreshInterval() time.Duration {
	return min(max(m.rotate/2, 500*time.Millisecond), time.Minute)
}

// run loads the keys, makes sure a signing key exists (when this node can
// sign) and refreshes the set until ctx ends.
func (m *tokenKeys) run(ctx context.Context) {
	t := time.NewTicker(m.refreshInterval())
	defer t.Stop()
	for {
		m.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *tokenKeys) refresh(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, tokenStoreTimeout)
	defer cancel()
	var err error
	if m.sealer != nil {
		err = m.ensureSigningKey(cctx, time.Now())
	} else {
		if m.warned.CompareAndSwap(false, true) {
			m.logger.Warn("token exchange disabled: no master key to seal token-signing keys with; " +
				"the token endpoint answers 503 (set master_key, e.g. {env.KEYGATE_MASTER_KEY}); access tokens of other nodes are still verified")
		}
		m.mu.Lock()
		err = m.reloadLocked(cctx, time.Now())
		m.mu.Unlock()
	}
	if err != nil && ctx.Err() == nil {
		m.logger.Warn("refreshing token-signing keys", zap.Error(err))
	}
}

// isTokenKID is the gateway detector's test for access tokens.
func (a *App) isTokenKID(kid string) bool {
	return a.tokens != nil && a.tokens.known(kid)
}

// verifyAccessKey checks an access key exactly as every keygate endpoint
// does: known id, matching secret, usable (status, expiry, grace), owner
// found. It returns what it found so far for logging; out is nil on success.
// The caller checks the tenant, the user's status and the permission.
func (a *App) verifyAccessKey(ctx context.Context, raw, keyID string, now time.Time) (*keys.Key, *keys.Principal, *outcome) {
	return a.verifyAccessKeyFrom(ctx, a.resolver.Key, a.resolver.Principal, raw, keyID, now)
}

// verifyAccessKeyFrom is verifyAccessKey over the given lookups, so that
// fail_open routes can use the resolver's stale-if-error variants.
func (a *App) verifyAccessKeyFrom(ctx context.Context,
	keyOf func(context.Context, string, time.Time) (*keys.Key, error),
	principalOf func(context.Context, string, time.Time) (*keys.Principal, error),
	raw, keyID string, now time.Time,
) (*keys.Key, *keys.Principal, *outcome) {
	var k *keys.Key
	if keyID == "" {
		// An imported key: found by its hash (which proves it).
		var out *outcome
		if k, out = a.foreignKey(ctx, keyOf, raw, now); out != nil {
			return nil, nil, out
		}
	} else {
		var err error
		if k, err = keyOf(ctx, keyID, now); err != nil {
			return nil, nil, lookupFailure("unknown access key", err)
		}
		if !a.hasher.Verify(raw, k.Hash) {
			out := unauthenticated("wrong access key secret", nil)
			out.key = k
			return nil, nil, out
		}
	}
	if !k.Usable(now) {
		// The caller proved it holds the key: k names whose key was refused
		// (for the user's usage counts and the log's key_id).
		return k, nil, unusableKey(k, "access key expired, disabled or revoked", now)
	}
	p, err := principalOf(ctx, k.UserID, now)
	if err != nil {
		return k, nil, lookupFailure("key owner not found", err)
	}
	return k, p, nil
}

// foreignKey finds the imported key whose value is raw. A key found by a
// legacy hash is re-hashed to keygate's own on this, its first use; when
// that write fails the request still passes (the key was proven) and the
// next use tries again.
func (a *App) foreignKey(ctx context.Context, keyOf func(context.Context, string, time.Time) (*keys.Key, error),
	raw string, now time.Time,
) (*keys.Key, *outcome) {
	var sum [32]byte
	a.hasher.SumInto(&sum, raw)
	fk, err := a.resolver.ResolveForeignKey(ctx, raw, &sum, now, keyOf, a.allowLegacy)
	if err != nil {
		return nil, lookupFailure("unknown imported key", err)
	}
	if fk.Legacy != "" && fk.Key.Usable(now) {
		last4 := ""
		if len(raw) >= 4 {
			last4 = raw[len(raw)-4:]
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		k, err := a.shared.store.RehashKey(wctx, fk.Key.ID, fk.Legacy, fk.LegacySum, append([]byte(nil), sum[:]...), last4)
		cancel()
		if err != nil {
			if c := a.logger.Check(zap.WarnLevel, "re-hashing an imported key failed; it is tried again on its next use"); c != nil {
				c.Write(zap.String("key_id", fk.Key.ID), zap.Error(err))
			}
		} else {
			a.resolver.Rehashed(&sum, k.ID)
			if c := a.logger.Check(zap.InfoLevel, "imported key re-hashed on first use"); c != nil {
				c.Write(zap.String("key_id", k.ID), zap.String("from", schemeName(fk.Legacy)))
			}
		}
	}
	return fk.Key, nil
}

// schemeName is a legacy hash scheme without its salt (for logs).
func schemeName(s string) string {
	name, _, _ := strings.Cut(s, ":")
	return name
}

// verifyAccessToken checks an access token for a route of tenant: the
// JWT locally against the in-memory keys, then, so that revocation bites
// before exp, the API key that minted it and its owner through the
// resolver's cache. The caller checks the permission in tenant.
func (a *App) verifyAccessToken(ctx context.Context,
	keyOf func(context.Context, string, time.Time) (*keys.Key, error),
	principalOf func(context.Context, string, time.Time) (*keys.Principal, error),
	tok, tenant string, now time.Time,
) (*keys.Key, *keys.Principal, *outcome) {
	if a.tokens == nil {
		return nil, nil, unauthenticated("token exchange not configured", nil)
	}
	vt, err := a.tokens.verify(tok, now)
	if err != nil {
		reason := "bad_token"
		if errors.Is(err, auth.ErrTokenExpired) {
			reason = "expired"
		}
		tokensRejected.WithLabelValues(reason).Inc()
		out := unauthenticated("access token rejected", err)
		if reason == "expired" {
			out.count = keys.UsageExpired
		}
		return nil, nil, out
	}
	if vt.Tenant != tenant {
		tokensRejected.WithLabelValues("wrong_tenant").Inc()
		return nil, nil, &outcome{status: 403, result: "forbidden", reason: "access token of another tenant"}
	}
	k, err := keyOf(ctx, vt.KeyID, now)
	if err != nil {
		if errors.Is(err, keys.ErrNotFound) {
			tokensRejected.WithLabelValues("revoked").Inc()
			return nil, nil, revokedOutcome("access token's API key not found")
		}
		return nil, nil, lookupFailure("access token's API key not found", err)
	}
	if !k.Usable(now) || k.UserID != vt.Subject || k.TenantID != vt.Tenant {
		tokensRejected.WithLabelValues("revoked").Inc()
		if k.UserID != vt.Subject || k.TenantID != vt.Tenant {
			return k, nil, unauthenticated("access token does not match its API key", nil)
		}
		return k, nil, unusableKey(k, "access token's API key expired, disabled or revoked", now)
	}
	p, err := principalOf(ctx, k.UserID, now)
	if err != nil {
		return k, nil, lookupFailure("access token's user not found", err)
	}
	if p.User.Status != keys.UserActive {
		tokensRejected.WithLabelValues("revoked").Inc()
	}
	return k, p, nil
}
