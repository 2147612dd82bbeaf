package admin

import (
	"net/http"
	"time"

	"github.com/keygate/keygate/keys"
)

// maxUsageBuckets bounds the points of one usage answer.
const maxUsageBuckets = 24 * 32

// UsageBucket is one step of a user's usage: the gateway's requests of the
// user that started in [start, start+step), by outcome.
type UsageBucket struct {
	Start   time.Time `json:"start"`
	Allowed int64     `json:"allowed"`
	Limited int64     `json:"limited"`
	Refused int64     `json:"refused"`
}

// Usage is the answer of GET /v1/users/{id}/usage.
type Usage struct {
	UserID string    `json:"userId"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Step   string    `json:"step"`
	// RequestLimit is the user's own limit per window of the gateway
	// route; 0: the route's default applies.
	RequestLimit int64 `json:"requestLimit"`
	// Buckets covers [from, to) without gaps, oldest first.
	Buckets []UsageBucket `json:"buckets"`
	// Totals sums the buckets.
	Totals UsageBucket `json:"totals"`
	// CurrentHour is the hour now is in (counted so far: gateways add
	// their counts to the store every few seconds).
	CurrentHour UsageBucket `json:"currentHour"`
	// Retention is how long hourly counts are kept.
	Retention string `json:"retention"`
}

// usage answers a user's hourly request counts. Query: from and to (RFC
// 3339, rounded down to the hour; default: the last 7 days up to the end of
// the current hour) and step (a whole number of hours, default 1h).
func (h *Handler) usage(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	now := h.now().UTC()
	to := now.Truncate(time.Hour).Add(time.Hour)
	from := to.Add(-7 * 24 * time.Hour)
	step := time.Hour
	if s := q.Get("step"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Hour || d%time.Hour != 0 {
			return errField("step", "must be a whole number of hours, such as 1h or 24h")
		}
		step = d
	}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if s := q.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return errField(p.name, "must be an RFC 3339 timestamp")
			}
			*p.dst = t.UTC().Truncate(time.Hour)
		}
	}
	if !to.After(from) {
		return errField("to", "must be after from")
	}
	if to.Sub(from)/step > maxUsageBuckets {
		return errField("step", "too many points: make the range shorter or the step longer")
	}
	u, err := h.manageableUser(r, c, r.PathValue("id"))
	if err != nil {
		return err
	}
	counts, err := h.store.UsageCounts(r.Context(), u.ID, from, to)
	if err != nil {
		return err
	}
	n := int((to.Sub(from) + step - 1) / step)
	out := Usage{
		UserID: u.ID, From: from, To: to, Step: step.String(), RequestLimit: u.RequestLimit,
		Buckets:     make([]UsageBucket, n),
		CurrentHour: UsageBucket{Start: now.Truncate(time.Hour)},
		Retention:   keys.UsageRetention.String(),
	}
	for i := range out.Buckets {
		out.Buckets[i].Start = from.Add(time.Duration(i) * step)
	}
	for _, c := range counts {
		i := int(c.Hour.Sub(from) / step)
		if i < 0 || i >= n {
			continue
		}
		b := &out.Buckets[i]
		b.Allowed += c.Allowed
		b.Limited += c.Limited
		b.Refused += c.Refused
		out.Totals.Allowed += c.Allowed
		out.Totals.Limited += c.Limited
		out.Totals.Refused += c.Refused
		if c.Hour.Equal(out.CurrentHour.Start) {
			out.CurrentHour.Allowed += c.Allowed
			out.CurrentHour.Limited += c.Limited
			out.CurrentHour.Refused += c.Refused
		}
	}
	out.Totals.Start = from
	writeOne(w, http.StatusOK, "Usage", 0, out)
	return nil
}
