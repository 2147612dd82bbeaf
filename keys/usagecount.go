package keys

import (
	"context"
	"sync"
	"time"
)

// UsageRetention is how long the hourly usage counts are kept.
const UsageRetention = 8 * 24 * time.Hour

// UsageOutcome is what the gateway decided about one request of a user.
type UsageOutcome uint8

// The outcomes the gateway counts per user and hour.
const (
	// UsageAllowed: the request was let through.
	UsageAllowed UsageOutcome = iota
	// UsageLimited: the user's request limit refused it (429).
	UsageLimited
	// UsageRefused: the credential or the permission refused it (401, 403).
	UsageRefused
)

// UsageCount is how many requests of one user the gateway allowed,
// rate-limited and refused in one hour.
type UsageCount struct {
	UserID string
	// Hour is the start of the hour (UTC).
	Hour    time.Time
	Allowed int64
	Limited int64
	Refused int64
}

// usageSlot names one user and hour in a UsageCounter.
type usageSlot struct {
	user string
	hour int64 // Unix seconds of the hour's start
}

// UsageCounter counts requests per user, hour and outcome in memory and adds
// them to the store (Store.AddUsageCounts) at most once per interval, off the
// request path: counting is a map update under a mutex, with no store round
// trip and no allocation once the user's slot for the hour exists. Counts
// older than UsageRetention are purged from the store about once an hour.
type UsageCounter struct {
	store    Store
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	pending map[usageSlot][3]int64

	purgeMu   sync.Mutex
	lastPurge time.Time // guarded by purgeMu
}

// NewUsageCounter returns a counter flushing every interval (default 1m).
func NewUsageCounter(store Store, interval time.Duration) *UsageCounter {
	if interval <= 0 {
		interval = time.Minute
	}
	return &UsageCounter{store: store, interval: interval, now: time.Now, pending: make(map[usageSlot][3]int64)}
}

// Count notes one request of userID with outcome o at at. An empty userID
// (the credential named no known user) is not counted.
func (c *UsageCounter) Count(userID string, o UsageOutcome, at time.Time) {
	if c == nil || userID == "" || o > UsageRefused {
		return
	}
	k := usageSlot{user: userID, hour: at.Unix() - at.Unix()%3600}
	c.mu.Lock()
	v := c.pending[k]
	v[o]++
	c.pending[k] = v
	c.mu.Unlock()
}

// Flush adds what is pending to the store and, about once an hour, purges
// the counts older than UsageRetention. When the store fails, the pending
// counts are put back so the next flush retries them.
func (c *UsageCounter) Flush(ctx context.Context) error {
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return c.maybePurge(ctx)
	}
	taken := c.pending
	c.pending = make(map[usageSlot][3]int64, len(taken))
	c.mu.Unlock()

	batch := make([]UsageCount, 0, len(taken))
	for k, v := range taken {
		batch = append(batch, UsageCount{UserID: k.user, Hour: time.Unix(k.hour, 0).UTC(), Allowed: v[0], Limited: v[1], Refused: v[2]})
	}
	if err := c.store.AddUsageCounts(ctx, batch); err != nil {
		c.mu.Lock()
		for k, v := range taken {
			p := c.pending[k]
			for i := range p {
				p[i] += v[i]
			}
			c.pending[k] = p
		}
		c.mu.Unlock()
		return err
	}
	return c.maybePurge(ctx)
}

func (c *UsageCounter) maybePurge(ctx context.Context) error {
	c.purgeMu.Lock()
	defer c.purgeMu.Unlock()
	now := c.now()
	if now.Sub(c.lastPurge) < time.Hour {
		return nil
	}
	if _, err := c.store.PurgeUsageCounts(ctx, now.Add(-UsageRetention)); err != nil {
		return err
	}
	c.lastPurge = now
	return nil
}

// Run flushes every interval until ctx ends, then once more.
func (c *UsageCounter) Run(ctx context.Context, onError func(error)) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := c.Flush(fctx); err != nil && onError != nil {
				onError(err)
			}
			cancel()
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := c.Flush(fctx); err != nil && onError != nil {
				onError(err)
			}
			cancel()
		}
	}
}
