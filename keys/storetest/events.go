package storetest

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// webhook stores an enabled webhook of tenant for events.
func webhook(t *testing.T, s keys.Store, tenant string, events ...string) keys.Webhook {
	t.Helper()
	w, err := s.CreateWebhook(ctx, keys.Webhook{ID: keys.NewID(), Tenant: tenant, URL: "https://example.com/hook",
		Events: events, Enabled: true, SealedSecret: []byte("sealed")}, "admin")
	must(t, "creating webhook", err)
	return w
}

// dispatchAll moves every outbox event to deliveries (no lease) and
// returns the deliveries of webhook id, oldest first.
func dispatchAll(t *testing.T, s keys.Store, node string) []keys.Delivery {
	t.Helper()
	var out []keys.Delivery
	for range 100 {
		ds, err := s.DispatchEvents(ctx, time.Now(), node, time.Minute, 100)
		must(t, "dispatching", err)
		out = append(out, ds...)
		pending, err := s.PendingEvents(ctx)
		must(t, "pending events", err)
		if !pending {
			return out
		}
	}
	t.Fatal("the outbox does not drain")
	return nil
}

func types(ds []keys.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Event.Type
	}
	return out
}

// testEventsOutbox: every change writes its event in its transaction, and
// dispatching turns each into one delivery per matching subscription.
func testEventsOutbox(t *testing.T, s keys.Store) {
	tn, _ := setup(t, s)
	other := mustTenant(t, s, "other")
	_ = dispatchAll(t, s, "n1")
	all := webhook(t, s, tn.ID, "*")
	onlyKeys := webhook(t, s, tn.ID, keys.EventKeyCreated)
	global := webhook(t, s, "", keys.EventUserCreated)
	elsewhere := webhook(t, s, other.ID, "*")

	u, err := s.CreateUser(ctx, keys.User{Name: "bot", PrimaryTenant: tn.ID, Email: "bot@example.com",
		Notifications: []string{keys.EventKeyCreated}}, "admin")
	must(t, "creating user", err)
	k := mustKey(t, s, u, "ci")
	_, err = s.UpdateUser(ctx, u.ID, 0, set(func(u *keys.User) { u.Description = "d"; u.Status = keys.UserInactive }), "admin")
	must(t, "updating user", err)
	_, err = s.RevokeKey(ctx, u.ID, k.ID, 0, "admin")
	must(t, "revoking key", err)

	ds := dispatchAll(t, s, "n1")
	byTarget := map[string][]string{}
	for _, d := range ds {
		if d.Status != keys.DeliveryPending || d.LeasedBy != "n1" || d.LeaseUntil == nil {
			t.Fatalf("delivery %s: not leased to the dispatching node: %+v", d.ID, d)
		}
		if d.Event.Tenant != tn.ID || d.Event.Actor == "" || d.Event.Subject == "" || d.Event.ID == "" {
			t.Fatalf("delivery %s: event lacks tenant, actor, subject or id: %+v", d.ID, d.Event)
		}
		var data map[string]any
		if err := json.Unmarshal(d.Event.Data, &data); err != nil {
			t.Fatalf("event data: %v", err)
		}
		target := d.WebhookID
		if d.Kind == keys.DeliveryEmail {
			target = d.Address
		}
		byTarget[target] = append(byTarget[target], d.Event.Type)
	}
	want := []string{keys.EventUserCreated, keys.EventKeyCreated, keys.EventUserStateChanged, keys.EventUserUpdated, keys.EventKeyRevoked}
	if got := byTarget[all.ID]; !slices.Equal(got, want) {
		t.Errorf("webhook for all events got %v, want %v", got, want)
	}
	if got := byTarget[onlyKeys.ID]; !slices.Equal(got, []string{keys.EventKeyCreated}) {
		t.Errorf("key.created webhook got %v", got)
	}
	if got := byTarget[global.ID]; !slices.Equal(got, []string{keys.EventUserCreated}) {
		t.Errorf("global webhook got %v", got)
	}
	if got := byTarget[elsewhere.ID]; len(got) != 0 {
		t.Errorf("another tenant's webhook got %v", got)
	}
	if got := byTarget["bot@example.com"]; !slices.Equal(got, []string{keys.EventKeyCreated}) {
		t.Errorf("the user's address got %v", got)
	}
	for _, d := range ds {
		if slices.Contains([]string{keys.EventKeyCreated, keys.EventKeyRevoked}, d.Event.Type) &&
			json.Valid(d.Event.Data) && (contains(string(d.Event.Data), `"hash"`) || contains(string(d.Event.Data), "sealed")) {
			t.Errorf("event %s carries secret material: %s", d.Event.Type, d.Event.Data)
		}
	}
	p, err := s.ListDeliveries(ctx, keys.DeliveryQuery{WebhookID: all.ID})
	must(t, "listing deliveries", err)
	if p.Total != len(want) {
		t.Errorf("webhook deliveries: %d, want %d", p.Total, len(want))
	}
	if p, _ := s.ListDeliveries(ctx, keys.DeliveryQuery{Tenant: other.ID}); p.Total != 0 {
		t.Errorf("other tenant lists %d deliveries", p.Total)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// testDeliveryLifecycle: leases, retries, giving up, replay, and a lease
// that passed going to another node.
func testDeliveryLifecycle(t *testing.T, s keys.Store) {
	tn, _ := setup(t, s)
	_ = dispatchAll(t, s, "n0") // before the webhook: delivered to none
	w := webhook(t, s, tn.ID, keys.EventUserCreated)
	_, err := s.CreateUser(ctx, keys.User{Name: "x", PrimaryTenant: tn.ID}, "admin")
	must(t, "creating user", err)
	ds := dispatchAll(t, s, "n1")
	if len(ds) != 1 || ds[0].WebhookID != w.ID {
		t.Fatalf("dispatched %v", ds)
	}
	d := ds[0]
	now := time.Now()
	// Leased: nobody may claim it until the lease passes.
	if got, err := s.ClaimDeliveries(ctx, now, "n2", time.Minute, 10); err != nil || len(got) != 0 {
		t.Fatalf("claimed a leased delivery: %v %v", got, err)
	}
	// n1 fails; retry in a second.
	d, err = s.FinishDelivery(ctx, d.ID, "n1", keys.Attempt{At: now, Status: 503, Error: "503 Service Unavailable", Next: now.Add(time.Second)})
	must(t, "finishing", err)
	if d.Status != keys.DeliveryPending || d.Attempts != 1 || d.LastStatus != 503 || d.LeasedBy != "" {
		t.Fatalf("after a failed attempt: %+v", d)
	}
	if got, _ := s.ClaimDeliveries(ctx, now, "n2", time.Minute, 10); len(got) != 0 {
		t.Fatal("claimed before it was due")
	}
	later := now.Add(2 * time.Second)
	got, err := s.ClaimDeliveries(ctx, later, "n2", time.Minute, 10)
	must(t, "claiming", err)
	if len(got) != 1 || got[0].LeasedBy != "n2" {
		t.Fatalf("claim: %+v", got)
	}
	// n2's lease passes; n3 takes over; n2's late failure changes nothing.
	got, err = s.ClaimDeliveries(ctx, later.Add(2*time.Minute), "n3", time.Minute, 10)
	must(t, "claiming again", err)
	if len(got) != 1 || got[0].LeasedBy != "n3" {
		t.Fatalf("takeover claim: %+v", got)
	}
	d, err = s.FinishDelivery(ctx, d.ID, "n2", keys.Attempt{At: later, Status: 500, Next: later.Add(time.Second)})
	must(t, "late finish", err)
	if d.LeasedBy != "n3" || d.Attempts != 1 {
		t.Fatalf("a lost lease's failure was recorded: %+v", d)
	}
	// n3 gives up: FAILED, visible, replayable.
	d, err = s.FinishDelivery(ctx, d.ID, "n3", keys.Attempt{At: later, Status: 0, Error: "connection refused"})
	must(t, "giving up", err)
	if d.Status != keys.DeliveryFailed || d.Attempts != 2 {
		t.Fatalf("after giving up: %+v", d)
	}
	if p, _ := s.ListDeliveries(ctx, keys.DeliveryQuery{WebhookID: w.ID, Status: keys.DeliveryFailed}); p.Total != 1 {
		t.Fatalf("failed deliveries listed: %d", p.Total)
	}
	if got, _ := s.ClaimDeliveries(ctx, later.Add(time.Hour), "n3", time.Minute, 10); len(got) != 0 {
		t.Fatal("a FAILED delivery was claimed")
	}
	d, err = s.ReplayDelivery(ctx, d.ID, later, "admin")
	must(t, "replaying", err)
	if d.Status != keys.DeliveryPending || d.Attempts != 0 {
		t.Fatalf("after replay: %+v", d)
	}
	_, err = s.ReplayDelivery(ctx, d.ID, later, "admin")
	wantErr(t, "replaying a pending delivery", err, keys.ErrConflict)
	got, err = s.ClaimDeliveries(ctx, later, "n1", time.Minute, 10)
	must(t, "claiming the replay", err)
	if len(got) != 1 {
		t.Fatalf("replayed delivery not due: %v", got)
	}
	d, err = s.FinishDelivery(ctx, d.ID, "n1", keys.Attempt{At: later, OK: true, Status: 204})
	must(t, "delivering", err)
	if d.Status != keys.DeliveryDelivered || d.DeliveredAt == nil {
		t.Fatalf("after delivery: %+v", d)
	}
	// Retention removes finished deliveries.
	n, err := s.PurgeDeliveries(ctx, time.Now().Add(time.Hour))
	must(t, "purging", err)
	if n < 1 {
		t.Fatalf("purged %d", n)
	}
	_, err = s.GetDelivery(ctx, d.ID)
	wantErr(t, "purged delivery", err, keys.ErrNotFound)
}

// testEventsOnce: stable ids are appended once, and two dispatchers racing
// hand out each event once.
func testEventsOnce(t *testing.T, s keys.Store) {
	tn, _ := setup(t, s)
	webhook(t, s, tn.ID, "*")
	_ = dispatchAll(t, s, "n0")
	e := keys.Event{ID: keys.EventID("t", "1"), Type: keys.EventRateLimitExceeded, Tenant: tn.ID, Actor: "system", Subject: "users/1", Data: json.RawMessage(`{"limit":1}`)}
	n, err := s.AppendEvents(ctx, []keys.Event{e, e})
	must(t, "appending", err)
	if n != 1 {
		t.Fatalf("appended %d, want 1", n)
	}
	if n, _ := s.AppendEvents(ctx, []keys.Event{e}); n != 0 {
		t.Fatalf("appended again: %d", n)
	}
	_, err = s.AppendEvents(ctx, []keys.Event{{Type: "nope"}})
	wantErr(t, "unknown type", err, keys.ErrInvalid)
	for i := range 20 {
		_, err := s.AppendEvents(ctx, []keys.Event{{ID: keys.EventID("many", string(rune('a'+i))), Type: keys.EventAuthFailures, Tenant: tn.ID, Actor: "system"}})
		must(t, "appending", err)
	}
	var (
		mu  sync.Mutex
		ids = map[string]int{}
		wg  sync.WaitGroup
	)
	for node := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				ds, err := s.DispatchEvents(ctx, time.Now(), string(rune('A'+node)), time.Minute, 3)
				if err != nil {
					t.Errorf("dispatching: %v", err)
					return
				}
				mu.Lock()
				for _, d := range ds {
					ids[d.ID]++
				}
				mu.Unlock()
				if p, _ := s.PendingEvents(ctx); !p {
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(ids) != 21 {
		t.Fatalf("dispatched %d deliveries, want 21", len(ids))
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("delivery %s handed out %d times", id, n)
		}
	}
}

// testKeyExpiryEvents: reminders once per threshold, key.expired once.
func testKeyExpiryEvents(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	webhook(t, s, tn.ID, keys.EventKeyExpiring, keys.EventKeyExpired)
	now := time.Now().UTC()
	k := newKey(u, "soon")
	k.ExpiresAt = now.Add(10 * 24 * time.Hour)
	_, err := s.CreateKey(ctx, k, "admin")
	must(t, "creating key", err)
	far := newKey(u, "far")
	far.ExpiresAt = now.Add(100 * 24 * time.Hour)
	_, err = s.CreateKey(ctx, far, "admin")
	must(t, "creating key", err)
	_ = dispatchAll(t, s, "n0")
	day := 24 * time.Hour
	rem := []time.Duration{14 * day, 3 * day, day}
	scan := func(at time.Time) []keys.Delivery {
		t.Helper()
		_, err := s.ScanKeyExpiry(ctx, at, rem, 100)
		must(t, "scanning", err)
		return dispatchAll(t, s, "n0")
	}
	ds := scan(now)
	if len(ds) != 1 || ds[0].Event.Type != keys.EventKeyExpiring || !contains(string(ds[0].Event.Data), `"days":14`) {
		t.Fatalf("first scan: %v", ds)
	}
	if ds := scan(now.Add(time.Hour)); len(ds) != 0 {
		t.Fatalf("a second scan repeated: %v", types(ds))
	}
	// Two days from expiry both 3 and 14 are crossed: only the 3-day one.
	ds = scan(k.ExpiresAt.Add(-2 * day))
	if len(ds) != 1 || !contains(string(ds[0].Event.Data), `"days":3`) {
		t.Fatalf("3-day reminder: %v", ds)
	}
	ds = scan(k.ExpiresAt.Add(time.Minute))
	if len(ds) != 1 || ds[0].Event.Type != keys.EventKeyExpired || ds[0].Event.UserID != u.ID {
		t.Fatalf("expired: %v", types(ds))
	}
	if ds := scan(k.ExpiresAt.Add(time.Hour)); len(ds) != 0 {
		t.Fatalf("expired twice: %v", types(ds))
	}
	// A revoked key gets no reminder.
	kk, err := s.GetKey(ctx, far.ID)
	must(t, "get", err)
	_, err = s.RevokeKey(ctx, u.ID, kk.ID, 0, "admin")
	must(t, "revoke", err)
	_ = dispatchAll(t, s, "n0")
	if ds := scan(far.ExpiresAt.Add(-time.Hour)); len(ds) != 0 {
		t.Fatalf("revoked key reminded: %v", types(ds))
	}
}

// testReportLeak: REVOKE (default) revokes, FLAG only marks; both emit
// key.leaked once per key and URL.
func testReportLeak(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	webhook(t, s, tn.ID, keys.EventKeyLeaked, keys.EventKeyRevoked)
	k := mustKey(t, s, u, "leaky")
	_ = dispatchAll(t, s, "n0")
	got, err := s.ReportLeak(ctx, k.ID, keys.Leak{URL: "https://github.com/x/y/blob/1/a", Source: "content", Reporter: "github"}, "github")
	must(t, "reporting", err)
	if got.Status != keys.KeyRevoked || got.LeakedAt == nil {
		t.Fatalf("after the report: %+v", got)
	}
	if ts := types(dispatchAll(t, s, "n0")); !slices.Equal(ts, []string{keys.EventKeyRevoked, keys.EventKeyLeaked}) {
		t.Fatalf("events: %v", ts)
	}
	_, err = s.ReportLeak(ctx, k.ID, keys.Leak{URL: "https://github.com/x/y/blob/1/a"}, "github")
	must(t, "reporting again", err)
	if ts := types(dispatchAll(t, s, "n0")); len(ts) != 0 {
		t.Fatalf("a repeated report emitted %v", ts)
	}
	_, err = s.UpdateTenant(ctx, tn.ID, 0, set(func(t *keys.Tenant) { t.LeakPolicy = keys.LeakFlag }), "admin")
	must(t, "policy", err)
	k2 := mustKey(t, s, u, "leaky2")
	_ = dispatchAll(t, s, "n0")
	got, err = s.ReportLeak(ctx, k2.ID, keys.Leak{URL: "u"}, "github")
	must(t, "reporting", err)
	if got.Status != keys.KeyActive || got.LeakedAt == nil {
		t.Fatalf("flagged key: %+v", got)
	}
	if ts := types(dispatchAll(t, s, "n0")); !slices.Equal(ts, []string{keys.EventKeyLeaked}) {
		t.Fatalf("flag events: %v", ts)
	}
	_, err = s.ReportLeak(ctx, "nosuchkey", keys.Leak{}, "github")
	wantErr(t, "unknown key", err, keys.ErrNotFound)
}

// testWebhooks: CRUD, validation, versions.
func testWebhooks(t *testing.T, s keys.Store) {
	tn, _ := setup(t, s)
	w := webhook(t, s, tn.ID, keys.EventKeyCreated)
	_, err := s.CreateWebhook(ctx, keys.Webhook{ID: keys.NewID(), Tenant: tn.ID, URL: "https://x", Events: []string{"nope"}, SealedSecret: []byte("s")}, "a")
	wantField(t, "bad event type", err, "events")
	_, err = s.CreateWebhook(ctx, keys.Webhook{ID: keys.NewID(), Tenant: "missing", URL: "https://x", Events: []string{"*"}, SealedSecret: []byte("s")}, "a")
	wantField(t, "missing tenant", err, "tenant")
	got, err := s.UpdateWebhook(ctx, w.ID, w.Version, set(func(w *keys.Webhook) { w.Enabled = false }), "a")
	must(t, "updating", err)
	if got.Enabled || got.Version != w.Version+1 {
		t.Fatalf("after update: %+v", got)
	}
	_, err = s.UpdateWebhook(ctx, w.ID, w.Version, set(func(w *keys.Webhook) { w.URL = "https://y" }), "a")
	wantErr(t, "stale version", err, keys.ErrVersionMismatch)
	webhook(t, s, "", "*")
	if p, _ := s.ListWebhooks(ctx, keys.WebhookQuery{Tenant: tn.ID}); p.Total != 1 {
		t.Fatalf("tenant webhooks: %d", p.Total)
	}
	if p, _ := s.ListWebhooks(ctx, keys.WebhookQuery{}); p.Total != 2 {
		t.Fatalf("all webhooks: %d", p.Total)
	}
	must(t, "deleting", s.DeleteWebhook(ctx, w.ID, 0, "a"))
	_, err = s.GetWebhook(ctx, w.ID)
	wantErr(t, "deleted webhook", err, keys.ErrNotFound)
}

// testWebhookSecretRotation: a rotation with a grace period keeps the old
// sealed secret until its end; one without drops it; a rotation alone (no
// other field changed) is a new version; an expired previous secret goes
// with the next update.
func testWebhookSecretRotation(t *testing.T, s keys.Store) {
	tn, _ := setup(t, s)
	w := webhook(t, s, tn.ID, "*")
	now := time.Now()
	got, err := s.UpdateWebhook(ctx, w.ID, w.Version, set(func(w *keys.Webhook) { w.RotateSecret([]byte("second"), now, time.Hour) }), "a")
	must(t, "rotating with a grace period", err)
	if string(got.SealedSecret) != "second" || string(got.PreviousSecret(now)) != "sealed" || got.Version != w.Version+1 {
		t.Fatalf("after rotation: sealed %q previous %q v%d", got.SealedSecret, got.PreviousSealedSecret, got.Version)
	}
	if got.PreviousSecret(now.Add(time.Hour)) != nil {
		t.Fatal("the previous secret outlives its grace period")
	}
	stored, err := s.GetWebhook(ctx, w.ID)
	must(t, "reading", err)
	if string(stored.PreviousSecret(now)) != "sealed" || stored.PreviousUntil == nil || stored.PreviousUntil.Sub(now.Add(time.Hour)).Abs() > time.Second {
		t.Fatalf("stored rotation: %+v", stored)
	}
	// Rotating again within the grace period: the oldest secret ends.
	got, err = s.UpdateWebhook(ctx, w.ID, got.Version, set(func(w *keys.Webhook) { w.RotateSecret([]byte("third"), now, time.Hour) }), "a")
	must(t, "rotating again", err)
	if string(got.SealedSecret) != "third" || string(got.PreviousSecret(now)) != "second" {
		t.Fatalf("second rotation: sealed %q previous %q", got.SealedSecret, got.PreviousSealedSecret)
	}
	// Without a grace period nothing but the new secret is left.
	got, err = s.UpdateWebhook(ctx, w.ID, got.Version, set(func(w *keys.Webhook) { w.RotateSecret([]byte("fourth"), now, 0) }), "a")
	must(t, "rotating at once", err)
	if string(got.SealedSecret) != "fourth" || got.PreviousSealedSecret != nil || got.PreviousUntil != nil {
		t.Fatalf("rotation without grace: %+v", got)
	}
	// A grace period that is over is dropped by the next update.
	got, err = s.UpdateWebhook(ctx, w.ID, got.Version, set(func(w *keys.Webhook) { w.RotateSecret([]byte("fifth"), now.Add(-2*time.Hour), time.Hour) }), "a")
	must(t, "rotating with a past grace period", err)
	got, err = s.UpdateWebhook(ctx, w.ID, got.Version, set(func(w *keys.Webhook) { w.Description = "x" }), "a")
	must(t, "updating", err)
	if got.PreviousSealedSecret != nil || got.PreviousUntil != nil || string(got.SealedSecret) != "fifth" {
		t.Fatalf("an expired previous secret stayed: %+v", got)
	}
	_, err = s.UpdateWebhook(ctx, w.ID, got.Version, set(func(w *keys.Webhook) { w.PreviousSealedSecret = []byte("x") }), "a")
	wantField(t, "previous secret without an end", err, "previousSecret")
}

// testFailureCounts: counts of one subject and window from several calls
// (nodes) add up, clients merge without repeats, first and last widen;
// other subjects and windows are apart; ended windows are purged; bad
// counts are refused and change nothing.
func testFailureCounts(t *testing.T, s keys.Store) {
	// The store takes the windows it is given: the current one lies an
	// hour ahead (it cannot end during the test), the ended one two back.
	win := time.Minute
	start := time.Now().Add(time.Hour).Truncate(win)
	ended := time.Now().Add(-2 * time.Hour).Truncate(win)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	subject := "users/" + keys.NewID() + "/keys/" + keys.NewID()
	got, err := s.AddFailureCounts(ctx, []keys.FailureCount{
		{Subject: subject, Start: start, Window: win, Failures: 2, Clients: []string{"a", "b"}, First: at(2 * time.Second), Last: at(5 * time.Second)},
		{Subject: "users/other", Start: start, Window: win, Failures: 1, Clients: []string{"a"}, First: at(time.Second), Last: at(time.Second)},
	})
	must(t, "adding node A's counts", err)
	if len(got) != 2 || got[0].Failures != 2 || got[1].Failures != 1 || got[0].Subject != subject {
		t.Fatalf("first counts: %+v", got)
	}
	got, err = s.AddFailureCounts(ctx, []keys.FailureCount{
		{Subject: subject, Start: start, Window: win, Failures: 3, Clients: []string{"b", "c"}, First: at(time.Second), Last: at(9 * time.Second)},
		{Subject: subject, Start: ended, Window: win, Failures: 1, First: ended, Last: ended},
	})
	must(t, "adding node B's counts", err)
	sum := got[0]
	slices.Sort(sum.Clients)
	if sum.Failures != 5 || !slices.Equal(sum.Clients, []string{"a", "b", "c"}) || !sum.First.Equal(at(time.Second)) || !sum.Last.Equal(at(9*time.Second)) {
		t.Fatalf("summed: %+v", sum)
	}
	if got[1].Failures != 1 {
		t.Fatalf("another window was added to: %+v", got[1])
	}
	// The ended window is purged by the next call, so a late count for it
	// starts from nothing.
	got, err = s.AddFailureCounts(ctx, []keys.FailureCount{{Subject: subject, Start: ended, Window: win, Failures: 1}})
	must(t, "adding to an ended window", err)
	if got[0].Failures != 1 {
		t.Fatalf("an ended window was not purged: %+v", got[0])
	}
	// Clients are capped.
	many := make([]string, keys.MaxFailureClients+10)
	for i := range many {
		many[i] = strconv.Itoa(i)
	}
	got, err = s.AddFailureCounts(ctx, []keys.FailureCount{{Subject: "users/many", Start: start, Window: win, Failures: int64(len(many)), Clients: many}})
	must(t, "adding many clients", err)
	if len(got[0].Clients) != keys.MaxFailureClients {
		t.Fatalf("%d clients kept", len(got[0].Clients))
	}
	for _, bad := range []keys.FailureCount{
		{Subject: "", Start: start, Window: win, Failures: 1},
		{Subject: "users/x@y", Start: start, Window: win, Failures: 1},
		{Subject: subject, Start: start, Window: 0, Failures: 1},
		{Subject: subject, Start: start, Window: win, Failures: -1},
	} {
		_, err := s.AddFailureCounts(ctx, []keys.FailureCount{{Subject: subject, Start: start, Window: win, Failures: 100}, bad})
		wantErr(t, "bad count "+bad.Subject, err, keys.ErrInvalid)
	}
	got, err = s.AddFailureCounts(ctx, []keys.FailureCount{{Subject: subject, Start: start, Window: win}})
	must(t, "reading back", err)
	if got[0].Failures != 5 {
		t.Fatalf("a refused call changed the count: %+v", got[0])
	}
	// PurgeDeliveries removes the counts of every ended window (more than
	// the few each AddFailureCounts removes: the newest would survive those).
	var old []keys.FailureCount
	for i := range 30 {
		old = append(old, keys.FailureCount{Subject: "users/old", Start: ended.Add(-time.Duration(30-i) * win), Window: win, Failures: 7})
	}
	_, err = s.AddFailureCounts(ctx, old)
	must(t, "adding old windows", err)
	_, err = s.PurgeDeliveries(ctx, time.Now().Add(-time.Hour))
	must(t, "purging", err)
	newest := old[len(old)-1]
	newest.Failures = 0
	got, err = s.AddFailureCounts(ctx, []keys.FailureCount{newest})
	must(t, "reading the newest old window", err)
	if got[0].Failures != 0 {
		t.Fatalf("PurgeDeliveries kept an ended window: %+v", got[0])
	}
}
