package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// The outbox: every change writes its events (table outbox, index
// outbox:pending) in its own transaction, so an event exists exactly when
// its change does. DispatchEvents later turns each event into one delivery
// per matching subscription, and removes it from the outbox, in one
// transaction; deliveries are then attempted until delivered or given up.
//
//	tables   outbox, deliveries, webhooks, evseen (stable event ids seen)
//	indexes  outbox:pending, deliveries:due, deliveries:by:createdAt,
//	         t:<tenant>:deliveries, wh:<webhook>:deliveries, webhooks:by:createdAt,
//	         t:<tenant>:webhooks, webhooks:global, evseen:by:at, keys:by:expiresAt
//
// On Redis all of it shares the store's one hash tag, so a change and its
// events are one MULTI/EXEC on one slot (see keys/redisstore).
const (
	tblOutbox     = "outbox"
	tblDeliveries = "deliveries"
	tblWebhooks   = "webhooks"
	tblEventSeen  = "evseen"

	idxOutbox         = "outbox:pending"
	idxDue            = "deliveries:due"
	idxDeliveries     = "deliveries:by:createdAt"
	idxWebhooks       = "webhooks:by:createdAt"
	idxGlobalWebhooks = "webhooks:global"
	idxEventSeen      = "evseen:by:at"
	idxKeyExpiry      = "keys:by:expiresAt"
)

func tenantDeliveries(t string) string   { return "t:" + t + ":deliveries" }
func webhookDeliveries(id string) string { return "wh:" + id + ":deliveries" }

func tenantWebhooks(t string) string {
	if t == "" {
		return idxGlobalWebhooks
	}
	return "t:" + t + ":webhooks"
}

// maxLastError bounds the error text kept of an attempt.
const maxLastError = 300

// outboxEntry is an event in the outbox with its sort key there: the
// time, then its position in the transaction that wrote it, so that the
// events of one change are delivered in the order they happened.
type outboxEntry struct {
	Key string `json:"k"`
	Event
}

// putEvent writes e to the outbox as the seq-th event of its transaction.
func putEvent(tx Tx, e *Event, seq int) error {
	ent := outboxEntry{Key: timeKey(e.Time) + fmt.Sprintf("%04d", seq), Event: *e}
	if err := putJSON(tx, tblOutbox, e.ID, ent); err != nil {
		return err
	}
	if err := tx.IndexAdd(idxOutbox, ent.Key, e.ID); err != nil {
		return fmt.Errorf("indexing event %s: %w", e.ID, err)
	}
	return nil
}

// emit writes an event of this transaction's change to the outbox.
func (r *recorder) emit(typ, tenant, subject, userID string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", typ, err)
	}
	e := Event{ID: NewEventID(), Type: typ, Time: r.now, Tenant: tenant, Actor: r.actor, Subject: subject, UserID: userID, Data: raw}
	r.events++
	return putEvent(r.tx, &e, r.events)
}

// userTenant returns the primary tenant of a user, read once per transaction.
func (r *recorder) userTenant(userID string) (string, error) {
	if t, ok := r.tenants[userID]; ok {
		return t, nil
	}
	u, err := getJSON[User](r.tx, tblUsers, userID, "user "+userID)
	if err != nil {
		return "", err
	}
	if r.tenants == nil {
		r.tenants = map[string]string{}
	}
	r.tenants[userID] = u.PrimaryTenant
	return u.PrimaryTenant, nil
}

// KeyInfo is a key as events show it: no hash, masked.
type KeyInfo struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	UserID     string     `json:"userId"`
	Tenant     string     `json:"tenant"`
	Masked     string     `json:"masked"`
	Status     KeyStatus  `json:"status"`
	ExpiresAt  time.Time  `json:"expiresAt"`
	DisableAt  *time.Time `json:"disableAt,omitempty"`
	ReplacedBy string     `json:"replacedBy,omitempty"`
	LeakedAt   *time.Time `json:"leakedAt,omitempty"`
}

func keyInfo(k *Key) KeyInfo {
	return KeyInfo{ID: k.ID, Name: k.Name, UserID: k.UserID, Tenant: k.TenantID, Masked: k.Masked(), Status: k.Status,
		ExpiresAt: k.ExpiresAt, DisableAt: k.DisableAt, ReplacedBy: k.ReplacedBy, LeakedAt: k.LeakedAt}
}

func keySubject(k *Key) string { return "users/" + k.UserID + "/keys/" + k.ID }

// UserInfo is a user as events show it.
type UserInfo struct {
	ID            string     `json:"id"`
	Name          string     `json:"name"`
	Type          UserType   `json:"type"`
	Status        UserStatus `json:"status"`
	PrimaryTenant string     `json:"primaryTenant"`
}

func userInfo(u *User) UserInfo {
	return UserInfo{ID: u.ID, Name: u.Name, Type: u.Type, Status: u.Status, PrimaryTenant: u.PrimaryTenant}
}

// emitKey emits the event of a key write (see writeKey).
func emitKey(r *recorder, old, next *Key, action string) error {
	var typ string
	data := map[string]any{"key": keyInfo(next)}
	switch action {
	case "key.create", "import":
		typ = EventKeyCreated
	case "key.replace":
		typ = EventKeyReplaced
		data["replacedBy"] = next.ReplacedBy
	case "key.revoke":
		typ = EventKeyRevoked
	case "key.update", "import.update":
		typ = EventKeyUpdated
		data["changes"] = diff(old, next)
	default:
		return nil
	}
	return r.emit(typ, next.TenantID, keySubject(next), next.UserID, data)
}

// emitSecret emits the event of a secret write (see writeSecret).
func emitSecret(r *recorder, old, next *Secret, action string) error {
	s := next
	if s == nil {
		s = old
	}
	tenant, err := r.userTenant(s.UserID)
	if err != nil {
		return err
	}
	info := map[string]any{"id": s.ID, "userId": s.UserID, "name": s.Name, "status": s.Status}
	data := map[string]any{"secret": info}
	var typ string
	switch {
	case action == "secret.create":
		typ = EventSecretCreated
	case action == "secret.delete":
		typ = EventSecretDeleted
	case old != nil && old.Status == SecretActive && next.Status == SecretInactive:
		typ = EventSecretDeactivated
	default:
		typ = EventSecretUpdated
		data["changes"] = diff(old, next)
	}
	return r.emit(typ, tenant, "users/"+s.UserID+"/secrets/"+s.ID, s.UserID, data)
}

// emitUser emits user.state_changed for a status change and user.updated
// for the other changed fields.
func emitUser(r *recorder, old, next *User, changes map[string]Change) error {
	subject := "users/" + next.ID
	if old == nil {
		return r.emit(EventUserCreated, next.PrimaryTenant, subject, next.ID, map[string]any{"user": userInfo(next)})
	}
	rest := make(map[string]Change, len(changes))
	for k, v := range changes {
		if k != "status" {
			rest[k] = v
		}
	}
	if old.Status != next.Status {
		if err := r.emit(EventUserStateChanged, next.PrimaryTenant, subject, next.ID,
			map[string]any{"user": userInfo(next), "from": old.Status, "to": next.Status}); err != nil {
			return err
		}
	}
	if len(rest) == 0 {
		return nil
	}
	return r.emit(EventUserUpdated, next.PrimaryTenant, subject, next.ID, map[string]any{"user": userInfo(next), "changes": rest})
}

// emitPermission emits permission.changed for a permission write.
func emitPermission(r *recorder, old, next *Permission, action string) error {
	kind := "updated"
	switch action {
	case "permission.create":
		kind = "created"
	case "permission.accept":
		kind = "accepted"
	}
	p := map[string]any{"id": next.ID, "userId": next.UserID, "workspaceId": next.TenantID, "role": next.Role,
		"status": next.Status, "customerRoles": nonNil(next.CustomerRoles)}
	return r.emit(EventPermissionChanged, next.TenantID, "users/"+next.UserID+"/permissions/"+next.TenantID, next.UserID,
		map[string]any{"permission": p, "action": kind, "changes": diff(old, next)})
}

// AppendEvents writes events to the outbox, skipping ids seen before.
func (s *kvStore) AppendEvents(ctx context.Context, events []Event) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	n := 0
	err := s.b.Update(ctx, func(tx Tx) error {
		n = 0
		now := s.clock()
		for i := range events {
			e := events[i]
			if e.ID == "" {
				e.ID = NewEventID()
			}
			if !ValidEventType(e.Type) {
				return fieldError("type", "unknown event type "+e.Type)
			}
			if seen, err := exists(tx, tblEventSeen, e.ID); err != nil {
				return err
			} else if seen {
				continue
			}
			if e.Time.IsZero() {
				e.Time = now
			}
			e.Time = e.Time.UTC()
			if len(e.Data) == 0 {
				e.Data = json.RawMessage("{}")
			}
			if err := tx.Put(tblEventSeen, e.ID, []byte(timeKey(now))); err != nil {
				return fmt.Errorf("storing event id %s: %w", e.ID, err)
			}
			if err := tx.IndexAdd(idxEventSeen, timeKey(now), e.ID); err != nil {
				return fmt.Errorf("indexing event id %s: %w", e.ID, err)
			}
			if err := putEvent(tx, &e, i); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// PendingEvents reports whether the outbox holds events.
func (s *kvStore) PendingEvents(ctx context.Context) (bool, error) {
	var n int
	err := s.b.View(ctx, func(tx Tx) (err error) {
		n, err = tx.IndexCount(idxOutbox)
		return err
	})
	return n > 0, err
}

// dueSortKey is the delivery's key in the due index: when it may next be
// attempted (the later of NextAt and its lease).
func dueSortKey(d *Delivery) string {
	at := d.NextAt
	if d.LeaseUntil != nil && d.LeaseUntil.After(at) {
		at = *d.LeaseUntil
	}
	return timeKey(at)
}

// dueAt is the time of dueSortKey.
func dueAt(d *Delivery) time.Time {
	if d.LeaseUntil != nil && d.LeaseUntil.After(d.NextAt) {
		return *d.LeaseUntil
	}
	return d.NextAt
}

// deliveryIndexes lists a delivery's entries in the listing indexes.
func deliveryIndexes(d *Delivery) []indexEntry {
	k := timeKey(d.CreatedAt)
	out := []indexEntry{{idxDeliveries, k}}
	if d.Tenant != "" {
		out = append(out, indexEntry{tenantDeliveries(d.Tenant), k})
	}
	if d.WebhookID != "" {
		out = append(out, indexEntry{webhookDeliveries(d.WebhookID), k})
	}
	return out
}

// DispatchEvents turns outbox events into deliveries.
func (s *kvStore) DispatchEvents(ctx context.Context, now time.Time, node string, lease time.Duration, limit int) ([]Delivery, error) {
	if limit <= 0 {
		limit = 100
	}
	if pending, err := s.PendingEvents(ctx); err != nil || !pending {
		return nil, err
	}
	now = now.UTC()
	var out []Delivery
	err := s.b.Update(ctx, func(tx Tx) error {
		out = out[:0]
		ids, err := tx.IndexRange(idxOutbox, 0, limit, false)
		if err != nil {
			return fmt.Errorf("reading the outbox: %w", err)
		}
		entries, err := getManyJSON[outboxEntry](tx, tblOutbox, ids)
		if err != nil {
			return err
		}
		hooks := map[string][]Webhook{}
		webhooksOf := func(tenant string) ([]Webhook, error) {
			if ws, ok := hooks[tenant]; ok {
				return ws, nil
			}
			ids, err := allIDs(tx, tenantWebhooks(tenant), false)
			if err != nil {
				return nil, err
			}
			ws, err := getManyJSON[Webhook](tx, tblWebhooks, ids)
			hooks[tenant] = ws
			return ws, err
		}
		for i := range entries {
			e := &entries[i].Event
			targets, err := s.targets(tx, e, webhooksOf)
			if err != nil {
				return err
			}
			for _, d := range targets {
				d.Tenant, d.Event, d.Status = e.Tenant, *e, DeliveryPending
				d.CreatedAt, d.Since, d.NextAt = now, now, now
				if lease > 0 && node != "" {
					lu := now.Add(lease)
					d.LeasedBy, d.LeaseUntil = node, &lu
				}
				if ok, err := exists(tx, tblDeliveries, d.ID); err != nil {
					return err
				} else if ok {
					continue // dispatched before (an event appended twice)
				}
				if err := putJSON(tx, tblDeliveries, d.ID, d); err != nil {
					return err
				}
				if err := tx.IndexAdd(idxDue, dueSortKey(&d), d.ID); err != nil {
					return fmt.Errorf("indexing delivery %s: %w", d.ID, err)
				}
				if err := syncIndexes(tx, d.ID, nil, deliveryIndexes(&d)); err != nil {
					return err
				}
				out = append(out, d)
			}
			if err := tx.Delete(tblOutbox, e.ID); err != nil {
				return fmt.Errorf("removing event %s from the outbox: %w", e.ID, err)
			}
			if err := tx.IndexRemove(idxOutbox, entries[i].Key, e.ID); err != nil {
				return fmt.Errorf("removing event %s from the outbox: %w", e.ID, err)
			}
		}
		return nil
	})
	if lease <= 0 || node == "" {
		out = nil
	}
	return out, err
}

// targets lists the deliveries of e: each enabled webhook of its tenant
// (and each global one) that wants its type, the notification address of
// the user it is about, and that of its tenant, when they subscribe.
func (s *kvStore) targets(tx Tx, e *Event, webhooksOf func(string) ([]Webhook, error)) ([]Delivery, error) {
	var out []Delivery
	scopes := []string{""}
	if e.Tenant != "" {
		scopes = append(scopes, e.Tenant)
	}
	for _, scope := range scopes {
		ws, err := webhooksOf(scope)
		if err != nil {
			return nil, err
		}
		for i := range ws {
			if ws[i].Enabled && ws[i].Wants(e.Type) {
				out = append(out, Delivery{ID: e.ID + "." + ws[i].ID, Kind: DeliveryWebhook, WebhookID: ws[i].ID})
			}
		}
	}
	seen := map[string]bool{}
	if e.UserID != "" {
		u, err := getJSON[User](tx, tblUsers, e.UserID, "user "+e.UserID)
		if err != nil && !isNotFound(err) {
			return nil, err
		}
		if err == nil && u.Email != "" && subscribed(u.Notifications, e.Type) {
			seen[lower(u.Email)] = true
			out = append(out, Delivery{ID: e.ID + ".u-" + u.ID, Kind: DeliveryEmail, Address: u.Email})
		}
	}
	if e.Tenant != "" {
		t, err := getJSON[Tenant](tx, tblTenants, e.Tenant, "tenant "+e.Tenant)
		if err != nil && !isNotFound(err) {
			return nil, err
		}
		if err == nil && t.Email != "" && subscribed(t.Notifications, e.Type) && !seen[lower(t.Email)] {
			out = append(out, Delivery{ID: e.ID + ".t-" + t.ID, Kind: DeliveryEmail, Address: t.Email})
		}
	}
	return out, nil
}

// ClaimDeliveries leases due deliveries to node.
func (s *kvStore) ClaimDeliveries(ctx context.Context, now time.Time, node string, lease time.Duration, limit int) ([]Delivery, error) {
	if limit <= 0 {
		limit = 50
	}
	now = now.UTC()
	var due []string
	err := s.b.View(ctx, func(tx Tx) error {
		ids, err := tx.IndexRange(idxDue, 0, limit, false)
		if err != nil {
			return fmt.Errorf("reading due deliveries: %w", err)
		}
		ds, err := getManyJSON[Delivery](tx, tblDeliveries, ids)
		if err != nil {
			return err
		}
		for i := range ds {
			if dueAt(&ds[i]).After(now) {
				break
			}
			due = append(due, ds[i].ID)
		}
		return nil
	})
	if err != nil || len(due) == 0 {
		return nil, err
	}
	var out []Delivery
	err = s.b.Update(ctx, func(tx Tx) error {
		out = out[:0]
		for _, id := range due {
			d, err := getJSON[Delivery](tx, tblDeliveries, id, "delivery "+id)
			if isNotFound(err) {
				continue
			} else if err != nil {
				return err
			}
			if d.Status != DeliveryPending || dueAt(&d).After(now) {
				continue // finished, or leased by another node meanwhile
			}
			old := dueSortKey(&d)
			lu := now.Add(lease)
			d.LeasedBy, d.LeaseUntil = node, &lu
			if err := moveDue(tx, &d, old); err != nil {
				return err
			}
			if err := putJSON(tx, tblDeliveries, d.ID, d); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// moveDue moves d in the due index from old to its current key ("" when it
// leaves the index).
func moveDue(tx Tx, d *Delivery, old string) error {
	next := ""
	if d.Status == DeliveryPending {
		next = dueSortKey(d)
	}
	if old == next {
		return nil
	}
	if old != "" {
		if err := tx.IndexRemove(idxDue, old, d.ID); err != nil {
			return fmt.Errorf("updating due deliveries: %w", err)
		}
	}
	if next != "" {
		if err := tx.IndexAdd(idxDue, next, d.ID); err != nil {
			return fmt.Errorf("updating due deliveries: %w", err)
		}
	}
	return nil
}

// FinishDelivery records an attempt.
func (s *kvStore) FinishDelivery(ctx context.Context, id, node string, a Attempt) (Delivery, error) {
	var out Delivery
	err := s.b.Update(ctx, func(tx Tx) error {
		d, err := getJSON[Delivery](tx, tblDeliveries, id, "delivery "+id)
		if err != nil {
			return err
		}
		out = d
		if d.Status != DeliveryPending {
			return nil // delivered (or given up) by another node meanwhile
		}
		if d.LeasedBy != node && !a.OK {
			return nil // the lease passed to another node: its attempt counts
		}
		old := dueSortKey(&d)
		at := a.At.UTC()
		d.Attempts++
		d.LastAttemptAt, d.LastStatus, d.LastError = &at, a.Status, clipText(a.Error, maxLastError)
		d.LeasedBy, d.LeaseUntil = "", nil
		switch {
		case a.OK:
			d.Status, d.DeliveredAt, d.LastError = DeliveryDelivered, &at, ""
		case a.Next.IsZero():
			d.Status = DeliveryFailed
		default:
			d.NextAt = a.Next.UTC()
		}
		if err := moveDue(tx, &d, old); err != nil {
			return err
		}
		out = d
		return putJSON(tx, tblDeliveries, d.ID, d)
	})
	return out, err
}

// ReplayDelivery puts a finished delivery back in line.
func (s *kvStore) ReplayDelivery(ctx context.Context, id string, now time.Time, actor string) (Delivery, error) {
	var out Delivery
	err := s.b.Update(ctx, func(tx Tx) error {
		d, err := getJSON[Delivery](tx, tblDeliveries, id, "delivery "+id)
		if err != nil {
			return err
		}
		if d.Status == DeliveryPending {
			return fmt.Errorf("delivery %s is still PENDING: %w", id, ErrConflict)
		}
		now := now.UTC()
		d.Status, d.Since, d.NextAt, d.Attempts = DeliveryPending, now, now, 0
		d.LeasedBy, d.LeaseUntil, d.DeliveredAt = "", nil, nil
		if err := moveDue(tx, &d, ""); err != nil {
			return err
		}
		out = d
		return putJSON(tx, tblDeliveries, d.ID, d)
	})
	return out, err
}

// GetDelivery returns one delivery.
func (s *kvStore) GetDelivery(ctx context.Context, id string) (Delivery, error) {
	var d Delivery
	err := s.b.View(ctx, func(tx Tx) (err error) {
		d, err = getJSON[Delivery](tx, tblDeliveries, id, "delivery "+id)
		return err
	})
	return d, err
}

// ListDeliveries pages through deliveries, newest first.
func (s *kvStore) ListDeliveries(ctx context.Context, q DeliveryQuery) (Page[Delivery], error) {
	ps, err := normalize(q.ListOptions, []string{"createdAt"}, Sort{Field: "createdAt", Desc: true})
	if err != nil {
		return Page[Delivery]{}, err
	}
	index := idxDeliveries
	switch {
	case q.WebhookID != "":
		index = webhookDeliveries(q.WebhookID)
	case q.Tenant != "":
		index = tenantDeliveries(q.Tenant)
	}
	l := lister[Delivery]{
		table:   tblDeliveries,
		index:   func(string) string { return index },
		sortKey: func(d *Delivery, _ string) string { return timeKey(d.CreatedAt) },
		id:      func(d *Delivery) string { return d.ID },
	}
	if q.Status != "" || q.Kind != "" || (q.WebhookID != "" && q.Tenant != "") {
		l.filter = keep(func(d *Delivery) bool {
			return (q.Status == "" || d.Status == q.Status) && (q.Kind == "" || d.Kind == q.Kind) &&
				(q.Tenant == "" || d.Tenant == q.Tenant)
		})
	}
	var p Page[Delivery]
	err = s.b.View(ctx, func(tx Tx) (err error) {
		p, err = l.list(tx, ps)
		return err
	})
	return p, err
}

// PurgeDeliveries removes finished deliveries and remembered event ids
// older than before.
func (s *kvStore) PurgeDeliveries(ctx context.Context, before time.Time) (int, error) {
	n, err := purgeOldest(ctx, s, idxDeliveries, tblDeliveries, "delivery", before,
		func(d *Delivery) time.Time {
			if d.Status == DeliveryPending {
				return before // kept: stops the sweep here (it resumes next time)
			}
			return d.CreatedAt
		},
		func(tx Tx, id string, d *Delivery) error {
			if err := tx.Delete(tblDeliveries, id); err != nil {
				return fmt.Errorf("deleting delivery %s: %w", id, err)
			}
			return syncIndexes(tx, id, deliveryIndexes(d), nil)
		})
	if err != nil {
		return n, err
	}
	m, err := purgeOldestRaw(ctx, s, idxEventSeen, tblEventSeen, before)
	if err != nil {
		return n + m, err
	}
	return n + m, s.purgeEndedFailures(ctx)
}

// purgeOldestRaw removes the entries of table (values: timeKey strings)
// listed in the time-ordered index whose time is before before.
func purgeOldestRaw(ctx context.Context, s *kvStore, index, table string, before time.Time) (int, error) {
	cut := timeKey(before)
	total := 0
	for {
		n, more := 0, false
		err := s.b.Update(ctx, func(tx Tx) error {
			n, more = 0, false
			ids, err := tx.IndexRange(index, 0, retentionBatch, false)
			if err != nil {
				return fmt.Errorf("reading index %s: %w", index, err)
			}
			raw, err := tx.GetMany(table, ids)
			if err != nil {
				return fmt.Errorf("loading %s: %w", table, err)
			}
			for i, b := range raw {
				if b == nil {
					continue
				}
				if string(b) >= cut {
					return nil
				}
				if err := tx.Delete(table, ids[i]); err != nil {
					return fmt.Errorf("deleting %s %s: %w", table, ids[i], err)
				}
				if err := tx.IndexRemove(index, string(b), ids[i]); err != nil {
					return fmt.Errorf("updating index %s: %w", index, err)
				}
				n++
			}
			more = n > 0 && len(ids) == retentionBatch
			return nil
		})
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// webhookIndexes lists a webhook's index entries.
func webhookIndexes(w *Webhook) []indexEntry {
	if w == nil {
		return nil
	}
	k := timeKey(w.CreatedAt)
	return []indexEntry{{idxWebhooks, k}, {tenantWebhooks(w.Tenant), k}}
}

func validateWebhook(w *Webhook) error {
	v := &ValidationError{}
	validID(v, "id", w.ID)
	required(v, "url", w.URL)
	if len(w.Events) == 0 {
		v.Add("events", "at least one event type (or \"*\") is required")
	}
	for _, e := range w.Events {
		if e != "*" && !ValidEventType(e) {
			v.Add("events", "unknown event type "+e)
		}
	}
	if len(w.SealedSecret) == 0 {
		v.Add("secret", "is required")
	}
	if (len(w.PreviousSealedSecret) == 0) != (w.PreviousUntil == nil) {
		v.Add("previousSecret", "a previous secret needs the end of its grace period, and only it")
	}
	return v.Err()
}

// CreateWebhook stores a webhook.
func (s *kvStore) CreateWebhook(ctx context.Context, w Webhook, actor string) (Webhook, error) {
	w.Version, w.CreatedAt, w.UpdatedAt, w.CreatedBy = 0, time.Time{}, time.Time{}, actor
	w.Events = slices.Clone(w.Events)
	if err := validateWebhook(&w); err != nil {
		return Webhook{}, err
	}
	err := s.b.Update(ctx, func(tx Tx) error {
		if ok, err := exists(tx, tblWebhooks, w.ID); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("webhook %s exists: %w", w.ID, ErrConflict)
		}
		if w.Tenant != "" {
			if err := activeTenant(tx, w.Tenant, "tenant"); err != nil {
				return err
			}
		}
		now := s.clock()
		w.Version, w.CreatedAt = 0, time.Time{}
		stamp(&w.Version, &w.CreatedAt, &w.UpdatedAt, now)
		if err := putJSON(tx, tblWebhooks, w.ID, w); err != nil {
			return err
		}
		return syncIndexes(tx, w.ID, nil, webhookIndexes(&w))
	})
	if err != nil {
		return Webhook{}, err
	}
	return w, nil
}

// GetWebhook returns one webhook.
func (s *kvStore) GetWebhook(ctx context.Context, id string) (Webhook, error) {
	var w Webhook
	err := s.b.View(ctx, func(tx Tx) (err error) {
		w, err = getJSON[Webhook](tx, tblWebhooks, id, "webhook "+id)
		return err
	})
	return w, err
}

// UpdateWebhook changes a webhook.
func (s *kvStore) UpdateWebhook(ctx context.Context, id string, version int64, mutate func(*Webhook) error, actor string) (Webhook, error) {
	var out Webhook
	err := s.b.Update(ctx, func(tx Tx) error {
		cur, err := getJSON[Webhook](tx, tblWebhooks, id, "webhook "+id)
		if err != nil {
			return err
		}
		if err := checkVersion("webhook "+id, version, cur.Version); err != nil {
			return err
		}
		next := clone(cur)
		if err := mutate(&next); err != nil {
			return err
		}
		if next.ID != cur.ID || next.Tenant != cur.Tenant {
			return fieldError("tenant", "cannot be changed")
		}
		next.Version, next.CreatedAt, next.UpdatedAt, next.CreatedBy = cur.Version, cur.CreatedAt, cur.UpdatedAt, cur.CreatedBy
		now := s.clock()
		if next.PreviousUntil != nil && !now.Before(*next.PreviousUntil) {
			// A rotation's grace period is over: the old secret goes
			// with the next write instead of staying sealed forever.
			next.PreviousSealedSecret, next.PreviousUntil = nil, nil
		}
		if err := validateWebhook(&next); err != nil {
			return err
		}
		if len(diff(&cur, &next)) == 0 && bytes.Equal(cur.SealedSecret, next.SealedSecret) &&
			bytes.Equal(cur.PreviousSealedSecret, next.PreviousSealedSecret) {
			out = cur
			return nil
		}
		stamp(&next.Version, &next.CreatedAt, &next.UpdatedAt, now)
		out = next
		return putJSON(tx, tblWebhooks, id, next)
	})
	return out, err
}

// DeleteWebhook removes a webhook.
func (s *kvStore) DeleteWebhook(ctx context.Context, id string, version int64, actor string) error {
	return s.b.Update(ctx, func(tx Tx) error {
		cur, err := getJSON[Webhook](tx, tblWebhooks, id, "webhook "+id)
		if err != nil {
			return err
		}
		if err := checkVersion("webhook "+id, version, cur.Version); err != nil {
			return err
		}
		if err := tx.Delete(tblWebhooks, id); err != nil {
			return fmt.Errorf("deleting webhook %s: %w", id, err)
		}
		return syncIndexes(tx, id, webhookIndexes(&cur), nil)
	})
}

// ListWebhooks pages through webhooks, oldest first.
func (s *kvStore) ListWebhooks(ctx context.Context, q WebhookQuery) (Page[Webhook], error) {
	ps, err := normalize(q.ListOptions, []string{"createdAt"}, Sort{Field: "createdAt"})
	if err != nil {
		return Page[Webhook]{}, err
	}
	index := idxWebhooks
	if q.Tenant != "" {
		index = tenantWebhooks(q.Tenant)
	}
	l := lister[Webhook]{
		table:   tblWebhooks,
		index:   func(string) string { return index },
		sortKey: func(w *Webhook, _ string) string { return timeKey(w.CreatedAt) },
		id:      func(w *Webhook) string { return w.ID },
	}
	var p Page[Webhook]
	err = s.b.View(ctx, func(tx Tx) (err error) {
		p, err = l.list(tx, ps)
		return err
	})
	return p, err
}

// keyLive reports whether a key still waits for its expiry events: neither
// revoked nor replaced.
func keyLive(k *Key) bool { return k != nil && k.Status != KeyRevoked && k.ReplacedBy == "" }

// keyExpiryIndexes is the key's entry in keys:by:expiresAt while it is live.
func keyExpiryIndexes(k *Key) []indexEntry {
	if !keyLive(k) {
		return nil
	}
	return []indexEntry{{idxKeyExpiry, timeKey(k.ExpiresAt)}}
}

// expiryIndexedMeta marks, in the meta table, that keys stored before the
// expiry index existed have been added to it.
const expiryIndexedMeta = "events:expiry-indexed"

// ScanKeyExpiry emits the expiry reminders and expired events that are due.
func (s *kvStore) ScanKeyExpiry(ctx context.Context, now time.Time, reminders []time.Duration, limit int) (int, error) {
	if limit <= 0 {
		limit = 200
	}
	if err := s.backfillExpiryIndex(ctx); err != nil {
		return 0, err
	}
	now = now.UTC()
	reminders = slices.Clone(reminders)
	slices.Sort(reminders)
	var horizon time.Duration
	if len(reminders) > 0 {
		horizon = reminders[len(reminders)-1]
	}
	// Find the keys with an event due in a View (plain reads, no WATCH on
	// every key within the horizon), then write those events in one small
	// Update that checks each again.
	var due []string
	err := s.b.View(ctx, func(tx Tx) error {
		return walkIndex(tx, idxKeyExpiry, false, func(ids []string) (bool, error) {
			ks, err := getManyJSON[Key](tx, tblKeys, ids)
			if err != nil {
				return false, err
			}
			var evIDs, keyIDs []string
			stop := false
			for i := range ks {
				if ks[i].ExpiresAt.After(now.Add(horizon)) {
					stop = true
					break
				}
				if id := expiryEventID(&ks[i], now, reminders); id != "" {
					evIDs, keyIDs = append(evIDs, id), append(keyIDs, ks[i].ID)
				}
			}
			if len(evIDs) > 0 {
				seen, err := tx.GetMany(tblEventSeen, evIDs)
				if err != nil {
					return false, fmt.Errorf("loading event ids: %w", err)
				}
				for i, b := range seen {
					if b == nil {
						due = append(due, keyIDs[i])
					}
				}
			}
			return !stop && len(due) < limit, nil
		})
	})
	if err != nil || len(due) == 0 {
		return 0, err
	}
	if len(due) > limit {
		due = due[:limit]
	}
	emitted := 0
	err = s.b.Update(ctx, func(tx Tx) error {
		emitted = 0
		ks, err := getManyJSON[Key](tx, tblKeys, due)
		if err != nil {
			return err
		}
		for i := range ks {
			if !keyLive(&ks[i]) {
				continue
			}
			n, err := s.expiryEvents(tx, &ks[i], now, reminders)
			if err != nil {
				return err
			}
			emitted += n
		}
		return nil
	})
	return emitted, err
}

// expiryEventID is the id of the event due for a live key at now ("" for
// none): key.expired once its expiry passed, else key.expiring for the
// nearest reminder threshold crossed (reminders ascending).
func expiryEventID(k *Key, now time.Time, reminders []time.Duration) string {
	if !now.Before(k.ExpiresAt) {
		return EventID("key.expired", k.ID, timeKey(k.ExpiresAt))
	}
	if k.Status != KeyActive || (k.DisableAt != nil && !k.DisableAt.After(now)) {
		return ""
	}
	for _, r := range reminders {
		if !now.Before(k.ExpiresAt.Add(-r)) {
			return EventID("key.expiring", k.ID, timeKey(k.ExpiresAt), r.String())
		}
	}
	return ""
}

// expiryEvents emits what is due for one live key: key.expired once its
// expiry passed (and it leaves the index), else key.expiring for the
// nearest reminder threshold crossed, once per key, expiry and threshold.
func (s *kvStore) expiryEvents(tx Tx, k *Key, now time.Time, reminders []time.Duration) (int, error) {
	data := map[string]any{"key": keyInfo(k)}
	var e Event
	if !now.Before(k.ExpiresAt) {
		if err := tx.IndexRemove(idxKeyExpiry, timeKey(k.ExpiresAt), k.ID); err != nil {
			return 0, fmt.Errorf("updating index %s: %w", idxKeyExpiry, err)
		}
		e = Event{ID: EventID("key.expired", k.ID, timeKey(k.ExpiresAt)), Type: EventKeyExpired}
	} else {
		if k.Status != KeyActive || (k.DisableAt != nil && !k.DisableAt.After(now)) {
			return 0, nil
		}
		var crossed time.Duration = -1
		for _, r := range reminders {
			if !now.Before(k.ExpiresAt.Add(-r)) {
				crossed = r
				break
			}
		}
		if crossed < 0 {
			return 0, nil
		}
		data["reminder"] = crossed.String()
		data["days"] = int(crossed.Hours() / 24)
		e = Event{ID: EventID("key.expiring", k.ID, timeKey(k.ExpiresAt), crossed.String()), Type: EventKeyExpiring}
	}
	if seen, err := exists(tx, tblEventSeen, e.ID); err != nil || seen {
		return 0, err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return 0, fmt.Errorf("encoding %s event: %w", e.Type, err)
	}
	e.Time, e.Tenant, e.Actor, e.Subject, e.UserID, e.Data = now, k.TenantID, "system", keySubject(k), k.UserID, raw
	if err := tx.Put(tblEventSeen, e.ID, []byte(timeKey(now))); err != nil {
		return 0, fmt.Errorf("storing event id %s: %w", e.ID, err)
	}
	if err := tx.IndexAdd(idxEventSeen, timeKey(now), e.ID); err != nil {
		return 0, fmt.Errorf("indexing event id %s: %w", e.ID, err)
	}
	return 1, putEvent(tx, &e, 0)
}

// backfillExpiryIndex adds the live keys stored before the expiry index
// existed to it, once (a meta flag remembers), a batch of users per
// transaction; adding a key already there changes nothing.
func (s *kvStore) backfillExpiryIndex(ctx context.Context) error {
	done := false
	if err := s.b.View(ctx, func(tx Tx) (err error) {
		done, err = exists(tx, tblMeta, expiryIndexedMeta)
		return err
	}); err != nil || done {
		return err
	}
	for off := 0; ; off += walkChunk {
		n := 0
		err := s.b.Update(ctx, func(tx Tx) error {
			ids, err := tx.IndexRange("users:by:id", off, walkChunk, false)
			if err != nil {
				return fmt.Errorf("reading users: %w", err)
			}
			n = len(ids)
			for _, u := range ids {
				ks, err := userKeys(tx, u)
				if err != nil {
					return err
				}
				for i := range ks {
					for _, e := range keyExpiryIndexes(&ks[i]) {
						if err := tx.IndexAdd(e.index, e.sortKey, ks[i].ID); err != nil {
							return fmt.Errorf("indexing key expiry: %w", err)
						}
					}
				}
			}
			if n < walkChunk {
				return tx.Put(tblMeta, expiryIndexedMeta, []byte("1"))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if n < walkChunk {
			return nil
		}
	}
}

// ReportLeak revokes or flags a leaked key and emits key.leaked.
func (s *kvStore) ReportLeak(ctx context.Context, keyID string, leak Leak, actor string) (Key, error) {
	var out Key
	err := s.update(ctx, actor, func(r *recorder) error {
		cur, err := getJSON[Key](r.tx, tblKeys, keyID, "key "+keyID)
		if err != nil {
			return err
		}
		policy := LeakRevoke
		if t, err := getJSON[Tenant](r.tx, tblTenants, cur.TenantID, "tenant "+cur.TenantID); err == nil && t.LeakPolicy == LeakFlag {
			policy = LeakFlag
		} else if err != nil && !isNotFound(err) {
			return err
		}
		next := clone(cur)
		if next.LeakedAt == nil {
			at := r.now
			next.LeakedAt = &at
		}
		action := "flagged"
		switch {
		case cur.Status == KeyRevoked:
			action = "already_revoked"
			if cur.LeakedAt == nil {
				if err := putJSON(r.tx, tblKeys, next.ID, next); err != nil {
					return err
				}
			}
		case policy == LeakRevoke:
			action = "revoked"
			next.Status = KeyRevoked
			if err := writeKey(r, &cur, &next, "key.revoke"); err != nil {
				return err
			}
		default:
			if err := writeKey(r, &cur, &next, "key.leak"); err != nil {
				return err
			}
		}
		out = next
		if seen, err := exists(r.tx, tblEventSeen, EventID("key.leaked", keyID, leak.URL)); err != nil || seen {
			return err
		}
		id := EventID("key.leaked", keyID, leak.URL)
		if err := r.tx.Put(tblEventSeen, id, []byte(timeKey(r.now))); err != nil {
			return fmt.Errorf("storing event id %s: %w", id, err)
		}
		if err := r.tx.IndexAdd(idxEventSeen, timeKey(r.now), id); err != nil {
			return fmt.Errorf("indexing event id %s: %w", id, err)
		}
		raw, err := json.Marshal(map[string]any{"key": keyInfo(&next), "action": action, "policy": policy,
			"url": leak.URL, "source": leak.Source, "reporter": leak.Reporter})
		if err != nil {
			return fmt.Errorf("encoding key.leaked event: %w", err)
		}
		r.events++
		return putEvent(r.tx, &Event{ID: id, Type: EventKeyLeaked, Time: r.now, Tenant: next.TenantID, Actor: r.actor,
			Subject: keySubject(&next), UserID: next.UserID, Data: raw}, r.events)
	})
	return out, err
}

// clipText cuts s to at most n bytes on a rune boundary.
func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
