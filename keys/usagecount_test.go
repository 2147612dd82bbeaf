package keys_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// failingUsageStore fails AddUsageCounts while fail is set.
type failingUsageStore struct {
	keys.Store
	fail  bool
	added []keys.UsageCount
}

func (f *failingUsageStore) AddUsageCounts(_ context.Context, c []keys.UsageCount) error {
	if f.fail {
		return errors.New("store down")
	}
	f.added = append(f.added, c...)
	return nil
}

func (f *failingUsageStore) PurgeUsageCounts(context.Context, time.Time) (int, error) { return 0, nil }

func TestUsageCounterFlushKeepsCountsOnError(t *testing.T) {
	st := &failingUsageStore{fail: true}
	c := keys.NewUsageCounter(st, time.Minute)
	at := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	c.Count("acme", "u1", keys.UsageAllowed, at)
	c.Count("acme", "u1", keys.UsageAllowed, at.Add(time.Minute))
	c.Count("acme", "u1", keys.UsageLimited, at)
	c.Count("acme", "u1", keys.UsageRevoked, at.Add(time.Hour))
	c.Count("", "", keys.UsageAllowed, at) // neither tenant nor user: not counted
	if err := c.Flush(context.Background()); err == nil {
		t.Fatal("Flush succeeded with a failing store")
	}
	c.Count("acme", "u1", keys.UsageAllowed, at)
	st.fail = false
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[time.Time]keys.UsageCount{}
	for _, u := range st.added {
		got[u.Hour] = u
	}
	if h := got[at.Truncate(time.Hour)]; h.Allowed != 3 || h.Limited != 1 || h.Refused != 0 {
		t.Errorf("10:00 = %+v, want 3 allowed and 1 limited", h)
	}
	if h := got[at.Add(time.Hour).Truncate(time.Hour)]; h.Refused != 1 || h.Revoked != 1 || h.Tenant != "acme" {
		t.Errorf("11:00 = %+v, want 1 refused (revoked) in acme", h)
	}
	if len(st.added) != 2 {
		t.Errorf("added %d counts, want 2", len(st.added))
	}
}

// TestUsageCounterTenantsAndReasons: counts are kept per tenant, user and
// reason; requests no user was named for count for their tenant; Refused
// sums the 401 and 403 reasons only.
func TestUsageCounterTenantsAndReasons(t *testing.T) {
	st := &failingUsageStore{}
	c := keys.NewUsageCounter(st, time.Minute)
	at := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	for o, n := range map[keys.UsageOutcome]int{
		keys.UsageAllowed: 5, keys.UsageLimited: 4, keys.UsageBadKey: 3, keys.UsageExpired: 2,
		keys.UsageRevoked: 1, keys.UsageCoverage: 6, keys.UsageForbidden: 7, keys.UsageInvalid: 8, keys.UsageUnavailable: 9,
	} {
		for range n {
			c.Count("acme", "u1", o, at)
		}
	}
	c.Count("beta", "u1", keys.UsageAllowed, at)
	c.Count("acme", "", keys.UsageThrottled, at)
	c.Count("acme", "", keys.UsageBadKey, at)
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := map[string]keys.UsageCount{}
	for _, u := range st.added {
		got[u.Tenant+"/"+u.UserID] = u
	}
	want := map[string]keys.UsageCount{
		"acme/u1": {UserID: "u1", Tenant: "acme", Hour: at.Truncate(time.Hour), Allowed: 5, Limited: 4, Refused: 19,
			BadKey: 3, Expired: 2, Revoked: 1, Coverage: 6, Forbidden: 7, Invalid: 8, Unavailable: 9},
		"beta/u1": {UserID: "u1", Tenant: "beta", Hour: at.Truncate(time.Hour), Allowed: 1},
		"acme/":   {Tenant: "acme", Hour: at.Truncate(time.Hour), Refused: 1, BadKey: 1, Throttled: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("flushed %+v, want %+v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %+v, want %+v", k, got[k], w)
		}
	}
	if r := want["acme/u1"]; r.Requests() != 5+4+19+8+9 {
		t.Errorf("Requests() = %d", r.Requests())
	}
}
