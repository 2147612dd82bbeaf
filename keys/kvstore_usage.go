package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Usage counts: table "usage", one record per user and hour (id
// user\x00<unix hour>), indexed per user (u:<user>:usage) and by hour over
// all users (usage:by:hour, for retention).

const (
	tblUsage       = "usage"
	ixUsageByHour  = "usage:by:hour"
	usageBatchSize = 500
)

func usageIndex(userID string) string { return "u:" + userID + ":usage" }

func usageID(userID string, hour time.Time) string {
	return userID + sep + strconv.FormatInt(hour.Unix(), 10)
}

// usageRecord is the stored form of a UsageCount.
type usageRecord struct {
	UserID  string    `json:"u"`
	Hour    time.Time `json:"h"`
	Allowed int64     `json:"a,omitempty"`
	Limited int64     `json:"l,omitempty"`
	Refused int64     `json:"r,omitempty"`
}

// AddUsageCounts adds counts to the stored ones of the same user and hour.
// It writes no history and publishes no invalidation.
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
	merged := make(map[string]usageRecord, len(counts))
	for _, c := range counts {
		if c.UserID == "" {
			continue
		}
		h := c.Hour.UTC().Truncate(time.Hour)
		id := usageID(c.UserID, h)
		r := merged[id]
		r.UserID, r.Hour = c.UserID, h
		r.Allowed += c.Allowed
		r.Limited += c.Limited
		r.Refused += c.Refused
		merged[id] = r
	}
	if len(merged) == 0 {
		return nil
	}
	ids := make([]string, 0, len(merged))
	for id := range merged {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return s.b.Update(ctx, func(tx Tx) error {
		raw, err := tx.GetMany(tblUsage, ids)
		if err != nil {
			return fmt.Errorf("loading usage counts: %w", err)
		}
		for i, id := range ids {
			r := merged[id]
			if raw[i] != nil {
				var old usageRecord
				if err := json.Unmarshal(raw[i], &old); err != nil {
					return fmt.Errorf("decoding usage count %q: %w", id, err)
				}
				r.Allowed += old.Allowed
				r.Limited += old.Limited
				r.Refused += old.Refused
			}
			if err := putJSON(tx, tblUsage, id, r); err != nil {
				return err
			}
			if raw[i] == nil {
				if err := tx.IndexAdd(usageIndex(r.UserID), timeKey(r.Hour), id); err != nil {
					return fmt.Errorf("indexing usage count: %w", err)
				}
				if err := tx.IndexAdd(ixUsageByHour, timeKey(r.Hour), id); err != nil {
					return fmt.Errorf("indexing usage count: %w", err)
				}
			}
		}
		return nil
	})
}

// UsageCounts returns the user's hourly counts with from <= Hour < to,
// oldest first; hours without requests are left out.
func (s *kvStore) UsageCounts(ctx context.Context, userID string, from, to time.Time) ([]UsageCount, error) {
	var out []UsageCount
	err := s.b.View(ctx, func(tx Tx) error {
		out = nil
		n, err := tx.IndexCount(usageIndex(userID))
		if err != nil {
			return fmt.Errorf("counting usage of user %s: %w", userID, err)
		}
		if n == 0 {
			return nil
		}
		ids, err := tx.IndexRange(usageIndex(userID), 0, n, false)
		if err != nil {
			return fmt.Errorf("reading usage of user %s: %w", userID, err)
		}
		raw, err := tx.GetMany(tblUsage, ids)
		if err != nil {
			return fmt.Errorf("loading usage of user %s: %w", userID, err)
		}
		for i, b := range raw {
			if b == nil {
				continue
			}
			var r usageRecord
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("decoding usage count %q: %w", ids[i], err)
			}
			if r.Hour.Before(from) || !r.Hour.Before(to) {
				continue
			}
			out = append(out, UsageCount{UserID: r.UserID, Hour: r.Hour.UTC(), Allowed: r.Allowed, Limited: r.Limited, Refused: r.Refused})
		}
		return nil
	})
	return out, err
}

// PurgeUsageCounts removes the counts of hours that started before before,
// of every user, oldest first; it returns how many it removed.
func (s *kvStore) PurgeUsageCounts(ctx context.Context, before time.Time) (int, error) {
	return purgeOldest(ctx, s, ixUsageByHour, tblUsage, "usage count", before,
		func(r *usageRecord) time.Time { return r.Hour },
		func(tx Tx, id string, r *usageRecord) error {
			hk := timeKey(r.Hour)
			if err := tx.IndexRemove(ixUsageByHour, hk, id); err != nil {
				return fmt.Errorf("updating index %s: %w", ixUsageByHour, err)
			}
			if err := tx.IndexRemove(usageIndex(r.UserID), hk, id); err != nil {
				return fmt.Errorf("updating usage index of user %s: %w", r.UserID, err)
			}
			if err := tx.Delete(tblUsage, id); err != nil {
				return fmt.Errorf("deleting usage count %q: %w", id, err)
			}
			return nil
		})
}

// purgeUserUsage removes every usage count of a user (PurgeUser).
func purgeUserUsage(tx Tx, userID string) error {
	ids, err := allIDs(tx, usageIndex(userID), false)
	if err != nil {
		return err
	}
	raw, err := tx.GetMany(tblUsage, ids)
	if err != nil {
		return fmt.Errorf("loading usage of user %s: %w", userID, err)
	}
	for i, b := range raw {
		if b == nil {
			continue
		}
		var r usageRecord
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("decoding usage count %q: %w", ids[i], err)
		}
		if err := tx.IndexRemove(ixUsageByHour, timeKey(r.Hour), ids[i]); err != nil {
			return fmt.Errorf("updating index %s: %w", ixUsageByHour, err)
		}
		if err := tx.Delete(tblUsage, ids[i]); err != nil {
			return fmt.Errorf("deleting usage count %q: %w", ids[i], err)
		}
	}
	if err := tx.IndexDrop(usageIndex(userID)); err != nil {
		return fmt.Errorf("dropping index %s: %w", usageIndex(userID), err)
	}
	return nil
}
