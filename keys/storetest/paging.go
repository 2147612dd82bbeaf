package storetest

import (
	"math"
	"testing"

	"github.com/keygate/keygate/keys"
)

// testHugePage: a page so far out that its offset would wrap around is a
// validation error naming page on every list, never a panic or a page of
// something else (issue 23).
func testHugePage(t *testing.T, s keys.Store) {
	tn, u := setup(t, s)
	grant(t, s, u, tn.ID, keys.RoleMember)
	must(t, "AppendActivity", s.AppendActivity(ctx, keys.Activity{Actor: actor, Method: "GET", Path: "/v1/users", Status: 200}))
	for _, page := range []int{math.MaxInt, math.MaxInt/keys.MaxPageSize + 2, math.MaxInt32} {
		lo := keys.ListOptions{Page: page, Size: keys.MaxPageSize}
		_, err := s.ListUsers(ctx, keys.UserQuery{ListOptions: lo})
		wantField(t, "ListUsers(huge page)", err, "page")
		_, err = s.ListTenants(ctx, keys.TenantQuery{ListOptions: lo})
		wantField(t, "ListTenants(huge page)", err, "page")
		_, err = s.ListPermissions(ctx, keys.PermissionQuery{Tenant: tn.ID, ListOptions: lo})
		wantField(t, "ListPermissions(huge page)", err, "page")
		_, err = s.ListActivity(ctx, keys.ActivityQuery{ListOptions: lo})
		wantField(t, "ListActivity(huge page)", err, "page")
		_, err = s.History(ctx, u.ID, page, keys.MaxPageSize)
		wantField(t, "History(huge page)", err, "page")
	}
	// A far but representable page is an empty page.
	p, err := s.ListUsers(ctx, keys.UserQuery{ListOptions: keys.ListOptions{Page: 1_000_000, Size: keys.MaxPageSize}})
	must(t, "ListUsers(far page)", err)
	if p.Total != 1 || len(p.Items) != 0 {
		t.Errorf("far page = %+v", p)
	}
}
