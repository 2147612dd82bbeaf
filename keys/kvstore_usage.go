package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Usage counts: table "usage", one record per tenant, user and hour (id
// user\x00<unix hour>\x00tenant; the user is empty for requests no user was
// named for), indexed per user (u:<user>:usage), per tenant
// (t:<tenant>:usage) and by hour over everything (usage:by:hour, for
// retention), each with the hour as sort key. Records written before
// tenants were counted have the id user\x00<unix hour> and no tenant.

const (
	tblUsage       = "usage"
	ixUsageByHour  = "usage:by:hour"
	usageBatchSize = 500
)

func usageIndex(userID string) string { return "u:" + userID + ":usage" }

func tenantUsageIndex(tenant string) string { return "t:" + tenant + ":usage" }

func usageID(tenant, userID string, hour time.Time) string {
	id := userID + sep + strconv.FormatInt(hour.Unix(), 10)
	if tenant != "" {
		id += sep + tenant
	}
	return id
}

// usageIDHour returns the hour encoded in a usage record's id.
func usageIDHour(id string) (time.Time, bool) {
	_, rest, ok := strings.Cut(id, sep)
	if !ok {
		return time.Time{}, false
	}
	unix, _, _ := strings.Cut(rest, sep)
	n, err := strconv.ParseInt(unix, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0).UTC(), true
}

// usageRecord is the stored form of a UsageCount.
type usageRecord struct {
	UserID      string    `json:"u,omitempty"`
	Tenant      string    `json:"t,omitempty"`
	Hour        time.Time `json:"h"`
	Allowed     int64     `json:"a,omitempty"`
	Limited     int64     `json:"l,omitempty"`
	Refused     int64     `json:"r,omitempty"`
	BadKey      int64     `json:"rb,omitempty"`
	Expired     int64     `json:"re,omitempty"`
	Revoked     int64     `json:"rr,omitempty"`
	Coverage    int64     `json:"rc,omitempty"`
	Forbidden   int64     `json:"rf,omitempty"`
	Throttled   int64     `json:"th,omitempty"`
	Invalid     int64     `json:"iv,omitempty"`
	Unavailable int64     `json:"un,omitempty"`
}

func (r *usageRecord) count() UsageCount {
	return UsageCount{
		UserID: r.UserID, Tenant: r.Tenant, Hour: r.Hour.UTC(),
		Allowed: r.Allowed, Limited: r.Limited, Refused: r.Refused,
		BadKey: r.BadKey, Expired: r.Expired, Revoked: r.Revoked, Coverage: r.Coverage, Forbidden: r.Forbidden,
		Throttled: r.Throttled, Invalid: r.Invalid, Unavailable: r.Unavailable,
	}
}

func recordOf(c *UsageCount) usageRecord {
	return usageRecord{
		UserID: c.UserID, Tenant: c.Tenant, Hour: c.Hour,
		Allowed: c.Allowed, Limited: c.Limited, Refused: c.Refused,
		BadKey: c.BadKey, Expired: c.Expired, Revoked: c.Revoked, Coverage: c.Coverage, Forbidden: c.Forbidden,
		Throttled: c.Throttled, Invalid: c.Invalid, Unavailable: c.Unavailable,
	}
}

// AddUsageCounts adds counts to the stored ones of the same tenant, user and
// hour. Counts of a user that is unknown, DELETING or DELETED go to its
// tenant's anonymous counts (no user), so that a deleted user's usage is
// not stored again. It writes no history and publishes no invalidation.
func (s *kvStore) AddUsageCounts(ctx context.Context, counts []UsageCount) error {
	for len(counts) > 0 {
		n := min(len(counts), usageBatchSize)
		if err := s.addUsageCounts(ctx, counts[:n]); err != nil {
			return err
		}
		counts = counts[n:]
	}
	return nil
}

func (s *kvStore) addUsageCounts(ctx context.Context, counts []UsageCount) error {
	users := map[string]bool{}
	for _, c := range counts {
		if c.UserID != "" {
			users[c.UserID] = true
		}
	}
	userIDs := make([]string, 0, len(users))
	for id := range users {
		userIDs = append(userIDs, id)
	}
	slices.Sort(userIDs)
	return s.b.Update(ctx, func(tx Tx) error {
		live, err := liveUsers(tx, userIDs)
		if err != nil {
			return err
		}
		merged := make(map[string]UsageCount, len(counts))
		for _, c := range counts {
			if c.UserID != "" && !live[c.UserID] {
				if c.Tenant == "" {
					continue // no one left to count it for
				}
				c.UserID = ""
			}
			if c.UserID == "" && c.Tenant == "" {
				continue
			}
			c.Hour = c.Hour.UTC().Truncate(time.Hour)
			id := usageID(c.Tenant, c.UserID, c.Hour)
			m, ok := merged[id]
			if !ok {
				m = UsageCount{UserID: c.UserID, Tenant: c.Tenant, Hour: c.Hour}
			}
			m.Add(c)
			merged[id] = m
		}
		return addUsageRecords(tx, merged)
	})
}

// liveUsers tells which of ids are users that exist and are neither
// DELETING nor DELETED.
func liveUsers(tx Tx, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	list, err := getManyJSON[User](tx, tblUsers, ids)
	if err != nil {
		return nil, err
	}
	for _, u := range list {
		out[u.ID] = u.Status != UserDeleting && u.Status != UserDeleted
	}
	return out, nil
}

// addUsageRecords adds counts (by record id) to the stored records, creating
// and indexing the missing ones.
func addUsageRecords(tx Tx, counts map[string]UsageCount) error {
	if len(counts) == 0 {
		return nil
	}
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	raw, err := tx.GetMany(tblUsage, ids)
	if err != nil {
		return fmt.Errorf("loading usage counts: %w", err)
	}
	for i, id := range ids {
		c := counts[id]
		if raw[i] != nil {
			var old usageRecord
			if err := json.Unmarshal(raw[i], &old); err != nil {
				return fmt.Errorf("decoding usage count %q: %w", id, err)
			}
			c.Add(old.count())
		}
		if err := putJSON(tx, tblUsage, id, recordOf(&c)); err != nil {
			return err
		}
		if raw[i] == nil {
			if err := indexUsage(tx, id, &c); err != nil {
				return err
			}
		}
	}
	return nil
}

// usageIndexes lists the index entries of a usage record.
func usageIndexes(c *UsageCount) []indexEntry {
	hk := timeKey(c.Hour)
	out := []indexEntry{{ixUsageByHour, hk}}
	if c.UserID != "" {
		out = append(out, indexEntry{usageIndex(c.UserID), hk})
	}
	if c.Tenant != "" {
		out = append(out, indexEntry{tenantUsageIndex(c.Tenant), hk})
	}
	return out
}

func indexUsage(tx Tx, id string, c *UsageCount) error {
	for _, e := range usageIndexes(c) {
		if err := tx.IndexAdd(e.index, e.sortKey, id); err != nil {
			return fmt.Errorf("indexing usage count: %w", err)
		}
	}
	return nil
}

// deleteUsage removes a usage record and its index entries.
func deleteUsage(tx Tx, id string, c *UsageCount) error {
	for _, e := range usageIndexes(c) {
		if err := tx.IndexRemove(e.index, e.sortKey, id); err != nil {
			return fmt.Errorf("updating index %s: %w", e.index, err)
		}
	}
	if err := tx.Delete(tblUsage, id); err != nil {
		return fmt.Errorf("deleting usage count %q: %w", id, err)
	}
	return nil
}

// UsageCounts returns the user's hourly counts with from <= Hour < to,
// oldest first, one per tenant and hour; hours without requests are left out.
func (s *kvStore) UsageCounts(ctx context.Context, userID string, from, to time.Time) ([]UsageCount, error) {
	var out []UsageCount
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = usageInRange(tx, usageIndex(userID), from, to)
		return err
	})
	return out, err
}

// TenantUsageCounts returns the counts of the tenant's routes with from <=
// Hour < to, oldest first, one per user and hour (UserID "" for requests no
// user was named for); hours without requests are left out.
func (s *kvStore) TenantUsageCounts(ctx context.Context, tenant string, from, to time.Time) ([]UsageCount, error) {
	var out []UsageCount
	err := s.b.View(ctx, func(tx Tx) (err error) {
		out, err = usageInRange(tx, tenantUsageIndex(tenant), from, to)
		return err
	})
	return out, err
}

// usageInRange reads the records of an index (sorted by hour) with from <=
// Hour < to. It walks the index from the newest entry and stops at the
// first one older than from, reading the hours from the ids, so that only
// the records in range are loaded.
func usageInRange(tx Tx, index string, from, to time.Time) ([]UsageCount, error) {
	var ids []string
	err := walkIndex(tx, index, true, func(chunk []string) (bool, error) {
		for _, id := range chunk {
			h, ok := usageIDHour(id)
			if !ok {
				continue
			}
			if h.Before(from) {
				return false, nil
			}
			if h.Before(to) {
				ids = append(ids, id)
			}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(ids)
	raw, err := tx.GetMany(tblUsage, ids)
	if err != nil {
		return nil, fmt.Errorf("loading usage counts: %w", err)
	}
	out := make([]UsageCount, 0, len(ids))
	for i, b := range raw {
		if b == nil {
			continue
		}
		var r usageRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("decoding usage count %q: %w", ids[i], err)
		}
		out = append(out, r.count())
	}
	return out, nil
}

// PurgeUsageCounts removes the counts of hours that started before before,
// oldest first; it returns how many it removed.
func (s *kvStore) PurgeUsageCounts(ctx context.Context, before time.Time) (int, error) {
	return purgeOldest(ctx, s, ixUsageByHour, tblUsage, "usage count", before,
		func(r *usageRecord) time.Time { return r.Hour },
		func(tx Tx, id string, r *usageRecord) error {
			c := r.count()
			return deleteUsage(tx, id, &c)
		})
}

// anonymizeUserUsage takes every usage count off a user (deletion, purge):
// the counts of its tenants' routes are added to the tenants' anonymous
// counts of the same hours, so tenant totals do not change; the rest go.
func anonymizeUserUsage(tx Tx, userID string) error {
	ids, err := allIDs(tx, usageIndex(userID), false)
	if err != nil {
		return err
	}
	raw, err := tx.GetMany(tblUsage, ids)
	if err != nil {
		return fmt.Errorf("loading usage of user %s: %w", userID, err)
	}
	anon := map[string]UsageCount{}
	for i, b := range raw {
		if b == nil {
			continue
		}
		var r usageRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("decoding usage count %q: %w", ids[i], err)
		}
		c := r.count()
		if err := deleteUsage(tx, ids[i], &c); err != nil {
			return err
		}
		if c.Tenant == "" {
			continue
		}
		id := usageID(c.Tenant, "", c.Hour)
		m, ok := anon[id]
		if !ok {
			m = UsageCount{Tenant: c.Tenant, Hour: c.Hour}
		}
		m.Add(c)
		anon[id] = m
	}
	if err := addUsageRecords(tx, anon); err != nil {
		return err
	}
	if err := tx.IndexDrop(usageIndex(userID)); err != nil {
		return fmt.Errorf("dropping index %s: %w", usageIndex(userID), err)
	}
	return nil
}
