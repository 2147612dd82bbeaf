package admin

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

func TestUsage(t *testing.T) {
	e := newEnv(t, newFileStore)
	u := e.createUser(e.adminA, map[string]any{"name": "svc"})
	now := e.clk.Now().UTC()
	hour := now.Truncate(time.Hour)
	if err := e.store.AddUsageCounts(context.Background(), []keys.UsageCount{
		{UserID: u.ID, Hour: hour, Allowed: 5, Limited: 2, Refused: 1},
		{UserID: u.ID, Hour: hour.Add(-3 * time.Hour), Allowed: 4},
		{UserID: u.ID, Hour: hour.Add(-10 * 24 * time.Hour), Allowed: 100}, // outside the default range
	}); err != nil {
		t.Fatal(err)
	}
	var got Usage
	e.do("GET", "/v1/users/"+u.ID+"/usage", e.adminA, nil).want(200).data(&got)
	if len(got.Buckets) != 7*24 || got.Step != "1h0m0s" || !got.To.Equal(hour.Add(time.Hour)) {
		t.Fatalf("usage: %d buckets, step %s, to %s", len(got.Buckets), got.Step, got.To)
	}
	if last := got.Buckets[len(got.Buckets)-1]; last.Allowed != 5 || last.Limited != 2 || last.Refused != 1 || !last.Start.Equal(hour) {
		t.Errorf("last bucket = %+v", last)
	}
	if got.Totals.Allowed != 9 || got.CurrentHour.Allowed != 5 || got.CurrentHour.Limited != 2 {
		t.Errorf("totals %+v, current hour %+v", got.Totals, got.CurrentHour)
	}
	e.do("GET", "/v1/users/"+u.ID+"/usage?step=24h", e.adminA, nil).want(200).data(&got)
	if len(got.Buckets) != 7 || got.Buckets[6].Allowed != 9 {
		t.Errorf("daily: %+v", got.Buckets)
	}
	e.do("GET", "/v1/users/"+u.ID+"/usage?step=30m", e.adminA, nil).wantProblem(400, "step")
	e.do("GET", "/v1/users/"+u.ID+"/usage?from=2030-01-02T00:00:00Z&to=2029-01-01T00:00:00Z", e.adminA, nil).wantProblem(400, "to")
	e.do("GET", "/v1/users/"+u.ID+"/usage", e.adminB, nil).want(404)
	e.do("GET", "/v1/users/"+u.ID+"/usage", e.memberA, nil).want(403)
}
