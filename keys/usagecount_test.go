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
	c.Count("u1", keys.UsageAllowed, at)
	c.Count("u1", keys.UsageAllowed, at.Add(time.Minute))
	c.Count("u1", keys.UsageLimited, at)
	c.Count("u1", keys.UsageRefused, at.Add(time.Hour))
	c.Count("", keys.UsageAllowed, at) // no user: not counted
	if err := c.Flush(context.Background()); err == nil {
		t.Fatal("Flush succeeded with a failing store")
	}
	c.Count("u1", keys.UsageAllowed, at)
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
	if h := got[at.Add(time.Hour).Truncate(time.Hour)]; h.Refused != 1 {
		t.Errorf("11:00 = %+v, want 1 refused", h)
	}
	if len(st.added) != 2 {
		t.Errorf("added %d counts, want 2", len(st.added))
	}
}
