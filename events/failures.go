package events

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/keygate/keygate/keys"
)

// FailureWatcher notices bursts of failed authentications for one key or
// user: Threshold failures within one Window (windows are aligned to
// multiples of Window) give one auth.failures event, with the count and
// the number of distinct client addresses. Only credentials that name a
// known key or user are counted (a guess at an unknown id has no owner to
// tell); the per-address throttle already caps what one address can do.
//
// A node counts in memory on the request path (a map under a mutex, no
// I/O) and reports at once when its own count reaches the threshold. Run
// also adds each node's counts to the store's (AddFailureCounts) about
// once a second, off the request path, while there are any, so a burst
// split between nodes is reported when their sum reaches the threshold:
// at most FlushInterval after the failure that completed it. The event id
// is derived from subject and window, so the nodes that notice it give
// one event.
type FailureWatcher struct {
	q         *Queue
	threshold int
	window    time.Duration

	mu     sync.Mutex
	bursts map[string]*burst
}

type burst struct {
	epoch       int64
	n           int
	ips         map[netip.Addr]struct{}
	first       time.Time
	reported    bool
	tenant, uid string
	keyID       string
	// What the store has not been told yet: failures, the addresses first
	// seen since the last report, and the first failure among them.
	pending      int
	pendingIPs   []netip.Addr
	pendingFirst time.Time
	last         time.Time
}

// maxBursts bounds the tracked subjects; maxBurstIPs the addresses
// counted per subject (more are reported as at least that many).
const (
	maxBursts   = 50_000
	maxBurstIPs = keys.MaxFailureClients
)

// FlushInterval is how often Run adds the node's failure counts to the
// store's.
const FlushInterval = time.Second

// NewFailureWatcher returns a watcher reporting threshold failures within
// window (defaults 20 and 1m).
func NewFailureWatcher(q *Queue, threshold int, window time.Duration) *FailureWatcher {
	if threshold <= 0 {
		threshold = 20
	}
	if window <= 0 {
		window = time.Minute
	}
	return &FailureWatcher{q: q, threshold: threshold, window: window, bursts: map[string]*burst{}}
}

// Fail notes one failed authentication of a key (keyID set) or of a
// user's signature (keyID empty) from client address ip.
func (w *FailureWatcher) Fail(tenant, userID, keyID string, ip netip.Addr, now time.Time) {
	if w == nil || userID == "" {
		return
	}
	subject := "users/" + userID
	if keyID != "" {
		subject += "/keys/" + keyID
	}
	epoch := now.UnixNano() / int64(w.window)
	w.mu.Lock()
	b := w.bursts[subject]
	if b == nil || b.epoch != epoch {
		if len(w.bursts) >= maxBursts {
			for k, old := range w.bursts {
				if old.epoch != epoch {
					delete(w.bursts, k)
				}
			}
			if len(w.bursts) >= maxBursts {
				w.mu.Unlock()
				return
			}
		}
		b = &burst{epoch: epoch, ips: map[netip.Addr]struct{}{}, first: now, tenant: tenant, uid: userID, keyID: keyID}
		w.bursts[subject] = b
	}
	b.n++
	if b.pending == 0 {
		b.pendingFirst = now
	}
	b.pending++
	b.last = now
	if ip.IsValid() && len(b.ips) < maxBurstIPs {
		if _, seen := b.ips[ip]; !seen {
			b.ips[ip] = struct{}{}
			b.pendingIPs = append(b.pendingIPs, ip)
		}
	}
	if b.reported || b.n < w.threshold {
		w.mu.Unlock()
		return
	}
	b.reported = true
	n, ips, first := b.n, len(b.ips), b.first
	w.mu.Unlock()
	w.report(subject, tenant, userID, keyID, epoch, n, ips, first, now)
}

// report queues the auth.failures event of subject's burst in window epoch.
func (w *FailureWatcher) report(subject, tenant, userID, keyID string, epoch int64, n, ips int, first, last time.Time) {
	data := map[string]any{"userId": userID, "failures": n, "clientIPs": ips,
		"window": w.window.String(), "firstAt": first.UTC(), "lastAt": last.UTC()}
	if keyID != "" {
		data["keyId"] = keyID
	}
	raw, _ := json.Marshal(data)
	w.q.Add(keys.Event{
		ID:   keys.EventID(keys.EventAuthFailures, subject, strconv.FormatInt(epoch, 10)),
		Type: keys.EventAuthFailures, Time: last.UTC(), Tenant: tenant, Actor: "system",
		Subject: subject, UserID: userID, Data: raw,
	})
}

// clientHash is how a client address is told apart in the store's counts
// without being stored: 48 bits of its SHA-256, enough to count 256
// addresses without collisions in practice.
func clientHash(ip netip.Addr) string {
	b := ip.Unmap().As16()
	sum := sha256.Sum256(b[:])
	return base64.RawURLEncoding.EncodeToString(sum[:6])
}

// flushed is one burst's share of a Flush: what was taken from it, to put
// back when the store could not be reached.
type flushed struct {
	subject string
	b       *burst
	n       int
	ips     []netip.Addr
	first   time.Time
}

// Flush adds what the node counted since the last Flush to the store's
// counts (one transaction) and reports the bursts whose sum reached the
// threshold. Bursts already reported are not sent again. When the store
// cannot be reached, the counts are kept for the next Flush.
func (w *FailureWatcher) Flush(ctx context.Context) error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	var taken []flushed
	var counts []keys.FailureCount
	for subject, b := range w.bursts {
		if b.reported || b.pending == 0 {
			continue
		}
		f := flushed{subject: subject, b: b, n: b.pending, ips: b.pendingIPs, first: b.pendingFirst}
		clients := make([]string, len(f.ips))
		for i, ip := range f.ips {
			clients[i] = clientHash(ip)
		}
		counts = append(counts, keys.FailureCount{Subject: subject, Start: time.Unix(0, b.epoch*int64(w.window)).UTC(),
			Window: w.window, Failures: int64(f.n), Clients: clients, First: f.first.UTC(), Last: b.last.UTC()})
		taken = append(taken, f)
		b.pending, b.pendingIPs = 0, nil
	}
	w.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	sums, err := w.q.store.AddFailureCounts(ctx, counts)
	if err != nil {
		w.mu.Lock()
		for _, f := range taken {
			if w.bursts[f.subject] != f.b { // its window passed meanwhile
				continue
			}
			if f.b.pending == 0 || f.first.Before(f.b.pendingFirst) {
				f.b.pendingFirst = f.first
			}
			f.b.pending += f.n
			f.b.pendingIPs = append(f.ips, f.b.pendingIPs...)
		}
		w.mu.Unlock()
		return err
	}
	for i, sum := range sums {
		if sum.Failures < int64(w.threshold) {
			continue
		}
		f := taken[i]
		w.mu.Lock()
		already := f.b.reported
		f.b.reported = true
		w.mu.Unlock()
		if !already {
			w.report(f.subject, f.b.tenant, f.b.uid, f.b.keyID, f.b.epoch, int(sum.Failures), len(sum.Clients), sum.First, sum.Last)
		}
	}
	return nil
}

// Run flushes every FlushInterval until ctx ends.
func (w *FailureWatcher) Run(ctx context.Context, onError func(error)) {
	if w == nil {
		return
	}
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := w.Flush(fctx)
			cancel()
			if err != nil && onError != nil && ctx.Err() == nil {
				onError(err)
			}
		}
	}
}
