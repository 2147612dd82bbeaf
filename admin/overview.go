package admin

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/keygate/keygate/keys"
)

// The gateway overview of a tenant: what its routes answered, who called
// them most and was refused most, and which keys expire soon. The numbers
// are the gateways' hourly usage counts (keys.UsageCounter), which they add
// to the store every few seconds; an hour is the finest step.

// Refusals counts the credential and permission refusals (401, 403) by
// reason.
type Refusals struct {
	// BadKey: no valid credential (missing, malformed, unknown, a wrong
	// secret or signature, a replayed or stale signature).
	BadKey int64 `json:"badKey"`
	// Expired: the access key or access token had expired.
	Expired int64 `json:"expired"`
	// Revoked: the key was revoked, disabled or past its replacement's
	// grace period, or its user, tenant or type no longer allows it.
	Revoked int64 `json:"revoked"`
	// Coverage: a valid signature that does not bind the request.
	Coverage int64 `json:"coverage"`
	// Forbidden: a valid credential without an ACTIVE permission in the
	// tenant or without the route's role or entity (403).
	Forbidden int64 `json:"forbidden"`
}

// UsageTotals is what a tenant's routes answered in some period.
type UsageTotals struct {
	// Requests is every request counted: the sum of the others.
	Requests int64 `json:"requests"`
	Allowed  int64 `json:"allowed"`
	// Limited: refused by the user's request limit (429).
	Limited int64 `json:"limited"`
	// Refused: refused credentials and permissions (401, 403), the sum of
	// Refusals.
	Refused  int64    `json:"refused"`
	Refusals Refusals `json:"refusals"`
	// Throttled: refused by the per-client-IP throttle (429) before the
	// credential was looked at.
	Throttled int64 `json:"throttled"`
	// Invalid: malformed requests (400, 413).
	Invalid int64 `json:"invalid"`
	// Unavailable: answered 503 because the store or limiter could not be
	// reached.
	Unavailable int64 `json:"unavailable"`
}

func totalsOf(c *keys.UsageCount) UsageTotals {
	return UsageTotals{
		Requests: c.Requests(), Allowed: c.Allowed, Limited: c.Limited, Refused: c.Refused,
		Refusals:  Refusals{BadKey: c.BadKey, Expired: c.Expired, Revoked: c.Revoked, Coverage: c.Coverage, Forbidden: c.Forbidden},
		Throttled: c.Throttled, Invalid: c.Invalid, Unavailable: c.Unavailable,
	}
}

// TenantUsageBucket is one step of a tenant's usage.
type TenantUsageBucket struct {
	Start time.Time `json:"start"`
	UsageTotals
}

// UsageWindow is a period of the overview, [From, To), with its totals.
type UsageWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	UsageTotals
}

// UserUsage is one user's requests on a tenant's routes in a period.
type UserUsage struct {
	UserID string          `json:"userId"`
	Name   string          `json:"name,omitempty"`
	Type   keys.UserType   `json:"type,omitempty"`
	Status keys.UserStatus `json:"status,omitempty"`
	UsageTotals
}

// TopUsers is the first entries of a top list and how many users it has.
type TopUsers struct {
	// By is what the list is sorted by: requests or refusals.
	By    string      `json:"by"`
	Items []UserUsage `json:"items"`
	// Total is how many users had requests in the period.
	Total int `json:"total"`
}

// ExpiringKey is a key that expires soon, with its user's name.
type ExpiringKey struct {
	KeyView
	UserName string `json:"userName,omitempty"`
}

// ExpiringKeys is the first keys of a tenant that expire before Before.
type ExpiringKeys struct {
	Before time.Time     `json:"before"`
	Items  []ExpiringKey `json:"items"`
	Total  int           `json:"total"`
}

// Overview is the data of GET /v1/tenants/{id}/overview.
type Overview struct {
	Tenant     string    `json:"tenant"`
	TenantName string    `json:"tenantName"`
	At         time.Time `json:"at"`
	// LastHour is the previous and the current hour (so at least the last
	// 60 minutes); LastDay the 24 hours before the current one and the
	// current one. Counts are kept per hour.
	LastHour UsageWindow `json:"lastHour"`
	LastDay  UsageWindow `json:"lastDay"`
	// Hourly is LastDay hour by hour, oldest first.
	Hourly []TenantUsageBucket `json:"hourly"`
	// TopByRequests and TopByRefusals rank the users over LastDay.
	TopByRequests TopUsers `json:"topByRequests"`
	TopByRefusals TopUsers `json:"topByRefusals"`
	// ExpiringKeys are the ACTIVE keys valid in the tenant that expire in
	// the next 14 days, soonest first.
	ExpiringKeys ExpiringKeys `json:"expiringKeys"`
}

// expiringWithin is how far ahead the overview looks for expiring keys.
const expiringWithin = 14 * 24 * time.Hour

// overviewTenant returns a tenant the caller administers, or 404.
func (h *Handler) overviewTenant(r *http.Request, c *caller) (keys.Tenant, error) {
	id := r.PathValue("id")
	if keys.ValidateID(id) != nil || !c.adminOf(id) {
		return keys.Tenant{}, errNotFound("tenant")
	}
	t, err := h.store.GetTenant(r.Context(), id)
	if errors.Is(err, keys.ErrNotFound) {
		return t, errNotFound("tenant")
	}
	setTenant(r, id)
	return t, err
}

// dayWindow is the overview's LastDay at now: [hour-24h, hour+1h).
func dayWindow(now time.Time) (from, to time.Time) {
	hour := now.UTC().Truncate(time.Hour)
	return hour.Add(-24 * time.Hour), hour.Add(time.Hour)
}

// queryInt reads an optional integer in [lo, hi].
func queryInt(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errField(name, "must be an integer from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi))
	}
	return n, nil
}

// overview answers the gateway overview of a tenant.
func (h *Handler) overview(w http.ResponseWriter, r *http.Request, c *caller) error {
	top, err := queryInt(r, "top", 5, 1, maxPageSize)
	if err != nil {
		return err
	}
	nkeys, err := queryInt(r, "keys", 10, 1, maxPageSize)
	if err != nil {
		return err
	}
	t, err := h.overviewTenant(r, c)
	if err != nil {
		return err
	}
	now := h.now().UTC()
	from, to := dayWindow(now)
	counts, err := h.store.TenantUsageCounts(r.Context(), t.ID, from, to)
	if err != nil {
		return err
	}
	out := Overview{Tenant: t.ID, TenantName: t.Name, At: now,
		LastHour: UsageWindow{From: to.Add(-2 * time.Hour), To: to},
		LastDay:  UsageWindow{From: from, To: to},
		Hourly:   make([]TenantUsageBucket, 25),
	}
	var day, hour keys.UsageCount
	for i := range out.Hourly {
		out.Hourly[i].Start = from.Add(time.Duration(i) * time.Hour)
	}
	byHour := make([]keys.UsageCount, 25)
	for i := range counts {
		cnt := &counts[i]
		n := int(cnt.Hour.Sub(from) / time.Hour)
		if n < 0 || n >= len(byHour) {
			continue
		}
		byHour[n].Add(*cnt)
		day.Add(*cnt)
		if !cnt.Hour.Before(out.LastHour.From) {
			hour.Add(*cnt)
		}
	}
	for i := range byHour {
		out.Hourly[i].UsageTotals = totalsOf(&byHour[i])
	}
	out.LastDay.UsageTotals, out.LastHour.UsageTotals = totalsOf(&day), totalsOf(&hour)
	users := usersOf(counts)
	if out.TopByRequests, err = h.topUsers(r, users, "requests", 1, top); err != nil {
		return err
	}
	if out.TopByRefusals, err = h.topUsers(r, users, "refusals", 1, top); err != nil {
		return err
	}
	if out.ExpiringKeys, err = h.expiringKeys(r, t.ID, now, now.Add(expiringWithin), 1, nkeys); err != nil {
		return err
	}
	writeOne(w, http.StatusOK, "Overview", 0, out)
	return nil
}

// usersOf sums counts per user, leaving out the requests of no user.
func usersOf(counts []keys.UsageCount) []keys.UsageCount {
	sum := map[string]*keys.UsageCount{}
	for i := range counts {
		c := &counts[i]
		if c.UserID == "" {
			continue
		}
		s, ok := sum[c.UserID]
		if !ok {
			s = &keys.UsageCount{UserID: c.UserID}
			sum[c.UserID] = s
		}
		s.Add(*c)
	}
	out := make([]keys.UsageCount, 0, len(sum))
	for _, s := range sum {
		out = append(out, *s)
	}
	return out
}

// topUsers ranks users by requests or refusals (most first; then by id)
// and answers one page of them, with their names.
func (h *Handler) topUsers(r *http.Request, users []keys.UsageCount, by string, page, size int) (TopUsers, error) {
	metric := func(c *keys.UsageCount) int64 { return c.Requests() }
	if by == "refusals" {
		metric = func(c *keys.UsageCount) int64 { return c.Refused }
	}
	ranked := slices.Clone(users)
	if by == "refusals" {
		ranked = slices.DeleteFunc(ranked, func(c keys.UsageCount) bool { return c.Refused == 0 })
	}
	slices.SortFunc(ranked, func(a, b keys.UsageCount) int {
		if d := cmp.Compare(metric(&b), metric(&a)); d != 0 {
			return d
		}
		return cmp.Compare(a.UserID, b.UserID)
	})
	out := TopUsers{By: by, Items: []UserUsage{}, Total: len(ranked)}
	start := min((page-1)*size, len(ranked))
	for _, c := range ranked[start:min(start+size, len(ranked))] {
		item := UserUsage{UserID: c.UserID, UsageTotals: totalsOf(&c)}
		u, err := h.store.GetUser(r.Context(), c.UserID)
		switch {
		case err == nil:
			item.Name, item.Type, item.Status = u.Name, u.Type, u.Status
		case !errors.Is(err, keys.ErrNotFound):
			return out, err
		}
		out.Items = append(out.Items, item)
	}
	return out, nil
}

// expiringKeys answers a page of a tenant's keys expiring in [from, before).
func (h *Handler) expiringKeys(r *http.Request, tenant string, from, before time.Time, page, size int) (ExpiringKeys, error) {
	p, err := h.store.ExpiringKeys(r.Context(), tenant, from, before, page, size)
	if err != nil {
		return ExpiringKeys{}, err
	}
	out := ExpiringKeys{Before: before, Items: make([]ExpiringKey, 0, len(p.Items)), Total: p.Total}
	names := map[string]string{}
	for i := range p.Items {
		k := &p.Items[i]
		name, ok := names[k.UserID]
		if !ok {
			u, err := h.store.GetUser(r.Context(), k.UserID)
			if err != nil && !errors.Is(err, keys.ErrNotFound) {
				return out, err
			}
			name = u.Name
			names[k.UserID] = name
		}
		out.Items = append(out.Items, ExpiringKey{KeyView: keyView(k, from), UserName: name})
	}
	return out, nil
}

// TenantUsage is the data of GET /v1/tenants/{id}/usage.
type TenantUsage struct {
	Tenant string    `json:"tenant"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Step   string    `json:"step"`
	// Buckets covers [from, to) without gaps, oldest first.
	Buckets []TenantUsageBucket `json:"buckets"`
	Totals  UsageTotals         `json:"totals"`
	// Retention is how long hourly counts are kept.
	Retention string `json:"retention"`
}

// usageRange reads from, to (RFC 3339, rounded down to the hour) and step
// (whole hours) of a usage query.
func usageRange(r *http.Request, from, to time.Time, step time.Duration) (time.Time, time.Time, time.Duration, error) {
	q := r.URL.Query()
	if s := q.Get("step"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Hour || d%time.Hour != 0 {
			return from, to, step, errField("step", "must be a whole number of hours, such as 1h or 24h")
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
				return from, to, step, errField(p.name, "must be an RFC 3339 timestamp")
			}
			*p.dst = t.UTC().Truncate(time.Hour)
		}
	}
	if !to.After(from) {
		return from, to, step, errField("to", "must be after from")
	}
	if to.Sub(from)/step > maxUsageBuckets {
		return from, to, step, errField("step", "too many points: make the range shorter or the step longer")
	}
	return from, to, step, nil
}

// tenantUsage answers a tenant's requests per step (default: per hour over
// the last 24 hours and the current one), by outcome and refusal reason.
func (h *Handler) tenantUsage(w http.ResponseWriter, r *http.Request, c *caller) error {
	dfrom, dto := dayWindow(h.now())
	from, to, step, err := usageRange(r, dfrom, dto, time.Hour)
	if err != nil {
		return err
	}
	t, err := h.overviewTenant(r, c)
	if err != nil {
		return err
	}
	counts, err := h.store.TenantUsageCounts(r.Context(), t.ID, from, to)
	if err != nil {
		return err
	}
	n := int((to.Sub(from) + step - 1) / step)
	sums := make([]keys.UsageCount, n)
	var total keys.UsageCount
	for i := range counts {
		k := int(counts[i].Hour.Sub(from) / step)
		if k < 0 || k >= n {
			continue
		}
		sums[k].Add(counts[i])
		total.Add(counts[i])
	}
	out := TenantUsage{Tenant: t.ID, From: from, To: to, Step: step.String(),
		Buckets: make([]TenantUsageBucket, n), Totals: totalsOf(&total), Retention: keys.UsageRetention.String()}
	for i := range sums {
		out.Buckets[i] = TenantUsageBucket{Start: from.Add(time.Duration(i) * step), UsageTotals: totalsOf(&sums[i])}
	}
	writeOne(w, http.StatusOK, "TenantUsage", 0, out)
	return nil
}

// tenantUsageUsers pages through the users of a tenant's routes ranked by
// requests or refusals (by=) over [from, to) (default: the overview's
// LastDay).
func (h *Handler) tenantUsageUsers(w http.ResponseWriter, r *http.Request, c *caller) error {
	q := r.URL.Query()
	lo, err := parseList(q)
	if err != nil {
		return err
	}
	by, err := queryEnum(q, "by", "requests", "refusals")
	if err != nil {
		return err
	}
	if by == "" {
		by = "requests"
	}
	dfrom, dto := dayWindow(h.now())
	from, to, _, err := usageRange(r, dfrom, dto, time.Hour)
	if err != nil {
		return err
	}
	t, err := h.overviewTenant(r, c)
	if err != nil {
		return err
	}
	counts, err := h.store.TenantUsageCounts(r.Context(), t.ID, from, to)
	if err != nil {
		return err
	}
	top, err := h.topUsers(r, usersOf(counts), by, lo.Page, lo.Size)
	if err != nil {
		return err
	}
	writeList(w, "UserUsage", top.Items, top.Total, lo)
	return nil
}

// tenantExpiringKeys pages through a tenant's ACTIVE keys that expire
// before ?before= (default: in the next 14 days), soonest first.
func (h *Handler) tenantExpiringKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	lo, err := parseList(r.URL.Query())
	if err != nil {
		return err
	}
	now := h.now().UTC()
	before := now.Add(expiringWithin)
	if s := r.URL.Query().Get("before"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return errField("before", "must be an RFC 3339 timestamp")
		}
		before = t.UTC()
	}
	t, err := h.overviewTenant(r, c)
	if err != nil {
		return err
	}
	ek, err := h.expiringKeys(r, t.ID, now, before, lo.Page, lo.Size)
	if err != nil {
		return err
	}
	writeList(w, "ExpiringKey", ek.Items, ek.Total, lo)
	return nil
}
