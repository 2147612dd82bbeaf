// Package events delivers keygate's events: what changed (keys, secrets,
// users, permissions, tenants), what keygate noticed on the request path
// (a user near or over its limit, a burst of failed authentications) and
// what it was told (a leaked key). It never imports Caddy.
//
// # Nothing lost
//
// Events of a change are written by the key store in the change's own
// transaction, to an outbox (keys.EventStore). A Dispatcher moves them from
// there to one delivery per subscription, leases each delivery to its node,
// and attempts it: webhooks as CloudEvents 1.0 JSON (structured mode),
// signed the Standard Webhooks way, and e-mail over SMTP. A failed attempt is
// retried with exponential backoff and full jitter until MaxAge (24 h by
// default) has passed since the first, then the delivery is FAILED, listed
// with its last answer, and can be replayed. A node that dies mid-attempt
// leaves a lease that passes; another node (or the same after a restart)
// then attempts again. Deliveries are at least once: a receiver dedupes by
// webhook-id, the event id, which every attempt of the event repeats.
//
// Events noticed on the request path go through a bounded in-memory queue
// (Queue) that a goroutine writes to the outbox a few times a second; the
// request never waits for it. Those events carry ids derived from what they
// are about (keys.EventID), so the outbox keeps one per user and window
// however many nodes noticed it. A node that dies loses at most what its
// queue held (a fraction of a second). Failure bursts are counted across
// nodes: each adds its counts to the store's about once a second
// (FailureWatcher.Run), off the request path.
//
// # Signatures
//
// A webhook's signing secret is whsec_ followed by the base64 of 32 random
// bytes; the HMAC key is those bytes. Each delivery carries webhook-id (the
// event id), webhook-timestamp (Unix seconds of the attempt) and
// webhook-signature: "v1," and the base64 of HMAC-SHA256 over
// "<id>.<timestamp>.<body>". Verify checks one. During a secret
// rotation's grace period a delivery carries two signatures, of the new
// secret and the old, space-separated (SignAll), so a receiver holding
// either verifies it.
package events
