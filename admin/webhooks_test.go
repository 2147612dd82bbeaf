package admin

import (
	"strings"
	"testing"
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
