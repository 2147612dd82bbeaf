package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/keys"
)

// purgeBatch is how many due users Purge asks the store for at a time.
const purgeBatch = 100

// Purge removes, for good, every DELETED user whose plannedPurgeDate is
// before now, with everything stored about it, and returns how many it
// removed. Users without a plannedPurgeDate are kept (seed 004: an empty
// date means the object is not removed). module/ runs it periodically. A
// user that cannot be purged is skipped and reported in the error; the
// others are still purged.
func Purge(ctx context.Context, s keys.Store, now time.Time) (int, error) {
	var (
		n      int
		errs   []error
		failed = map[string]bool{}
	)
	for {
		if err := ctx.Err(); err != nil {
			return n, errors.Join(append(errs, err)...)
		}
		ids, err := s.DueForPurge(ctx, now, purgeBatch+len(failed))
		if err != nil {
			return n, errors.Join(append(errs, fmt.Errorf("listing users due for purge: %w", err))...)
		}
		progressed := false
		for _, id := range ids {
			if failed[id] {
				continue
			}
			switch err := s.PurgeUser(ctx, id); {
			case err == nil:
				n++
				progressed = true
			case errors.Is(err, keys.ErrNotFound):
				progressed = true
			default:
				failed[id] = true
				errs = append(errs, fmt.Errorf("purging user %s: %w", id, err))
			}
		}
		if !progressed || len(ids) < purgeBatch+len(failed) {
			return n, errors.Join(errs...)
		}
	}
}

// CompleteDeletions finishes every deletion left between its two steps (a
// user DELETING: a crash, or a store failure, after the first) and returns
// how many it finished. module/ runs it when keygate starts and with every
// purge sweep. A user whose deletion cannot finish is skipped and reported
// in the error; the others still are finished.
func CompleteDeletions(ctx context.Context, s keys.Store) (int, error) {
	var (
		n      int
		errs   []error
		failed = map[string]bool{}
	)
	for {
		if err := ctx.Err(); err != nil {
			return n, errors.Join(append(errs, err)...)
		}
		ids, err := s.DeletingUsers(ctx, purgeBatch+len(failed))
		if err != nil {
			return n, errors.Join(append(errs, fmt.Errorf("listing users being deleted: %w", err))...)
		}
		progressed := false
		for _, id := range ids {
			if failed[id] {
				continue
			}
			switch _, err := s.CompleteDeletion(ctx, id, "system"); {
			case err == nil:
				n++
				progressed = true
			case errors.Is(err, keys.ErrNotFound), errors.Is(err, keys.ErrConflict):
				progressed = true // finished (or purged) meanwhile
			default:
				failed[id] = true
				errs = append(errs, fmt.Errorf("completing the deletion of user %s: %w", id, err))
			}
		}
		if !progressed || len(ids) < purgeBatch+len(failed) {
			return n, errors.Join(errs...)
		}
	}
}

// PurgeSessions removes the console sessions that expired before now.
func PurgeSessions(ctx context.Context, s keys.Store, now time.Time) (int, error) {
	n, err := s.PurgeSessions(ctx, now)
	if err != nil {
		return n, fmt.Errorf("purging expired console sessions: %w", err)
	}
	return n, nil
}

// DefaultActivityRetention is how long the activity log is kept unless
// configured: seed 003's log retention time, 90 days.
const DefaultActivityRetention = 90 * 24 * time.Hour

// Retention says how long history and activity log entries are kept; zero
// (or less) keeps them for as long as the user, or forever.
type Retention struct {
	History  time.Duration
	Activity time.Duration
}

// PurgeExpired removes the history and activity log entries older than r
// allows at now and returns how many of each it removed. module/ runs it
// with Purge; export and the history route show what is kept.
func PurgeExpired(ctx context.Context, s keys.Store, now time.Time, r Retention) (history, activity int, err error) {
	var errs []error
	if r.History > 0 {
		history, err = s.PurgeHistory(ctx, now.Add(-r.History))
		if err != nil {
			errs = append(errs, fmt.Errorf("purging history: %w", err))
		}
	}
	if r.Activity > 0 {
		activity, err = s.PurgeActivity(ctx, now.Add(-r.Activity))
		if err != nil {
			errs = append(errs, fmt.Errorf("purging the activity log: %w", err))
		}
	}
	return history, activity, errors.Join(errs...)
}
