package events

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/keys"
)

// Queue takes events noticed on the request path without ever blocking
// and writes them to the outbox in batches from its own goroutine (Run).
type Queue struct {
	store   keys.EventStore
	ch      chan keys.Event
	dropped atomic.Int64
	// OnWrite, when set, is called after a batch reached the outbox (the
	// dispatcher's Wake).
	OnWrite func()
}

// NewQueue returns a queue of at most size events (default 4096).
func NewQueue(store keys.EventStore, size int) *Queue {
	if size <= 0 {
		size = 4096
	}
	return &Queue{store: store, ch: make(chan keys.Event, size)}
}

// Add queues e; when the queue is full, e is dropped and counted.
func (q *Queue) Add(e keys.Event) bool {
	select {
	case q.ch <- e:
		return true
	default:
		q.dropped.Add(1)
		return false
	}
}

// Dropped returns how many events were dropped because the queue was full.
func (q *Queue) Dropped() int64 { return q.dropped.Load() }

// Run writes queued events to the outbox until ctx ends, then what is
// left (for up to 2s). Failed writes are retried with what arrives next.
func (q *Queue) Run(ctx context.Context, onError func(error)) {
	var batch []keys.Event
	flush := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := q.store.AppendEvents(fctx, batch)
		cancel()
		if err != nil {
			if onError != nil {
				onError(err)
			}
			if len(batch) > cap(q.ch) { // the store is away: keep the newest
				batch = append(batch[:0], batch[len(batch)-cap(q.ch):]...)
			}
			return
		}
		batch = batch[:0]
		if q.OnWrite != nil {
			q.OnWrite()
		}
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case e := <-q.ch:
					batch = append(batch, e)
					continue
				default:
				}
				break
			}
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			flush(fctx)
			cancel()
			return
		case e := <-q.ch:
			batch = append(batch, e)
			if len(batch) >= 256 {
				flush(ctx)
			}
		case <-t.C:
			flush(ctx)
		}
	}
}

// Usage is one limiter decision as the LimitWatcher sees it. Policy names
// the counted policy ("user": the per-user window; later plans add
// quotas and credits), so that more policies slot in.
type Usage struct {
	Tenant, User, Policy string
	Limit, Remaining     int64
	Window, Reset        time.Duration
	Allowed              bool
}

// LimitWatcher turns limiter decisions into ratelimit.approaching (a
// user's use passed a threshold of its limit, once per threshold and
// window) and ratelimit.exceeded (the first refusal in a window). Its
// events' ids are derived from user, policy, threshold and window, so
// several nodes noticing the same crossing give one event.
type LimitWatcher struct {
	q          *Queue
	thresholds []int // percent, ascending
	// lowest is the remaining share (in percent) below which Observe has
	// anything to do: 100 - the lowest threshold.
	lowest int64

	mu   sync.Mutex
	seen map[limitMark]int64 // → the window (epoch) it was emitted in
}

type limitMark struct {
	tenant, user, policy string
	level                int // index into thresholds, or -1 for exceeded
}

// maxLimitMarks bounds the remembered marks (the outbox dedupes anyway).
const maxLimitMarks = 100_000

// NewLimitWatcher returns a watcher for the thresholds (percent of the
// limit used; default 80 and 95).
func NewLimitWatcher(q *Queue, thresholds []int) *LimitWatcher {
	if len(thresholds) == 0 {
		thresholds = []int{80, 95}
	}
	return &LimitWatcher{q: q, thresholds: thresholds, lowest: int64(100 - thresholds[0]), seen: map[limitMark]int64{}}
}

// Near reports, with two multiplications, whether a decision with this
// limit and remaining quota may concern the watcher; the request path
// calls Observe only then (or on a refusal).
func (w *LimitWatcher) Near(limit, remaining int64) bool {
	return w != nil && limit > 0 && remaining*100 <= limit*w.lowest
}

// Observe notes one decision.
func (w *LimitWatcher) Observe(u Usage, now time.Time) {
	if w == nil || u.Limit <= 0 || u.Window <= 0 {
		return
	}
	epoch := now.UnixNano() / int64(u.Window)
	if !u.Allowed {
		w.mark(u, now, epoch, -1)
		return
	}
	used := u.Limit - u.Remaining
	level := -2
	for i, t := range w.thresholds {
		if used*100 >= u.Limit*int64(t) {
			level = i
		}
	}
	if level >= 0 {
		w.mark(u, now, epoch, level)
	}
}

// mark emits the event of (u, level) unless this window has it already.
func (w *LimitWatcher) mark(u Usage, now time.Time, epoch int64, level int) {
	m := limitMark{tenant: u.Tenant, user: u.User, policy: u.Policy, level: level}
	w.mu.Lock()
	if w.seen[m] == epoch+1 { // +1: the zero value means never
		w.mu.Unlock()
		return
	}
	if len(w.seen) >= maxLimitMarks {
		clear(w.seen)
	}
	w.seen[m] = epoch + 1
	w.mu.Unlock()

	start := time.Unix(0, epoch*int64(u.Window)).UTC()
	data := map[string]any{
		"userId": u.User, "policy": u.Policy, "limit": u.Limit, "remaining": u.Remaining,
		"used": u.Limit - u.Remaining, "window": u.Window.String(), "windowStart": start,
		"reset": int64(u.Reset.Seconds() + 0.5),
	}
	typ := keys.EventRateLimitExceeded
	threshold := "exceeded"
	if level >= 0 {
		typ = keys.EventRateLimitApproaching
		data["threshold"] = w.thresholds[level]
		threshold = strconv.Itoa(w.thresholds[level])
	}
	raw, _ := json.Marshal(data)
	w.q.Add(keys.Event{
		ID:   keys.EventID(typ, u.Tenant, u.User, u.Policy, threshold, strconv.FormatInt(epoch, 10)),
		Type: typ, Time: now.UTC(), Tenant: u.Tenant, Actor: "system",
		Subject: "users/" + u.User, UserID: u.User, Data: raw,
	})
}
