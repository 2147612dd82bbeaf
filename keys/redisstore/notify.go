package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
)

// Subscription tuning.
const (
	// healthInterval is how often the subscription is PINGed. Each PONG
	// confirms the subscriber's cache up to the time its PING was sent
	// (keys.Listener.Confirm); when nothing at all arrives within another
	// interval after a PING, the connection is treated as dropped.
	healthInterval = time.Second
	// resubscribe backoff after a drop.
	minResubscribe = 50 * time.Millisecond
	maxResubscribe = 2 * time.Second
	// pingPrefix starts the payload of the health PINGs; a sequence number
	// follows, so a PONG is matched with the PING it answers.
	pingPrefix = "keygate:"
)

// errNoPong reports a subscription connection that stopped answering.
var errNoPong = errors.New("subscription connection does not answer")

// errStopped ends the receive loop of a closed Backend.
var errStopped = errors.New("backend closed")

// Subscribe implements keys.Notifier. It subscribes to the invalidation
// channel and returns once Redis has confirmed the subscription (within the
// timeout), or with an error wrapping keys.ErrUnavailable when it could not;
// then l.Change is called for every invalidation published, from a
// goroutine that ends with ctx. l's functions run on that goroutine, one at
// a time. Messages that are not a JSON keys.Invalidation are ignored.
//
// The subscription connection is PINGed every second. Redis answers a PING
// on a subscribed connection after every message it published before
// receiving the PING, and Update publishes inside the MULTI/EXEC of its
// commit, so the PONG to a PING sent at t proves that every change committed
// before t has been passed to l.Change: l.Confirm(t) is called then.
//
// When the connection drops (an error, or silence for an interval after a
// PING), l.Gap(false) is called, since notifications may be missed from then
// on, and the goroutine subscribes again with a backoff; when the new
// subscription is confirmed, l.Gap(true) is called, for what was published
// meanwhile.
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
// published on the new master reaches it only through the cluster bus,
// later than the PONGs of its own connection, so those PONGs prove nothing.
var errNotMaster = errors.New("subscribed node is no longer the master of the channel's slot")

// subscribe opens a subscription to the channel and waits, within the
// timeout, for Redis to confirm it.
//
// On Redis Cluster the subscription goes to the master of the channel's
// slot, which is the slot of every key of the store, so the node that runs
// an Update's PUBLISH is the node the subscription is on: that is what makes
// a PONG a proof that every earlier message was delivered. The node is
// checked to be a master first (the client's view of the cluster may be
// stale after a failover) and again before each confirmation (see receive).
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

// receive delivers the messages of ps and PINGs it every healthInterval
// until the connection fails or ctx ends. At most one PING is in flight:
// the next one goes out an interval after the previous one was sent, once
// it has been answered.
//
// On a cluster, the node subscribed to is checked to be a master before a
// PONG confirms anything; when it is not (a failover moved the slot), the
// subscription is dropped with errNotMaster and opened again on the new
// master.
func (b *Backend) receive(ctx context.Context, sub subscription, l keys.Listener) error {
	ps := sub.ps
	// Closing the PubSub interrupts a blocked receive when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	var (
		seq      uint64
		want     string    // payload of the PING in flight
		sentAt   time.Time // when it was sent; zero when none is in flight
		deadline = time.Now()
	)
	for {
		now := time.Now()
		if !now.Before(deadline) {
			if !sentAt.IsZero() {
				return errNoPong
			}
			if b.closed.Load() {
				return errStopped
			}
			seq++
			want = pingPrefix + strconv.FormatUint(seq, 10)
			// The time is taken before sending: the PONG vouches for what
			// Redis published before it read the PING, so at least up to now.
			sentAt = time.Now()
			pctx, cancel := b.callCtx(ctx)
			err := ps.Ping(pctx, want)
			cancel()
			if err != nil {
				return fmt.Errorf("pinging: %w", err)
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
		if !sentAt.IsZero() {
			// Anything received shows the connection is alive; the PONG
			// may be queued behind a burst of messages.
			deadline = later(deadline, time.Now().Add(healthInterval))
		}
		switch m := msg.(type) {
		case *redis.Pong:
			if sentAt.IsZero() || m.Payload != want {
				continue // not the answer to the PING in flight
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
					continue // no proof this time; the next PING tries again
				}
			}
			l.Confirm(upTo)
		case *redis.Subscription:
			// go-redis reconnected and subscribed again by itself:
			// messages of the gap are lost, and so is the PING in flight.
			if m.Kind == "subscribe" && m.Channel == b.channel {
				sentAt = time.Time{}
				deadline = time.Now()
				l.Gap(true)
			}
		case *redis.Message:
			var inv keys.Invalidation
			if json.Unmarshal([]byte(m.Payload), &inv) == nil {
				l.Change(inv)
			}
		}
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
