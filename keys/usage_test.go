package keys

import (
	"context"
	"testing"
	"time"
)

// touchStore records what TouchLastUsed receives.
type touchStore struct {
	Store // nil: only TouchLastUsed is called
	got   []Usage
}

func (s *touchStore) TouchLastUsed(_ context.Context, used []Usage) error {
	s.got = append(s.got, used...)
	return nil
}

// TestUsageRecorderLogins: RecordLogin keeps the latest time per user and
// tenant and flushes it as a Usage naming the tenant only.
func TestUsageRecorderLogins(t *testing.T) {
	st := &touchStore{}
	u := NewUsageRecorder(st, time.Hour)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	u.RecordLogin("1", "acme", at)
	u.RecordLogin("1", "acme", at.Add(-time.Minute))
	u.RecordLogin("1", "beta", at.Add(time.Second))
	u.Record("1", "k1", "", at)
	if err := u.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	logins := map[string]time.Time{}
	for _, x := range st.got {
		if x.Tenant != "" {
			if x.KeyID != "" || x.SecretID != "" || x.UserID != "1" {
				t.Fatalf("login usage %+v", x)
			}
			logins[x.Tenant] = x.At
		}
	}
	if len(st.got) != 3 || !logins["acme"].Equal(at) || !logins["beta"].Equal(at.Add(time.Second)) {
		t.Fatalf("flushed %+v", st.got)
	}
	st.got = nil
	if err := u.Flush(context.Background()); err != nil || len(st.got) != 0 {
		t.Fatalf("second flush: %v %+v", err, st.got)
	}
}
