// Package auth finds the one credential a request carries and verifies
// signed requests. It knows the wire formats of keygate's schemes and
// nothing about stores, tenants or HTTP responses; it never imports Caddy.
//
// # Schemes
//
//	access_key      Authorization: Bearer kg_…, the key header (X-Api-Key) or a query parameter
//	wallee_mac      x-mac-version/userid/timestamp/value, HMAC-SHA512 with the base64-decoded secret
//	wallee_jwt      Authorization: Bearer <HS256 JWT>, keyed with the base64-decoded secret
//	http_signature  draft-cavage-12 (hmac-sha256, hs2019 = HMAC-SHA512) and RFC 9421 (hmac-sha256),
//	                keyed with the secret string as issued
//	sigv4           AWS Signature Version 4, header and presigned forms, "AWS4"+secret string
//	access_token    Authorization: Bearer <JWT> whose kid names a keygate token-signing key
//
// # Use
//
// A gateway handler builds one Detector per route and, per request:
//
//	cred, err := det.Detect(r)           // ErrNoCredential, ErrMalformed, ErrAmbiguous (→ 400)
//	switch cred.Scheme {
//	case auth.AccessKey:                 // look up cred.KeyID, compare cred.AccessKey
//	case auth.AccessToken:               // verify cred.Token elsewhere
//	default:                             // signed: fetch the live secrets of cred.UserID
//		hold := budget.Hold(clientIP)
//		defer hold.Release()             // when the request is done, whatever happened
//		v, err := cred.Verify(r, secrets, auth.VerifyOptions{Now: now, MaxSkew: skew, Body: hold})
//		// … check the user, permission and role, then:
//		if err == nil && auth.NeedsReplayCheck(mode, r.Method, v.HasNonce) {
//			fresh, err := guard.Remember(ctx, v.ReplayKey, v.ReplayTTL)
//			// err → 503 (store down, guard full), !fresh → 401 (replayed);
//			// refused later (rate limit): guard.Forget(ctx, v.ReplayKey)
//		}
//	}
//
// Verify tries each secret (at most two) and compares MACs with hmac.Equal.
// Every timestamp must be within ±MaxSkew of Now; a signature that carries
// no signed timestamp is rejected. Covered body digests (RFC 9530
// Content-Digest, the cavage Digest header, x-amz-content-sha256) are checked
// against the body, read up to MaxBody bytes, and only once the signature
// over the headers is valid (a SigV4 body without x-amz-content-sha256 is
// refused, ErrUndeclaredPayload, unless SigV4ReadUndeclaredBody); every
// byte is reserved through the request's BodyHold first, which its owner
// releases. r.Body is restored for the upstream. Error messages never
// contain secrets or expected signatures.
//
// # Client quirks accepted
//
// wallee MAC and JWT: the signed path and query are the request-target as
// sent (VerifyOptions.OriginalURI, before any proxy rewrite); when that fails,
// the query is re-encoded the encodeURIComponent way ('+' read as space,
// ": $ , [ ]" escaped) and tried again, because wallee 4.x SDKs sign that form
// but send another. The JWT header may say "type" instead of "typ" and carry
// "ver": 1 or "1". SigV4: the canonical URI is double-encoded per segment, as
// the AWS SDKs do for every service but S3 (%20 → %2520); the singly encoded
// S3 form is tried as a fallback. Presigned SigV4 without a payload hash
// signs UNSIGNED-PAYLOAD (the hash of an empty body is also accepted).
//
// # Replay
//
// NeedsReplayCheck decides from the route's ReplayMode whether a verified
// signature must be single-use; a ReplayGuard (NewMemoryReplayGuard for one
// node, NewRedisReplayGuard for many) remembers Verified.ReplayKey for
// Verified.ReplayTTL (2 × MaxSkew, longer for long-lived presigned URLs).
// Neither guard ever lets a request through that it could not decide on:
// a Redis error is ErrReplayStore, and the in-process guard, which never
// drops an unexpired key, refuses a new one with ErrReplayFull when full.
package auth
