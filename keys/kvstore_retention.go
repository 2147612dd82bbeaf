package keys

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Retention: history entries and activity log entries older than a cutoff
// are removed by PurgeHistory and PurgeActivity, oldest first.

// retentionBatch bounds the entries one retention transaction removes.
const retentionBatch = 500

// historyPurgedKey names, in the meta table, how many of a user's oldest
// history entries retention has removed. A user's remaining entries are
// then numbered purged, purged+1, … in its history index.
func historyPurgedKey(userID string) string { return "history-purged:" + userID }

// historyPurged returns how many history entries of the user retention removed.
func historyPurged(tx Tx, userID string) (int, error) {
	b, err := tx.Get(tblMeta, historyPurgedKey(userID))
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("loading history of user %s: %w", userID, err)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		return 0, fmt.Errorf("decoding history count of user %s: %w", userID, err)
	}
	return n, nil
}

// purgeOldest removes, oldest first and in batches of retentionBatch per
// transaction, the records of table listed in the time-ordered index whose
// time (at) is before before; remove deletes one record and its index
// entries. It stops at the first record kept and returns how many it removed.
func purgeOldest[T any](ctx context.Context, s *kvStore, index, table, what string, before time.Time,
	at func(*T) time.Time, remove func(tx Tx, id string, rec *T) error,
) (int, error) {
	total := 0
	for {
		n, more := 0, false
		err := s.b.Update(ctx, func(tx Tx) error {
			n, more = 0, false
			ids, err := tx.IndexRange(index, 0, retentionBatch, false)
			if err != nil {
				return fmt.Errorf("reading index %s: %w", index, err)
			}
			raw, err := tx.GetMany(table, ids)
			if err != nil {
				return fmt.Errorf("loading %s: %w", what, err)
			}
			for i, b := range raw {
				if b == nil {
					continue // an index entry without its record: left alone
				}
				var rec T
				if err := json.Unmarshal(b, &rec); err != nil {
					return fmt.Errorf("decoding %s %q: %w", what, ids[i], err)
				}
				if !at(&rec).Before(before) {
					return nil
				}
				if err := remove(tx, ids[i], &rec); err != nil {
					return err
				}
				n++
			}
			more = n > 0 && len(ids) == retentionBatch
			return nil
		})
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// PurgeActivity removes the activity log entries from before before.
func (s *kvStore) PurgeActivity(ctx context.Context, before time.Time) (int, error) {
	const index = "activity:by:at"
	return purgeOldest(ctx, s, index, tblActivity, "activity", before,
		func(a *Activity) time.Time { return a.At },
		func(tx Tx, id string, a *Activity) error {
			if err := tx.IndexRemove(index, timeKey(a.At), id); err != nil {
				return fmt.Errorf("updating index %s: %w", index, err)
			}
			if err := tx.Delete(tblActivity, id); err != nil {
				return fmt.Errorf("deleting activity %s: %w", id, err)
			}
			return nil
		})
}

// PurgeHistory removes, for every user, the history entries from before
// before. Entries go oldest first and stop at the first one kept, so the
// rest stay in order even when clocks disagreed.
func (s *kvStore) PurgeHistory(ctx context.Context, before time.Time) (int, error) {
	var users []string
	if err := s.b.View(ctx, func(tx Tx) (err error) {
		users, err = allIDs(tx, userScope("")+"id", false)
		return err
	}); err != nil {
		return 0, err
	}
	total := 0
	for _, u := range users {
		for {
			n, more := 0, false
			err := s.b.Update(ctx, func(tx Tx) (err error) {
				n, more, err = purgeUserHistory(tx, u, before)
				return err
			})
			total += n
			if err != nil {
				return total, err
			}
			if !more {
				break
			}
		}
	}
	return total, nil
}

// purgeUserHistory removes up to retentionBatch of a user's oldest history
// entries from before before; more tells that a full batch went.
func purgeUserHistory(tx Tx, userID string, before time.Time) (n int, more bool, err error) {
	index := "u:" + userID + ":history"
	purged, err := historyPurged(tx, userID)
	if err != nil {
		return 0, false, err
	}
	ids, err := tx.IndexRange(index, 0, retentionBatch, false)
	if err != nil || len(ids) == 0 {
		return 0, false, err
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = userID + sep + id
	}
	raw, err := tx.GetMany(tblHistory, keys)
	if err != nil {
		return 0, false, fmt.Errorf("loading history of user %s: %w", userID, err)
	}
	for i, b := range raw {
		if b != nil {
			var e HistoryEntry
			if err := json.Unmarshal(b, &e); err != nil {
				return n, false, fmt.Errorf("decoding history of user %s: %w", userID, err)
			}
			if !e.At.Before(before) {
				break
			}
		}
		if err := tx.IndexRemove(index, fmt.Sprintf("%012d", purged+n), ids[i]); err != nil {
			return n, false, fmt.Errorf("updating history index of user %s: %w", userID, err)
		}
		if err := tx.Delete(tblHistory, keys[i]); err != nil {
			return n, false, fmt.Errorf("deleting history of user %s: %w", userID, err)
		}
		n++
	}
	if n > 0 {
		if err := tx.Put(tblMeta, historyPurgedKey(userID), []byte(strconv.Itoa(purged+n))); err != nil {
			return n, false, fmt.Errorf("storing history count of user %s: %w", userID, err)
		}
	}
	return n, n == retentionBatch, nil
}
