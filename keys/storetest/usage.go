package storetest

import (
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// testUsageCounts: counts of the same user and hour add up, are read back
// per user in [from, to) oldest first, and retention removes old hours only.
// Counts of unknown users are not stored for them.
func testUsageCounts(t *testing.T, s keys.Store) {
	tn := mustTenant(t, s, "acme")
	u1 := mustUser(t, s, tn.ID, "u1")
	u2 := mustUser(t, s, tn.ID, "u2")
	h0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	must(t, "add", s.AddUsageCounts(ctx, []keys.UsageCount{
		{UserID: u1.ID, Hour: h0, Allowed: 3, Limited: 1},
		{UserID: u1.ID, Hour: h0.Add(time.Hour), Allowed: 5, Refused: 2},
		{UserID: u2.ID, Hour: h0, Allowed: 7},
		{UserID: u1.ID, Hour: h0.Add(25 * time.Minute), Allowed: 1}, // same hour as the first
		{UserID: "nobody", Hour: h0, Allowed: 9},                    // no such user, no tenant: dropped
	}))
	must(t, "add again", s.AddUsageCounts(ctx, []keys.UsageCount{{UserID: u1.ID, Hour: h0, Refused: 4}}))

	got, err := s.UsageCounts(ctx, u1.ID, h0.Add(-time.Hour), h0.Add(2*time.Hour))
	must(t, "read", err)
	if len(got) != 2 {
		t.Fatalf("u1 has %d hours, want 2: %+v", len(got), got)
	}
	if c := got[0]; !c.Hour.Equal(h0) || c.UserID != u1.ID || c.Allowed != 4 || c.Limited != 1 || c.Refused != 4 {
		t.Errorf("first hour = %+v, want 4 allowed, 1 limited, 4 refused at %s", c, h0)
	}
	if c := got[1]; !c.Hour.Equal(h0.Add(time.Hour)) || c.Allowed != 5 || c.Refused != 2 {
		t.Errorf("second hour = %+v", c)
	}
	got, err = s.UsageCounts(ctx, u1.ID, h0.Add(time.Hour), h0.Add(2*time.Hour))
	must(t, "read window", err)
	if len(got) != 1 || got[0].Allowed != 5 {
		t.Errorf("window [h0+1h, h0+2h) = %+v, want the second hour only", got)
	}
	got, err = s.UsageCounts(ctx, "nobody", h0, h0.Add(time.Hour))
	must(t, "read unknown", err)
	if len(got) != 0 {
		t.Errorf("unknown user has counts: %+v", got)
	}

	n, err := s.PurgeUsageCounts(ctx, h0.Add(time.Hour))
	must(t, "purge", err)
	if n != 2 {
		t.Errorf("purge removed %d, want 2 (u1 and u2 at h0)", n)
	}
	got, err = s.UsageCounts(ctx, u1.ID, h0.Add(-time.Hour), h0.Add(2*time.Hour))
	must(t, "read after purge", err)
	if len(got) != 1 || !got[0].Hour.Equal(h0.Add(time.Hour)) {
		t.Errorf("after purge u1 = %+v, want the second hour only", got)
	}
	got, err = s.UsageCounts(ctx, u2.ID, h0.Add(-time.Hour), h0.Add(2*time.Hour))
	must(t, "read u2 after purge", err)
	if len(got) != 0 {
		t.Errorf("after purge u2 = %+v, want none", got)
	}

	// Purging a user removes its counts with everything else.
	u := mustUser(t, s, tn.ID, "ci-bot")
	must(t, "add for user", s.AddUsageCounts(ctx, []keys.UsageCount{{UserID: u.ID, Hour: h0.Add(5 * time.Hour), Allowed: 1}}))
	_, err = s.DeleteUser(ctx, u.ID, 0, actor)
	must(t, "delete user", err)
	must(t, "purge user", s.PurgeUser(ctx, u.ID))
	got, err = s.UsageCounts(ctx, u.ID, h0, h0.Add(24*time.Hour))
	must(t, "read purged user", err)
	if len(got) != 0 {
		t.Errorf("purged user still has counts: %+v", got)
	}
	if n, err := s.PurgeUsageCounts(ctx, h0.Add(48*time.Hour)); err != nil || n != 1 {
		t.Errorf("retention after the user purge removed %d (%v), want 1 (u1's second hour only)", n, err)
	}
}
