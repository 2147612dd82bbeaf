package admin

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/keys"
)

// WebhookView is a webhook as the API shows it. Secret holds the signing
// secret (whsec_…) only in the response that created it.
type WebhookView struct {
	ID          string    `json:"id"`
	Tenant      string    `json:"tenant,omitempty"`
	URL         string    `json:"url"`
	Events      []string  `json:"events"`
	Enabled     bool      `json:"enabled"`
	Description string    `json:"description,omitempty"`
	CreatedBy   string    `json:"createdBy,omitempty"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	// PreviousSecretExpiresAt is, during a rotation's grace period, when
	// the secret the rotation replaced stops signing deliveries.
	PreviousSecretExpiresAt *time.Time `json:"previousSecretExpiresAt,omitempty"`
	// Secret is the signing secret, present only in the response that
	// created or rotated it.
	Secret string `json:"secret,omitempty"`
}

func webhookView(w *keys.Webhook, now time.Time) WebhookView {
	v := WebhookView{ID: w.ID, Tenant: w.Tenant, URL: w.URL, Events: nonNilStrings(w.Events), Enabled: w.Enabled,
		Description: w.Description, CreatedBy: w.CreatedBy, Version: w.Version, CreatedAt: w.CreatedAt, UpdatedAt: w.UpdatedAt}
	if w.PreviousSecret(now) != nil {
		v.PreviousSecretExpiresAt = w.PreviousUntil
	}
	return v
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// webhookBody is the body of POST and PATCH /v1/webhooks[/{id}].
type webhookBody struct {
	Tenant      opt[string]   `json:"tenant"`
	URL         opt[string]   `json:"url"`
	Events      opt[[]string] `json:"events"`
	Enabled     opt[bool]     `json:"enabled"`
	Description opt[string]   `json:"description"`
	Version     *int64        `json:"version"`
}

// validate checks the members a body sets.
func (b *webhookBody) validate(v *keys.ValidationError, create bool) {
	if b.URL.Set || create {
		if b.URL.Null || b.URL.V == "" {
			v.Add("url", "is required")
		} else if err := events.CheckURL(b.URL.V); err != nil {
			v.Add("url", err.Error())
		}
	}
	if b.Events.Set || create {
		if b.Events.Null || len(b.Events.V) == 0 {
			v.Add("events", "at least one event type, or \"*\" for all")
		}
		if len(b.Events.V) > len(keys.EventTypes)+1 {
			v.Add("events", "too many entries")
		}
		for _, e := range b.Events.V {
			if e != "*" && !keys.ValidEventType(e) {
				v.Add("events", "unknown event type "+clip(e, 64)+" (one of "+strings.Join(keys.EventTypes, ", ")+", or *)")
				break
			}
		}
	}
	if b.Enabled.Null {
		v.Add("enabled", "must not be null")
	}
	checkText(v, "description", b.Description.V, 500)
}

// visibleWebhook loads a webhook the caller administers, or 404.
func (h *Handler) visibleWebhook(r *http.Request, c *caller) (keys.Webhook, error) {
	id := r.PathValue("id")
	if keys.ValidateID(id) != nil {
		return keys.Webhook{}, errNotFound("webhook")
	}
	w, err := h.store.GetWebhook(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) || (err == nil && !c.superadmin && !c.adminOf(w.Tenant)) {
		return keys.Webhook{}, errNotFound("webhook")
	}
	if err == nil {
		setTenant(r, w.Tenant)
	}
	return w, err
}

// scopeTenant is the tenant a list is restricted to: a tenant admin's own;
// a superadmin's ?tenant= (empty: all).
func scopeTenant(r *http.Request, c *caller) (string, error) {
	t := r.URL.Query().Get("tenant")
	if c.superadmin {
		if t != "" && keys.ValidateID(t) != nil {
			return "", errField("tenant", "is not a valid id")
		}
		return t, nil
	}
	if t != "" && !c.adminOf(t) {
		return "", errNotFound("tenant")
	}
	if len(c.tenants) == 0 {
		return "", errForbidden("the caller administers no tenant")
	}
	setTenant(r, c.tenants[0])
	return c.tenants[0], nil
}

func (h *Handler) listWebhooks(w http.ResponseWriter, r *http.Request, c *caller) error {
	lo, err := parseList(r.URL.Query(), "createdAt")
	if err != nil {
		return err
	}
	tenant, err := scopeTenant(r, c)
	if err != nil {
		return err
	}
	p, err := h.store.ListWebhooks(r.Context(), keys.WebhookQuery{ListOptions: lo, Tenant: tenant})
	if err != nil {
		return err
	}
	now := h.now()
	views := make([]WebhookView, len(p.Items))
	for i := range p.Items {
		views[i] = webhookView(&p.Items[i], now)
	}
	writeList(w, "Webhook", views, p.Total, lo)
	return nil
}

// createWebhook stores a webhook with a new signing secret, returned in
// this response only. A tenant admin's webhook is for its tenant; a
// superadmin's for the tenant it names, or, without one, for all tenants.
func (h *Handler) createWebhook(w http.ResponseWriter, r *http.Request, c *caller) error {
	if h.sealer == nil {
		return errNoSealer
	}
	var b webhookBody
	if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
		return err
	}
	v := &keys.ValidationError{}
	b.validate(v, true)
	if b.Version != nil {
		v.Add("version", "is not allowed when creating")
	}
	if err := v.Err(); err != nil {
		return err
	}
	tenant := b.Tenant.V
	switch {
	case c.superadmin:
	case tenant == "" && len(c.tenants) > 0:
		tenant = c.tenants[0]
	case !c.adminOf(tenant):
		return errForbidden("a tenant admin creates webhooks for its own tenant; webhooks for all tenants need a superadmin")
	}
	if tenant != "" {
		setTenant(r, tenant)
	}
	enabled := true
	if b.Enabled.Set {
		enabled = b.Enabled.V
	}
	id := keys.NewID()
	secret := events.NewSecret()
	evs := slices.Clone(b.Events.V)
	slices.Sort(evs)
	out, err := h.store.CreateWebhook(r.Context(), keys.Webhook{
		ID: id, Tenant: tenant, URL: b.URL.V, Events: slices.Compact(evs), Enabled: enabled, Description: b.Description.V,
		SealedSecret: h.sealer.Seal([]byte(secret), keys.WebhookAAD(id)),
	}, c.actor)
	if err != nil {
		return err
	}
	view := webhookView(&out, h.now())
	view.Secret = secret
	w.Header().Set("Location", "/v1/webhooks/"+out.ID)
	writeOne(w, http.StatusCreated, "Webhook", out.Version, view)
	return nil
}

func (h *Handler) getWebhook(w http.ResponseWriter, r *http.Request, c *caller) error {
	wh, err := h.visibleWebhook(r, c)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Webhook", wh.Version, webhookView(&wh, h.now()))
	return nil
}

func (h *Handler) patchWebhook(w http.ResponseWriter, r *http.Request, c *caller) error {
	cur, err := h.visibleWebhook(r, c)
	if err != nil {
		return err
	}
	var b webhookBody
	pre, err := h.decodeUpdate(w, r, &b, &b.Version)
	if err != nil {
		return err
	}
	v := &keys.ValidationError{}
	b.validate(v, false)
	if b.Tenant.Set && b.Tenant.V != cur.Tenant {
		v.Add("tenant", "cannot be changed")
	}
	if err := v.Err(); err != nil {
		return err
	}
	version, err := pre.expect(cur.Version)
	if err != nil {
		return err
	}
	out, err := h.store.UpdateWebhook(r.Context(), cur.ID, version, func(wh *keys.Webhook) error {
		if b.URL.Set {
			wh.URL = b.URL.V
		}
		if b.Events.Set {
			evs := slices.Clone(b.Events.V)
			slices.Sort(evs)
			wh.Events = slices.Compact(evs)
		}
		if b.Enabled.Set {
			wh.Enabled = b.Enabled.V
		}
		if b.Description.Set {
			wh.Description = b.Description.V
		}
		return nil
	}, c.actor)
	if err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Webhook", out.Version, webhookView(&out, h.now()))
	return nil
}

// maxSecretGrace bounds a webhook secret rotation's grace period.
const maxSecretGrace = 30 * 24 * time.Hour

// rotateBody is the optional body of POST /v1/webhooks/{id}/rotate-secret.
type rotateBody struct {
	// GracePeriod keeps the old secret signing deliveries (beside the new
	// one) this long: "24h" or seconds. Default: 0, the old one ends now.
	GracePeriod *duration `json:"gracePeriod"`
}

// rotateWebhookSecret gives a webhook a new signing secret, returned in
// this response only. During the optional grace period deliveries carry
// two signatures (new and old, space-separated, as Standard Webhooks
// allows), so a receiver can switch secrets without refusing any. If-Match
// is optional.
func (h *Handler) rotateWebhookSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	if h.sealer == nil {
		return errNoSealer
	}
	cur, err := h.visibleWebhook(r, c)
	if err != nil {
		return err
	}
	var b rotateBody
	if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
		if err := decodeJSON(w, r, h.maxBody, &b); err != nil {
			return err
		}
	}
	var grace time.Duration
	if b.GracePeriod != nil {
		grace = time.Duration(*b.GracePeriod)
		if grace < 0 || grace > maxSecretGrace {
			return errField("gracePeriod", "must be from 0 to 720h")
		}
	}
	pre, err := parsePrecondition(r, nil, false)
	if err != nil {
		return err
	}
	version, err := pre.expect(cur.Version)
	if err != nil {
		return err
	}
	secret := events.NewSecret()
	sealed := h.sealer.Seal([]byte(secret), keys.WebhookAAD(cur.ID))
	now := h.now()
	out, err := h.store.UpdateWebhook(r.Context(), cur.ID, version, func(wh *keys.Webhook) error {
		wh.RotateSecret(sealed, now, grace)
		return nil
	}, c.actor)
	if err != nil {
		return err
	}
	view := webhookView(&out, now)
	view.Secret = secret
	writeOne(w, http.StatusOK, "Webhook", out.Version, view)
	return nil
}

func (h *Handler) deleteWebhook(w http.ResponseWriter, r *http.Request, c *caller) error {
	cur, err := h.visibleWebhook(r, c)
	if err != nil {
		return err
	}
	version, err := ifMatchVersion(r, cur.Version)
	if err != nil {
		return err
	}
	if err := h.store.DeleteWebhook(r.Context(), cur.ID, version, c.actor); err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// DeliveryView is a delivery as the API shows it: the event as sent (a
// CloudEvent), the target and the last attempt.
type DeliveryView struct {
	ID            string              `json:"id"`
	Tenant        string              `json:"tenant,omitempty"`
	Kind          string              `json:"kind"`
	WebhookID     string              `json:"webhookId,omitempty"`
	Address       string              `json:"address,omitempty"`
	EventID       string              `json:"eventId"`
	EventType     string              `json:"eventType"`
	Status        keys.DeliveryStatus `json:"status"`
	Attempts      int                 `json:"attempts"`
	CreatedAt     time.Time           `json:"createdAt"`
	NextAttemptAt *time.Time          `json:"nextAttemptAt,omitempty"`
	LastAttemptAt *time.Time          `json:"lastAttemptAt,omitempty"`
	// LastResponse is the HTTP status of the last attempt (0: no answer).
	LastResponse int        `json:"lastResponse"`
	LastError    string     `json:"lastError,omitempty"`
	DeliveredAt  *time.Time `json:"deliveredAt,omitempty"`
	Event        keys.Event `json:"event"`
}

func deliveryView(d *keys.Delivery) DeliveryView {
	v := DeliveryView{ID: d.ID, Tenant: d.Tenant, Kind: d.Kind, WebhookID: d.WebhookID, Address: d.Address,
		EventID: d.Event.ID, EventType: d.Event.Type, Status: d.Status, Attempts: d.Attempts, CreatedAt: d.CreatedAt,
		LastAttemptAt: d.LastAttemptAt, LastResponse: d.LastStatus, LastError: d.LastError, DeliveredAt: d.DeliveredAt, Event: d.Event}
	if d.Status == keys.DeliveryPending {
		next := d.NextAt
		v.NextAttemptAt = &next
	}
	return v
}

var deliveryStatuses = []string{string(keys.DeliveryPending), string(keys.DeliveryDelivered), string(keys.DeliveryFailed)}

func (h *Handler) listDeliveries(w http.ResponseWriter, r *http.Request, c *caller, q keys.DeliveryQuery) error {
	qs := r.URL.Query()
	lo, err := parseList(qs, "createdAt")
	if err != nil {
		return err
	}
	if len(lo.Sort) == 0 {
		lo.Sort = []keys.Sort{{Field: "createdAt", Desc: true}}
	}
	q.ListOptions = lo
	st, err := queryEnum(qs, "status", deliveryStatuses...)
	if err != nil {
		return err
	}
	kind, err := queryEnum(qs, "kind", keys.DeliveryWebhook, keys.DeliveryEmail)
	if err != nil {
		return err
	}
	q.Status, q.Kind = keys.DeliveryStatus(st), kind
	p, err := h.store.ListDeliveries(r.Context(), q)
	if err != nil {
		return err
	}
	views := make([]DeliveryView, len(p.Items))
	for i := range p.Items {
		views[i] = deliveryView(&p.Items[i])
	}
	writeList(w, "Delivery", views, p.Total, lo)
	return nil
}

func (h *Handler) webhookDeliveries(w http.ResponseWriter, r *http.Request, c *caller) error {
	wh, err := h.visibleWebhook(r, c)
	if err != nil {
		return err
	}
	return h.listDeliveries(w, r, c, keys.DeliveryQuery{WebhookID: wh.ID})
}

func (h *Handler) allDeliveries(w http.ResponseWriter, r *http.Request, c *caller) error {
	tenant, err := scopeTenant(r, c)
	if err != nil {
		return err
	}
	return h.listDeliveries(w, r, c, keys.DeliveryQuery{Tenant: tenant})
}

// replayDelivery sends a delivered or failed delivery again (same event,
// same webhook-id), with a new series of attempts.
func (h *Handler) replayDelivery(w http.ResponseWriter, r *http.Request, c *caller) error {
	id := r.PathValue("id")
	if id == "" || len(id) > 200 || strings.ContainsAny(id, "/ \x00") {
		return errNotFound("delivery")
	}
	d, err := h.store.GetDelivery(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) || (err == nil && !c.superadmin && !c.adminOf(d.Tenant)) {
		return errNotFound("delivery")
	}
	if err != nil {
		return err
	}
	setTenant(r, d.Tenant)
	out, err := h.store.ReplayDelivery(r.Context(), id, h.now(), c.actor)
	if err != nil {
		return err
	}
	if h.onEvent != nil {
		h.onEvent()
	}
	writeOne(w, http.StatusOK, "Delivery", 0, deliveryView(&out))
	return nil
}
