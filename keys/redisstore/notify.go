package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
)

// Subscription tuning.
const (
	// healthInterval is how often the subscription is probed: the
	// subscriber publishes a probe on the channel, through the client every
	// write goes through, and its arrival confirms the subscriber's cache up
	// to the time it was sent (keys.Listener.Confirm); when it has not
	// arrived an interval after it was sent (and nothing else arrived
	// meanwhile), the subscription is treated as dropped.
	healthInterval = time.Second
	// resubscribe backoff after a drop.
	minResubscribe = 50 * time.Millisecond
	maxResubscribe = 2 * time.Second
	// probePrefix starts the payload of the probes (which are not JSON, so
	// every subscriber ignores them as invalidations); a random id of the
	// subscription and a sequence number follow, so a subscriber knows its
	// own probe.
	probePrefix = "keygate:probe:"
)

// errNoProbe reports a subscription its own probe did not reach in time:
// the connection stopped answering, or it is on a node that no longer gets
// what is published where the writes go (a demoted master).
var errNoProbe = errors.New("subscription does not receive its probe")

// errStopped ends the receive loop of a closed Backend.
var errStopped = errors.New("backend closed")

// Subscribe implements keys.Notifier. It subscribes to the invalidation
// channel and returns once Redis has confirmed the subscription (within the
// timeout), or with an error wrapping keys.ErrUnavailable when it could not;
// then l.Change is called for every invalidation published, from a
// goroutine that ends with ctx. l's functions run on that goroutine, one at
// a time. Messages that are not a JSON keys.Invalidation are ignored.
//
// Every second the subscriber publishes a probe on the channel through the
// client, so on the master every Update commits on. Update publishes inside
// the MULTI/EXEC of its commit, and Redis delivers what one node publishes
// in order (to its own subscribers, and through replication or the cluster
// bus to the others'), so the arrival of a probe sent at t proves that every
// change committed before t on that master has been passed to l.Change:
// l.Confirm(t) is called then. Unlike a PING on the subscription connection,
// this holds wherever the subscription is: a subscription left on a master
// that a failover demoted stops receiving its probes and is replaced.
//
// When the subscription drops (an error, a probe that cannot be published,
// or no probe back within an interval), l.Gap(false) is called, since
// notifications may be missed from then on, and the goroutine subscribes
// again with a backoff; when the new subscription is confirmed, l.Gap(true)
// is called, for what was published meanwhile.
func (b *Backend) Subscribe(ctx context.Context, l keys.Listener) error {
	if l.Change == nil {
		return errors.New("redisstore: subscribe: nil Change callback")
	}
	if l.Gap == nil {
		l.Gap = func(bool) {}
	}
	if l.Confirm == nil {
		l.Confirm = func(time.Time) {}
	}
	if err := b.checkOpen("subscribe"); err != nil {
		return err
	}
	sub, err := b.subscribe(ctx)
	if err != nil {
		return unavailable("subscribe", err)
	}
	go b.deliver(ctx, sub, l)
	return nil
}

// subscription is an open subscription and, on a cluster, the node it is
// on (nil otherwise).
type subscription struct {
	ps   *redis.PubSub
	node *redis.Client
}

// errNotMaster reports a subscription on a cluster node that no longer
// serves the channel's slot as a master (after a failover): what is
// published on the new master reaches it only through the cluster bus, a
// detour the subscription is moved off.
var errNotMaster = errors.New("subscribed node is no longer the master of the channel's slot")

// subscribe opens a subscription to the channel and waits, within the
// timeout, for Redis to confirm it.
//
// On Redis Cluster the subscription goes to the master of the channel's
// slot, which is the slot of every key of the store, so the node that runs
// an Update's PUBLISH is the node the subscription is on, and delivery is
// direct. The node is checked to be a master first (the client's view of
// the cluster may be stale after a failover) and again before each
// confirmation (see receive).
func (b *Backend) subscribe(ctx context.Context) (subscription, error) {
	var sub subscription
	cctx, cancel := b.callCtx(ctx)
	defer cancel()
	if cc, ok := b.client.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(cctx, b.channel)
		if err != nil {
			cc.ReloadState(ctx)
			return sub, fmt.Errorf("finding the master of the channel: %w", err)
		}
		if err := isMaster(cctx, node); err != nil {
			cc.ReloadState(ctx)
			return sub, err
		}
		sub.node = node
		sub.ps = node.Subscribe(ctx) // no channel yet: no I/O
	} else {
		sub.ps = b.client.Subscribe(ctx)
	}
	ps := sub.ps
	if err := ps.Subscribe(cctx, b.channel); err != nil {
		_ = ps.Close()
		return sub, err
	}
	for {
		var wait time.Duration
		if d, ok := cctx.Deadline(); ok {
			wait = time.Until(d)
		}
		if wait <= 0 {
			_ = ps.Close()
			return sub, context.DeadlineExceeded
		}
		msg, err := ps.ReceiveTimeout(cctx, wait)
		if err != nil {
			_ = ps.Close()
			return sub, err
		}
		if s, ok := msg.(*redis.Subscription); ok && s.Kind == "subscribe" && s.Channel == b.channel {
			return sub, nil
		}
	}
}

// isMaster checks with ROLE that node is a master.
func isMaster(ctx context.Context, node *redis.Client) error {
	role, err := node.Do(ctx, "role").Slice()
	if err != nil {
		return fmt.Errorf("checking the role of %s: %w", node.Options().Addr, err)
	}
	if len(role) == 0 || role[0] != "master" {
		return fmt.Errorf("%s: %w", node.Options().Addr, errNotMaster)
	}
	return nil
}

// deliver runs the subscription until ctx ends, subscribing again after a
// drop.
func (b *Backend) deliver(ctx context.Context, sub subscription, l keys.Listener) {
	for {
		err := b.receive(ctx, sub, l)
		_ = sub.ps.Close()
		if errors.Is(err, errNotMaster) {
			if cc, ok := b.client.(*redis.ClusterClient); ok {
				cc.ReloadState(ctx)
			}
		}
		if ctx.Err() != nil || b.closed.Load() {
			return
		}
		l.Gap(false)
		for backoff := minResubscribe; ; backoff = min(2*backoff, maxResubscribe) {
			if sleep(ctx, backoff) != nil || b.closed.Load() {
				return
			}
			var err error
			if sub, err = b.subscribe(ctx); err == nil {
				break
			}
		}
		l.Gap(true)
	}
}

// receive delivers the messages of the subscription and probes it every
// healthInterval until it fails or ctx ends. At most one probe is in
// flight: the next one goes out an interval after the previous one was
// sent, once it has arrived.
//
// On a cluster, the node subscribed to is also checked to be a master before
// a probe confirms anything; when it is not (a failover moved the slot), the
// subscription is dropped with errNotMaster and opened again on the new
// master, where messages arrive without the detour through the cluster bus.
func (b *Backend) receive(ctx context.Context, sub subscription, l keys.Listener) error {
	ps := sub.ps
	// Closing the PubSub interrupts a blocked receive when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	var id [8]byte
	_, _ = rand.Read(id[:])
	var (
		prefix   = probePrefix + hex.EncodeToString(id[:]) + ":"
		seq      uint64
		want     string    // payload of the probe in flight
		sentAt   time.Time // when it was sent; zero when none is in flight
		deadline = time.Now()
	)
	for {
		now := time.Now()
		if !now.Before(deadline) {
			if !sentAt.IsZero() {
				return errNoProbe
			}
			if b.closed.Load() {
				return errStopped
			}
			seq++
			want = prefix + strconv.FormatUint(seq, 10)
			// The time is taken before sending: the probe vouches for what
			// the master published before it, so at least up to now.
			sentAt = time.Now()
			pctx, cancel := b.callCtx(ctx)
			err := b.client.Publish(pctx, b.channel, want).Err()
			cancel()
			if err != nil {
				return fmt.Errorf("publishing a probe: %w", err)
			}
			deadline = sentAt.Add(healthInterval)
			continue
		}
		msg, err := ps.ReceiveTimeout(ctx, deadline.Sub(now))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return fmt.Errorf("receiving: %w", err)
			}
			continue
		}
		var m *redis.Message
		switch v := msg.(type) {
		case *redis.Message:
			m = v
		case *redis.Subscription:
			// go-redis reconnected and subscribed again by itself:
			// messages of the gap are lost, and so may be the probe in
			// flight.
			if v.Kind == "subscribe" && v.Channel == b.channel {
				sentAt = time.Time{}
				deadline = time.Now()
				l.Gap(true)
			}
			continue
		default:
			continue // a PONG of go-redis's own health check, …
		}
		if !strings.HasPrefix(m.Payload, probePrefix) {
			if !sentAt.IsZero() {
				// An invalidation shows the subscription is alive; the
				// probe may be queued behind a burst of them.
				deadline = later(deadline, time.Now().Add(healthInterval))
			}
			var inv keys.Invalidation
			if json.Unmarshal([]byte(m.Payload), &inv) == nil {
				l.Change(inv)
			}
			continue
		}
		if sentAt.IsZero() || m.Payload != want {
			continue // another subscriber's probe, or an old one of ours
		}
		upTo := sentAt
		sentAt = time.Time{}
		deadline = upTo.Add(healthInterval)
		if sub.node != nil {
			rctx, cancel := b.callCtx(ctx)
			err := isMaster(rctx, sub.node)
			cancel()
			if errors.Is(err, errNotMaster) {
				return err
			}
			if err != nil {
				continue // no proof this time; the next probe tries again
			}
		}
		l.Confirm(upTo)
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
