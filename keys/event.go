package keys

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"strings"
	"time"
)

// Event types. They are stable: receivers switch on them.
const (
	EventKeyCreated           = "key.created"
	EventKeyUpdated           = "key.updated"
	EventKeyReplaced          = "key.replaced"
	EventKeyRevoked           = "key.revoked"
	EventKeyExpiring          = "key.expiring"
	EventKeyExpired           = "key.expired"
	EventKeyLeaked            = "key.leaked"
	EventSecretCreated        = "secret.created"
	EventSecretUpdated        = "secret.updated"
	EventSecretDeactivated    = "secret.deactivated"
	EventSecretDeleted        = "secret.deleted"
	EventUserCreated          = "user.created"
	EventUserUpdated          = "user.updated"
	EventUserStateChanged     = "user.state_changed"
	EventPermissionChanged    = "permission.changed"
	EventTenantArchived       = "tenant.archived"
	EventRateLimitApproaching = "ratelimit.approaching"
	EventRateLimitExceeded    = "ratelimit.exceeded"
	EventAuthFailures         = "auth.failures"
)

// EventTypes lists every event type, in a stable order.
var EventTypes = []string{
	EventKeyCreated, EventKeyUpdated, EventKeyReplaced, EventKeyRevoked, EventKeyExpiring,
	EventKeyExpired, EventKeyLeaked, EventSecretCreated, EventSecretUpdated, EventSecretDeactivated,
	EventSecretDeleted, EventUserCreated, EventUserUpdated, EventUserStateChanged,
	EventPermissionChanged, EventTenantArchived, EventRateLimitApproaching, EventRateLimitExceeded,
	EventAuthFailures,
}

// ValidEventType reports whether t is one of EventTypes.
func ValidEventType(t string) bool {
	for _, e := range EventTypes {
		if e == t {
			return true
		}
	}
	return false
}

// Event is one thing that happened, as the outbox keeps it until it has been
// handed to every subscription (webhooks, e-mail addresses). It never holds
// a secret, a key or a hash: Data carries ids, names, times and changed
// fields only.
type Event struct {
	// ID is unique; receivers dedupe by it (it is the webhook-id).
	ID   string    `json:"id"`
	Type string    `json:"type"`
	Time time.Time `json:"time"`
	// Tenant is the tenant the event belongs to (empty: none, e.g. a
	// failure burst of an unknown user; only global webhooks get it).
	Tenant string `json:"tenant,omitempty"`
	// Actor is who caused it: a user id, a trusted caller's name, or
	// "system" for what keygate noticed itself.
	Actor string `json:"actor"`
	// Subject names the object, e.g. "users/42/keys/abc".
	Subject string `json:"subject"`
	// UserID is the user the event is about, whose notification address
	// may subscribe to it.
	UserID string `json:"userId,omitempty"`
	// Data is the event's JSON object.
	Data json.RawMessage `json:"data"`
}

// EventID derives a stable event id from parts, for events that must be
// emitted once however many times (or on however many nodes) they are
// noticed: a reminder per key and threshold, a limit crossing per window.
func EventID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return "evt_" + lowerBase32.EncodeToString(h[:15])
}

// NewEventID returns a fresh random event id.
func NewEventID() string { return "evt_" + RandomToken(15) }

// Webhook is a subscription of a URL to event types, for one tenant or (a
// superadmin's, Tenant empty) for all.
type Webhook struct {
	ID     string `json:"id"`
	Tenant string `json:"tenant,omitempty"`
	URL    string `json:"url"`
	// Events are the types delivered; "*" means all.
	Events      []string `json:"events"`
	Enabled     bool     `json:"enabled"`
	Description string   `json:"description,omitempty"`
	// SealedSecret is the signing secret (whsec_…) sealed under the
	// master key; it is shown once, at creation or rotation.
	SealedSecret []byte `json:"sealed"`
	// PreviousSealedSecret is the secret a rotation replaced, sealed like
	// SealedSecret (same associated data). Until PreviousUntil deliveries
	// are signed with it too, so receivers switch without downtime.
	PreviousSealedSecret []byte `json:"previousSealed,omitempty"`
	// PreviousUntil ends the grace period of PreviousSealedSecret; nil
	// without one.
	PreviousUntil *time.Time `json:"previousUntil,omitempty"`
	CreatedBy     string     `json:"createdBy,omitempty"`
	Version       int64      `json:"version"`
	CreatedAt     time.Time  `json:"createdAt"`
	UpdatedAt     time.Time  `json:"updatedAt"`
}

// Wants reports whether the webhook subscribes to event type t.
func (w *Webhook) Wants(t string) bool { return subscribed(w.Events, t) }

// PreviousSecret returns the sealed secret a rotation replaced while its
// grace period runs at now, else nil.
func (w *Webhook) PreviousSecret(now time.Time) []byte {
	if w.PreviousUntil == nil || !now.Before(*w.PreviousUntil) || len(w.PreviousSealedSecret) == 0 {
		return nil
	}
	return w.PreviousSealedSecret
}

// RotateSecret makes sealed the webhook's signing secret. With a grace
// period the secret it replaces stays valid (deliveries carry both
// signatures) until now+grace; without one it ends at once. A secret still
// in an earlier rotation's grace period ends at once either way: a webhook
// has at most two secrets.
func (w *Webhook) RotateSecret(sealed []byte, now time.Time, grace time.Duration) {
	w.PreviousSealedSecret, w.PreviousUntil = nil, nil
	if grace > 0 {
		until := now.Add(grace).UTC()
		w.PreviousSealedSecret, w.PreviousUntil = w.SealedSecret, &until
	}
	w.SealedSecret = sealed
}

func subscribed(list []string, t string) bool {
	for _, e := range list {
		if e == t || e == "*" {
			return true
		}
	}
	return false
}

// WebhookAAD is the associated data a webhook's sealed secret is bound to.
func WebhookAAD(id string) string { return "webhook:" + id }

// DeliveryStatus is the state of one delivery.
type DeliveryStatus string

// Delivery states.
const (
	DeliveryPending   DeliveryStatus = "PENDING"
	DeliveryDelivered DeliveryStatus = "DELIVERED"
	DeliveryFailed    DeliveryStatus = "FAILED"
)

// Delivery kinds.
const (
	DeliveryWebhook = "webhook"
	DeliveryEmail   = "email"
)

// Delivery is one event on its way to one subscription, retried until it
// is delivered or given up.
type Delivery struct {
	// ID is EventID "." target.
	ID     string `json:"id"`
	Tenant string `json:"tenant,omitempty"`
	// Kind is webhook or email.
	Kind string `json:"kind"`
	// WebhookID is the webhook (kind webhook).
	WebhookID string `json:"webhookId,omitempty"`
	// Address is the e-mail address (kind email).
	Address string         `json:"address,omitempty"`
	Event   Event          `json:"event"`
	Status  DeliveryStatus `json:"status"`
	// Attempts made so far.
	Attempts int `json:"attempts"`
	// Since is when the current series of attempts started (creation, or
	// the latest replay): retries stop a maximum age after it.
	Since     time.Time `json:"since"`
	CreatedAt time.Time `json:"createdAt"`
	// NextAt is when the next attempt is due (while PENDING).
	NextAt time.Time `json:"nextAt"`
	// LeasedBy and LeaseUntil: the node attempting it, until when. Another
	// node takes it over once the lease has passed.
	LeasedBy   string     `json:"leasedBy,omitempty"`
	LeaseUntil *time.Time `json:"leaseUntil,omitempty"`
	// The latest attempt: when, the HTTP status (0 without an answer) and
	// what went wrong (never a secret).
	LastAttemptAt *time.Time `json:"lastAttemptAt,omitempty"`
	LastStatus    int        `json:"lastStatus,omitempty"`
	LastError     string     `json:"lastError,omitempty"`
	DeliveredAt   *time.Time `json:"deliveredAt,omitempty"`
}

// Attempt is the outcome of one delivery attempt.
type Attempt struct {
	At     time.Time
	OK     bool
	Status int
	Error  string
	// Next is when to try again; zero gives up (FAILED).
	Next time.Time
}

// DeliveryQuery selects deliveries.
type DeliveryQuery struct {
	ListOptions
	// Tenant restricts to one tenant's deliveries; empty: all.
	Tenant string
	// WebhookID restricts to one webhook's deliveries.
	WebhookID string
	Status    DeliveryStatus
	Kind      string
}

// WebhookQuery selects webhooks.
type WebhookQuery struct {
	ListOptions
	// Tenant restricts to one tenant's webhooks; empty: all.
	Tenant string
}

// Leak is a report that a key was found in public.
type Leak struct {
	// URL and Source say where (GitHub's url and source fields).
	URL    string
	Source string
	// Reporter names who reported it (e.g. "github").
	Reporter string
}

// Leak policies of a tenant.
const (
	LeakRevoke = "REVOKE"
	LeakFlag   = "FLAG"
)

// EventStore is the outbox and the subscriptions: what keygate's event
// delivery needs of a Store. Events of model changes are written by the
// Store itself, in the change's transaction.
type EventStore interface {
	// AppendEvents writes events noticed outside a change (limits,
	// failure bursts, reminders) to the outbox. An event whose ID was
	// appended before is skipped, so stable ids (EventID) make them
	// once-only across nodes. It returns how many it wrote.
	AppendEvents(ctx context.Context, events []Event) (int, error)
	// PendingEvents reports whether the outbox holds events not yet
	// dispatched.
	PendingEvents(ctx context.Context) (bool, error)
	// DispatchEvents moves up to limit outbox events to deliveries, one per
	// matching subscription, in one transaction, and returns the new
	// deliveries already leased to node until now+lease, so the caller can
	// attempt them at once.
	DispatchEvents(ctx context.Context, now time.Time, node string, lease time.Duration, limit int) ([]Delivery, error)
	// ClaimDeliveries leases up to limit due deliveries (NextAt <= now,
	// lease passed) to node until now+lease.
	ClaimDeliveries(ctx context.Context, now time.Time, node string, lease time.Duration, limit int) ([]Delivery, error)
	// FinishDelivery records an attempt of a delivery leased to node.
	FinishDelivery(ctx context.Context, id, node string, a Attempt) (Delivery, error)
	// ReplayDelivery puts a delivered or failed delivery back to PENDING,
	// due now, with a new series of attempts.
	ReplayDelivery(ctx context.Context, id string, now time.Time, actor string) (Delivery, error)
	// GetDelivery returns one delivery or ErrNotFound.
	GetDelivery(ctx context.Context, id string) (Delivery, error)
	// ListDeliveries pages through deliveries, newest first.
	ListDeliveries(ctx context.Context, q DeliveryQuery) (Page[Delivery], error)
	// PurgeDeliveries removes DELIVERED and FAILED deliveries created
	// before before, and stable event ids remembered before then; and the
	// failure counts (AddFailureCounts) of windows that have ended.
	PurgeDeliveries(ctx context.Context, before time.Time) (int, error)
	// AddFailureCounts adds nodes' counts of failed authentications to the
	// stored ones of the same subject and window, in one transaction, and
	// returns the sums in the order given: failures added, clients merged
	// (at most MaxFailureClients), First and Last widened. The counts of
	// windows that ended are removed, a few with each call.
	AddFailureCounts(ctx context.Context, counts []FailureCount) ([]FailureCount, error)

	// CreateWebhook stores a webhook (ID given).
	CreateWebhook(ctx context.Context, w Webhook, actor string) (Webhook, error)
	// GetWebhook returns one webhook or ErrNotFound.
	GetWebhook(ctx context.Context, id string) (Webhook, error)
	// UpdateWebhook changes URL, events, enabled, description or (with
	// Webhook.RotateSecret) the signing secrets. A previous secret whose
	// grace period is over is dropped by any update.
	UpdateWebhook(ctx context.Context, id string, version int64, mutate func(*Webhook) error, actor string) (Webhook, error)
	// DeleteWebhook removes a webhook (its deliveries stay until purged).
	DeleteWebhook(ctx context.Context, id string, version int64, actor string) error
	// ListWebhooks pages through webhooks, oldest first.
	ListWebhooks(ctx context.Context, q WebhookQuery) (Page[Webhook], error)

	// ScanKeyExpiry emits key.expiring for keys expiring within one of
	// reminders (each threshold once per key and expiry) and key.expired
	// for keys whose expiry passed, up to limit events; it returns how
	// many it emitted.
	ScanKeyExpiry(ctx context.Context, now time.Time, reminders []time.Duration, limit int) (int, error)
	// ReportLeak handles a leaked key: by the key's tenant's policy it
	// revokes it (REVOKE, the default) or only flags it (FLAG), sets
	// LeakedAt and emits key.leaked, all in one transaction. It returns
	// the key after the change.
	ReportLeak(ctx context.Context, keyID string, leak Leak, actor string) (Key, error)
}
