package keys

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Failed authentications counted across nodes: each node's counts of a
// subject's failures in a window are added, off the request path and a few
// times a second, to one record per subject and window, so a burst split
// between nodes is seen whole.
//
//	table  authfail (subject and window → failureRecord)
//	index  authfail:by:end (the window's end)
const (
	tblAuthFail = "authfail"
	idxAuthFail = "authfail:by:end"
)

// MaxFailureClients bounds the client addresses counted per subject and
// window; more are reported as that many.
const MaxFailureClients = 256

// FailureCount is failed authentications of one subject (a key, or a
// signing user) in one window: one node's since its last report, for
// AddFailureCounts, or the sum over nodes, as it answers.
type FailureCount struct {
	// Subject is what failed: "users/<id>" or "users/<id>/keys/<id>".
	Subject string
	// Start and Window are the window (windows are aligned to multiples
	// of Window since the Unix epoch, so every node names the same one).
	Start  time.Time
	Window time.Duration
	// Failures is how many failed.
	Failures int64
	// Clients are distinct client addresses, each as an opaque short hash
	// (the store holds no address), at most MaxFailureClients.
	Clients []string
	// First and Last are the first and last failure.
	First, Last time.Time
}

// failureRecord is a FailureCount as stored.
type failureRecord struct {
	Failures int64     `json:"n"`
	Clients  []string  `json:"c,omitempty"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
}

// failureID names the record of a subject's window.
func failureID(c *FailureCount) string {
	return c.Subject + "@" + strconv.FormatInt(c.Start.UnixNano(), 10) + "+" + strconv.FormatInt(int64(c.Window), 10)
}

// failurePurgeBatch bounds how many ended windows one AddFailureCounts
// removes; PurgeDeliveries removes the rest.
const failurePurgeBatch = 20

func validFailureCount(c *FailureCount) error {
	switch {
	case c.Subject == "" || len(c.Subject) > 300 || strings.ContainsAny(c.Subject, "@\x00"):
		return fieldError("subject", "must name a user or key")
	case c.Window <= 0 || c.Start.IsZero():
		return fieldError("window", "must be positive, with a start")
	case c.Failures < 0:
		return fieldError("failures", "must not be negative")
	}
	return nil
}

// AddFailureCounts adds counts to the stored ones of the same subject and
// window and returns the sums.
func (s *kvStore) AddFailureCounts(ctx context.Context, counts []FailureCount) ([]FailureCount, error) {
	for i := range counts {
		if err := validFailureCount(&counts[i]); err != nil {
			return nil, err
		}
	}
	out := make([]FailureCount, len(counts))
	err := s.b.Update(ctx, func(tx Tx) error {
		if _, err := purgeFailures(tx, s.clock(), failurePurgeBatch); err != nil {
			return err
		}
		for i := range counts {
			c := &counts[i]
			id := failureID(c)
			rec, err := getJSON[failureRecord](tx, tblAuthFail, id, "failure count "+id)
			fresh := isNotFound(err)
			if err != nil && !fresh {
				return err
			}
			if fresh {
				rec = failureRecord{First: c.First, Last: c.Last}
			}
			rec.Failures += c.Failures
			for _, cl := range c.Clients {
				if len(rec.Clients) < MaxFailureClients && !slices.Contains(rec.Clients, cl) {
					rec.Clients = append(rec.Clients, cl)
				}
			}
			if !c.First.IsZero() && (rec.First.IsZero() || c.First.Before(rec.First)) {
				rec.First = c.First
			}
			if c.Last.After(rec.Last) {
				rec.Last = c.Last
			}
			if err := putJSON(tx, tblAuthFail, id, rec); err != nil {
				return err
			}
			if fresh {
				if err := tx.IndexAdd(idxAuthFail, timeKey(c.Start.Add(c.Window)), id); err != nil {
					return fmt.Errorf("indexing failure count %s: %w", id, err)
				}
			}
			out[i] = FailureCount{Subject: c.Subject, Start: c.Start, Window: c.Window, Failures: rec.Failures,
				Clients: slices.Clone(rec.Clients), First: rec.First, Last: rec.Last}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// failureEnd is the end of the window a record id names.
func failureEnd(id string) (time.Time, bool) {
	_, win, ok := strings.Cut(id, "@")
	if !ok {
		return time.Time{}, false
	}
	start, length, ok := strings.Cut(win, "+")
	a, err1 := strconv.ParseInt(start, 10, 64)
	b, err2 := strconv.ParseInt(length, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return time.Time{}, false
	}
	return time.Unix(0, a).Add(time.Duration(b)).UTC(), true
}

// purgeFailures removes up to limit counts of windows that ended before
// now, oldest first, and reports whether more may be left.
func purgeFailures(tx Tx, now time.Time, limit int) (more bool, err error) {
	ids, err := tx.IndexRange(idxAuthFail, 0, limit, false)
	if err != nil {
		return false, fmt.Errorf("reading index %s: %w", idxAuthFail, err)
	}
	for _, id := range ids {
		end, ok := failureEnd(id)
		if !ok {
			return false, fmt.Errorf("failure count %q: not a subject and window", id)
		}
		if !end.Before(now) {
			return false, nil
		}
		if err := tx.Delete(tblAuthFail, id); err != nil {
			return false, fmt.Errorf("deleting failure count %s: %w", id, err)
		}
		if err := tx.IndexRemove(idxAuthFail, timeKey(end), id); err != nil {
			return false, fmt.Errorf("updating index %s: %w", idxAuthFail, err)
		}
	}
	return len(ids) == limit, nil
}

// purgeEndedFailures removes every count whose window has ended.
func (s *kvStore) purgeEndedFailures(ctx context.Context) error {
	for {
		var more bool
		err := s.b.Update(ctx, func(tx Tx) (err error) {
			more, err = purgeFailures(tx, s.clock(), retentionBatch)
			return err
		})
		if err != nil || !more {
			return err
		}
	}
}
