package admin

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// TestTenantOverview: the overview's windows, hourly buckets, refusal
// reasons, top lists and expiring keys, from the usage counts the gateways
// store; the paged routes answer the same numbers; only the tenant's
// administrators read them.
func TestTenantOverview(t *testing.T) {
	bothStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f)
		ctx := context.Background()
		busy := e.createUser(e.adminA, map[string]any{"name": "busy"})
		bad := e.createUser(e.adminA, map[string]any{"name": "bad"})
		now := e.clk.Now()
		hour := now.Truncate(time.Hour)
		counts := []keys.UsageCount{
			{UserID: busy.ID, Tenant: "a", Hour: hour, Allowed: 50, Limited: 5},
			{UserID: busy.ID, Tenant: "a", Hour: hour.Add(-time.Hour), Allowed: 10},
			{UserID: busy.ID, Tenant: "a", Hour: hour.Add(-20 * time.Hour), Allowed: 100},
			{UserID: bad.ID, Tenant: "a", Hour: hour, Allowed: 1, Refused: 9, Expired: 2, Revoked: 3, Coverage: 1, Forbidden: 3},
			{Tenant: "a", Hour: hour, Refused: 4, BadKey: 4, Throttled: 6, Invalid: 1, Unavailable: 2},
			{UserID: busy.ID, Tenant: "a", Hour: hour.Add(-30 * time.Hour), Allowed: 1000}, // before the last day
			{UserID: busy.ID, Tenant: "b", Hour: hour, Allowed: 77},                        // another tenant
		}
		if err := e.store.AddUsageCounts(ctx, counts); err != nil {
			t.Fatal(err)
		}
		soon := e.createKey(e.adminA, busy.ID, "soon") // expires in 48h
		late := e.createKey(e.adminA, bad.ID, "late")
		e.do("PATCH", "/v1/users/"+bad.ID+"/keys/"+late.ID, e.adminA, map[string]any{"expiresAt": now.Add(30 * 24 * time.Hour).Format(time.RFC3339)}, "If-Match", "*").want(200)

		var ov Overview
		e.do("GET", "/v1/tenants/a/overview", e.adminA, nil).want(200).data(&ov)
		if !ov.LastHour.From.Equal(hour.Add(-time.Hour)) || !ov.LastDay.From.Equal(hour.Add(-24*time.Hour)) || !ov.LastDay.To.Equal(hour.Add(time.Hour)) {
			t.Fatalf("windows: hour [%s, %s), day [%s, %s)", ov.LastHour.From, ov.LastHour.To, ov.LastDay.From, ov.LastDay.To)
		}
		want := UsageTotals{Requests: 161 + 5 + 13 + 6 + 1 + 2, Allowed: 161, Limited: 5, Refused: 13,
			Refusals:  Refusals{BadKey: 4, Expired: 2, Revoked: 3, Coverage: 1, Forbidden: 3},
			Throttled: 6, Invalid: 1, Unavailable: 2}
		if ov.LastDay.UsageTotals != want {
			t.Errorf("last day = %+v, want %+v", ov.LastDay.UsageTotals, want)
		}
		want.Allowed, want.Requests = 61, want.Requests-100
		if ov.LastHour.UsageTotals != want {
			t.Errorf("last hour = %+v, want %+v", ov.LastHour.UsageTotals, want)
		}
		if len(ov.Hourly) != 25 || !ov.Hourly[24].Start.Equal(hour) || ov.Hourly[24].Allowed != 51 || ov.Hourly[4].Allowed != 100 {
			t.Errorf("hourly = %d buckets, last %+v", len(ov.Hourly), ov.Hourly[len(ov.Hourly)-1])
		}
		if tr := ov.TopByRequests; tr.Total != 2 || tr.Items[0].UserID != busy.ID || tr.Items[0].Name != "busy" || tr.Items[0].Requests != 165 {
			t.Errorf("top by requests = %+v", tr)
		}
		if tr := ov.TopByRefusals; tr.Total != 1 || tr.Items[0].UserID != bad.ID || tr.Items[0].Refused != 9 || tr.Items[0].Refusals.Revoked != 3 {
			t.Errorf("top by refusals = %+v", tr)
		}
		if ek := ov.ExpiringKeys; ek.Total != 1 || ek.Items[0].ID != soon.ID || ek.Items[0].UserName != "busy" || ek.Items[0].Key != "" {
			t.Errorf("expiring keys = %+v", ek)
		}

		// The paged routes, as curl reads them.
		var tu TenantUsage
		e.do("GET", "/v1/tenants/a/usage", e.adminA, nil).want(200).data(&tu)
		if tu.Totals != ov.LastDay.UsageTotals || len(tu.Buckets) != 25 {
			t.Errorf("usage totals %+v differ from the overview's %+v", tu.Totals, ov.LastDay.UsageTotals)
		}
		e.do("GET", "/v1/tenants/a/usage?from="+hour.Add(-48*time.Hour).Format(time.RFC3339)+"&step=24h", e.adminA, nil).want(200).data(&tu)
		if len(tu.Buckets) != 3 || tu.Totals.Allowed != 1161 || tu.Buckets[0].Allowed != 1000 { // 49 hours in steps of 24
			t.Errorf("two days = %+v", tu)
		}
		var users []UserUsage
		res := e.do("GET", "/v1/tenants/a/usage/users?by=refusals", e.adminA, nil).want(200)
		res.data(&users)
		if len(users) != 1 || users[0].UserID != bad.ID || res.envelope().Total != 1 {
			t.Errorf("by refusals = %+v", users)
		}
		res = e.do("GET", "/v1/tenants/a/usage/users?size=1&page=2", e.adminA, nil).want(200)
		res.data(&users)
		if len(users) != 1 || users[0].UserID != bad.ID || res.envelope().Total != 2 {
			t.Errorf("by requests, page 2 of size 1 = %+v", users)
		}
		var ek []ExpiringKey
		e.do("GET", "/v1/tenants/a/keys/expiring?before="+now.Add(60*24*time.Hour).Format(time.RFC3339), e.adminA, nil).want(200).data(&ek)
		if len(ek) != 2 || ek[0].ID != soon.ID || ek[1].ID != late.ID {
			t.Errorf("expiring in 60 days = %+v", ek)
		}
		e.do("GET", "/v1/tenants/a/usage/users?by=fame", e.adminA, nil).wantProblem(400, "by")
		e.do("GET", "/v1/tenants/a/overview?top=0", e.adminA, nil).wantProblem(400, "top")
		e.do("GET", "/v1/tenants/a/usage?step=30m", e.adminA, nil).wantProblem(400, "step")
		e.do("GET", "/v1/tenants/a/keys/expiring?before=soon", e.adminA, nil).wantProblem(400, "before")

		// Only the tenant's administrators (and superadmins) read it.
		e.do("GET", "/v1/tenants/a/overview", e.rootKey, nil).want(200)
		e.do("GET", "/v1/tenants/a/overview", e.adminB, nil).wantProblem(404, "")
		e.do("GET", "/v1/tenants/a/overview", e.memberA, nil).wantProblem(403, "")
		e.do("GET", "/v1/tenants/nowhere/overview", e.rootKey, nil).wantProblem(404, "")
		var ovb Overview
		e.do("GET", "/v1/tenants/b/overview", e.adminB, nil).want(200).data(&ovb)
		if ovb.LastDay.Allowed != 77 || ovb.TopByRequests.Total != 1 {
			t.Errorf("tenant b = %+v", ovb.LastDay)
		}
	})
}
