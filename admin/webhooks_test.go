package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// TestWebhookAuthz: tenant admins manage their tenant's webhooks only;
// webhooks for all tenants take a superadmin; the secret is shown once;
// bad URLs and event types are 400.
func TestWebhookAuthz(t *testing.T) {
	e := newEnv(t, newFileStore)
	var w WebhookView
	e.do("POST", "/v1/webhooks", e.adminA, map[string]any{"url": "https://a.example.com/h", "events": []string{"key.created"}}).want(201).data(&w)
	if !strings.HasPrefix(w.Secret, "whsec_") || w.Tenant != "a" || !w.Enabled {
		t.Fatalf("created: %+v", w)
	}
	var got WebhookView
	e.do("GET", "/v1/webhooks/"+w.ID, e.adminA, nil).want(200).data(&got)
	if got.Secret != "" {
		t.Fatal("the secret is shown again")
	}
	e.do("GET", "/v1/webhooks/"+w.ID, e.adminB, nil).want(404)
	e.do("DELETE", "/v1/webhooks/"+w.ID, e.adminB, nil).want(404)
	e.do("GET", "/v1/webhooks/"+w.ID+"/deliveries", e.adminB, nil).want(404)
	e.do("POST", "/v1/webhooks", e.adminA, map[string]any{"tenant": "b", "url": "https://x", "events": []string{"*"}}).want(403)
	e.do("GET", "/v1/webhooks", e.memberA, nil).want(403)
	// A tenant admin leaving out tenant gets its own; a superadmin gets a global one.
	var g WebhookView
	e.do("POST", "/v1/webhooks", e.rootKey, map[string]any{"url": "https://all.example.com", "events": []string{"*"}}).want(201).data(&g)
	if g.Tenant != "" {
		t.Fatalf("superadmin webhook tenant %q", g.Tenant)
	}
	e.do("GET", "/v1/webhooks/"+g.ID, e.adminA, nil).want(404)
	var list []WebhookView
	e.do("GET", "/v1/webhooks", e.adminB, nil).want(200).data(&list)
	if len(list) != 0 {
		t.Fatalf("tenant b lists %d webhooks", len(list))
	}
	e.do("GET", "/v1/webhooks", e.rootKey, nil).want(200).data(&list)
	if len(list) != 2 {
		t.Fatalf("superadmin lists %d webhooks", len(list))
	}
	for _, bad := range []map[string]any{
		{"url": "ftp://x", "events": []string{"*"}},
		{"url": "https://x", "events": []string{"key.nope"}},
		{"url": "https://x", "events": []string{}},
		{"url": "https://user:pw@x/", "events": []string{"*"}},
		{"events": []string{"*"}},
	} {
		e.do("POST", "/v1/webhooks", e.adminA, bad).want(400)
	}
	e.do("PATCH", "/v1/webhooks/"+w.ID, e.adminA, map[string]any{"enabled": false}).want(428)
	e.do("PATCH", "/v1/webhooks/"+w.ID, e.adminA, map[string]any{"enabled": false}, "If-Match", `"1"`).want(200).data(&got)
	if got.Enabled || got.Version != 2 {
		t.Fatalf("after patch: %+v", got)
	}
	e.do("DELETE", "/v1/webhooks/"+w.ID, e.adminA, nil, "If-Match", "*").want(204)
}

// TestWebhookRotateSecret: a rotation returns a new secret once; with a
// grace period the old one stays sealed beside it until the period ends
// (previousSecretExpiresAt), without one it is gone; bad grace periods,
// stale If-Match and other tenants' admins change nothing.
func TestWebhookRotateSecret(t *testing.T) {
	e := newEnv(t, newFileStore)
	var w WebhookView
	e.do("POST", "/v1/webhooks", e.adminA, map[string]any{"url": "https://a.example.com/h", "events": []string{"*"}}).want(201).data(&w)
	open := func(sealed []byte, id string) string {
		t.Helper()
		pt, err := e.sealer.Open(sealed, keys.WebhookAAD(id))
		if err != nil {
			t.Fatal(err)
		}
		return string(pt)
	}
	var r WebhookView
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.adminA, map[string]any{"gracePeriod": "24h"}).want(200).data(&r)
	if !strings.HasPrefix(r.Secret, "whsec_") || r.Secret == w.Secret || r.Version != w.Version+1 ||
		r.PreviousSecretExpiresAt == nil || !r.PreviousSecretExpiresAt.Equal(e.clk.Now().Add(24*time.Hour)) {
		t.Fatalf("rotated: %+v", r)
	}
	stored, err := e.store.GetWebhook(t.Context(), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if open(stored.SealedSecret, w.ID) != r.Secret || open(stored.PreviousSecret(e.clk.Now()), w.ID) != w.Secret {
		t.Fatal("the stored secrets are not the new and the old one")
	}
	var got WebhookView
	e.do("GET", "/v1/webhooks/"+w.ID, e.adminA, nil).want(200).data(&got)
	if got.Secret != "" || got.PreviousSecretExpiresAt == nil {
		t.Fatalf("after rotation: %+v", got)
	}
	e.clk.Advance(25 * time.Hour)
	got = WebhookView{}
	e.do("GET", "/v1/webhooks/"+w.ID, e.adminA, nil).want(200).data(&got)
	if got.PreviousSecretExpiresAt != nil {
		t.Fatalf("grace period still shown after its end: %+v", got)
	}
	// Refusals change nothing.
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.adminB, nil).want(404)
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.memberA, nil).want(403)
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.adminA, map[string]any{"gracePeriod": "-1h"}).wantProblem(400, "gracePeriod")
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.adminA, map[string]any{"gracePeriod": "721h"}).wantProblem(400, "gracePeriod")
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.adminA, map[string]any{"grace": "1h"}).wantProblem(400, "grace")
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.adminA, nil, "If-Match", `"1"`).want(412)
	if again, _ := e.store.GetWebhook(t.Context(), w.ID); again.Version != stored.Version || open(again.SealedSecret, w.ID) != r.Secret {
		t.Fatalf("a refused rotation changed the webhook: v%d", again.Version)
	}
	// Without a body: the old secret ends at once.
	var r2 WebhookView
	e.do("POST", "/v1/webhooks/"+w.ID+"/rotate-secret", e.adminA, nil, "If-Match", `"2"`).want(200).data(&r2)
	if r2.Secret == r.Secret || r2.PreviousSecretExpiresAt != nil {
		t.Fatalf("rotation without grace: %+v", r2)
	}
	if after, _ := e.store.GetWebhook(t.Context(), w.ID); after.PreviousSealedSecret != nil || open(after.SealedSecret, w.ID) != r2.Secret {
		t.Fatalf("rotation without grace kept the old secret: %+v", after)
	}
}
