package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/redistopo"
	"github.com/keygate/keygate/internal/testcaddy"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
	"github.com/keygate/keygate/keys/storetest"
	"github.com/keygate/keygate/ratelimit"
	"github.com/keygate/keygate/ratelimit/limitertest"
)

// topology is a running Redis deployment and how keygate is configured
// for it.
type topology struct {
	name string
	// store is the body of the Caddyfile's `store redis` block, without
	// the prefix.
	store string
	// opts are the redisstore options of the same deployment.
	opts redisstore.Options
	// subscribers are the nodes the invalidation subscriptions may be on
	// (for PUBSUB NUMSUB), found again after a failover: on a cluster the
	// master of the channel's slot; with Sentinel the master or its replica
	// (a subscription there gets what the master publishes through
	// replication, and its probes prove it).
	subscribers func(channel string) []*redistopo.Node
	// admin, when set, returns a client with every command, for the
	// limiter suite's looks at its keys where keygate's ACL user may not
	// run them (see limitertest.Env.Admin); closed when t ends.
	admin func(t *testing.T) redis.UniversalClient
}

// client returns a keygate client for the topology, closed when t ends.
func (tp *topology) client(t *testing.T) redis.UniversalClient {
	return tp.clientTimeout(t, tp.opts.Timeout)
}

// clientTimeout is client with another per-call timeout.
func (tp *topology) clientTimeout(t *testing.T, timeout time.Duration) redis.UniversalClient {
	opts := tp.opts
	opts.Timeout = timeout
	c := redisstore.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

func clusterTopology(t *testing.T) (*topology, *redistopo.Cluster) {
	c := redistopo.StartCluster(t)
	return &topology{
		name:  "cluster",
		store: "address " + strings.Join(c.Addrs(), " "),
		opts:  redisstore.Options{Addrs: c.Addrs(), Timeout: 100 * time.Millisecond},
		subscribers: func(channel string) []*redistopo.Node {
			m, _ := c.Owner(channel)
			return []*redistopo.Node{m}
		},
	}, c
}

func sentinelTopology(t *testing.T) (*topology, *redistopo.Sentinel) {
	s := redistopo.StartSentinel(t)
	return &topology{
		name:  "sentinel",
		store: "address " + strings.Join(s.Addrs(), " ") + "\n\t\t\tmaster_name " + redistopo.MasterName,
		opts:  redisstore.Options{Addrs: s.Addrs(), MasterName: redistopo.MasterName, Timeout: 100 * time.Millisecond},
		subscribers: func(string) []*redistopo.Node {
			return []*redistopo.Node{s.Master, s.Replica}
		},
	}, s
}

func tlsTopology(t *testing.T) (*topology, *redistopo.TLSServer) {
	s := redistopo.StartTLS(t)
	tc := s.ClientTLS.Clone()
	return &topology{
		name: "tls-acl",
		store: fmt.Sprintf("address %s\n\t\t\tusername %s\n\t\t\tpassword %s\n\t\t\ttls_ca %s\n\t\t\ttls_cert %s\n\t\t\ttls_key %s\n\t\t\ttls_server_name %s",
			s.Addr, redistopo.ACLUser, s.Password, s.CAFile, s.CertFile, s.KeyFile, s.ServerName),
		opts: redisstore.Options{Addrs: []string{s.Addr}, Username: redistopo.ACLUser, Password: s.Password,
			TLSConfig: tc, Timeout: 100 * time.Millisecond},
		subscribers: func(string) []*redistopo.Node { return []*redistopo.Node{s.Node} },
		admin: func(t *testing.T) redis.UniversalClient {
			c := s.Client()
			t.Cleanup(func() { c.Close() })
			return c
		},
	}, s
}

// TestTopologyCluster runs the store conformance suite, the limiter's
// suite (exactness) and cross-node revocation on a Redis Cluster (3 masters,
// 3 replicas), measures what WAIT costs an admin write, then fails the
// store's shard over twice under load (CLUSTER FAILOVER, then killing the
// master).
func TestTopologyCluster(t *testing.T) {
	tp, c := clusterTopology(t)
	runCommon(t, tp)
	t.Run("wait cost", func(t *testing.T) { measureWait(t, tp) })
	t.Run("failover under load", func(t *testing.T) {
		n := startPair(t, tp, "keygate:fo:")
		master, replica := c.Owner(n.channel())
		failoverUnderLoad(t, n, "CLUSTER FAILOVER", func() { c.Failover(replica) })
		// The old master is now the replica: kill the new master.
		master, replica = replica, master
		// A user whose limiter key is on the master about to die.
		user := ""
		for i := 0; user == ""; i++ {
			u := "over-" + strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.Itoa(i)
			if m, _ := c.Owner(ratelimit.Key("acme", u)); m == master {
				user = u
			}
		}
		var ov *overAdmission
		failoverUnderLoad(t, n, "kill the master", func() {
			ov = startOverAdmission(t, tp, user)
			c.KillMaster(master, replica)
		})
		t.Logf("limiter over-admission while a killed master failed over: %s", ov.finish())
	})
}

// TestTopologySentinel is TestTopologyCluster on Sentinel (1 master, 1
// replica, 3 sentinels), failing over with SENTINEL FAILOVER, then by
// killing the master.
func TestTopologySentinel(t *testing.T) {
	tp, s := sentinelTopology(t)
	runCommon(t, tp)
	t.Run("wait cost", func(t *testing.T) { measureWait(t, tp) })
	t.Run("failover under load", func(t *testing.T) {
		n := startPair(t, tp, "keygate:fo:")
		var took time.Duration
		failoverUnderLoad(t, n, "SENTINEL FAILOVER", func() { took = s.Failover() })
		t.Logf("SENTINEL FAILOVER promoted the replica in %v", took)
		var ov *overAdmission
		failoverUnderLoad(t, n, "kill the master", func() {
			ov = startOverAdmission(t, tp, "over-"+strconv.FormatInt(time.Now().UnixNano(), 36))
			took = s.KillMaster()
		})
		t.Logf("sentinels promoted the replica %v after the master was killed; limiter over-admission: %s", took, ov.finish())
	})
}

// TestTopologyTLSACL runs the common checks on a Redis that only speaks
// TLS (with client certificates) as an ACL user restricted by the rule the
// README documents.
func TestTopologyTLSACL(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if rule := redistopo.KeygateACL("keygate:", false); !strings.Contains(string(readme), rule) {
		t.Errorf("README.md does not document the ACL rule the test uses:\n%s", rule)
	}
	tp, s := tlsTopology(t)
	runCommon(t, tp)
	// Nothing the tests did was refused by the ACL.
	v, err := s.Do("acl", "log")
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := v.([]any); len(entries) > 0 {
		t.Errorf("ACL refusals: %v", entries)
	}
}

// runCommon runs what must hold on every topology.
func runCommon(t *testing.T, tp *topology) {
	t.Run("store conformance", func(t *testing.T) {
		// Correctness, not latency: a second per call, as on the shared
		// Redis (the suite runs its cases in parallel).
		client := tp.clientTimeout(t, time.Second)
		var n atomic.Int64
		storetest.Run(t, func(t *testing.T) keys.Store {
			opts := tp.opts
			opts.Timeout = time.Second
			opts.Prefix = fmt.Sprintf("keygate:ct%d:", n.Add(1))
			s := redisstore.NewStore(client, opts, keys.StoreOptions{})
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("limiter", func(t *testing.T) {
		// Exactness, not latency: the limiters' clients wait up to 5 s.
		var n atomic.Int64
		start := time.Now()
		t.Cleanup(func() { t.Logf("%s: limiter suite took %v", tp.name, time.Since(start).Round(time.Millisecond)) })
		limitertest.Run(t, limitertest.Env{
			Client: func(t *testing.T) (redis.UniversalClient, string) {
				return tp.clientTimeout(t, 5*time.Second), fmt.Sprintf("keygate:%s:lt%d:", tp.name, n.Add(1))
			},
			Other:   func(t *testing.T) redis.UniversalClient { return tp.clientTimeout(t, 5*time.Second) },
			Admin:   tp.admin,
			Timeout: 5 * time.Second,
		})
	})
	t.Run("revocation across nodes", func(t *testing.T) {
		n := startPair(t, tp, "keygate:rv:")
		userID, keyID, key := n.a.newUserKey("acme", "revoked", time.Now().Add(time.Hour))
		n.warm(key)
		start := time.Now()
		n.a.api(http.MethodDelete, "/v1/users/"+userID+"/keys/"+keyID, nil, http.StatusOK)
		took := n.await(key, http.StatusUnauthorized, start, propagationBound)
		t.Logf("%s: key revoked on node A, refused by A after %v, by B after %v", tp.name, took[0], took[1])
	})
}

// pair is two gateway nodes (two Caddy processes) on one topology, each
// with a fail_closed gateway (gateway), a fail_open one (open) and the
// admin API.
type pair struct {
	*cluster
	tp   *topology
	open [2]string // fail_open gateway URL of node A and B
}

// startPair starts two nodes on the topology under prefix and waits until
// both are subscribed to the invalidation channel.
func startPair(t *testing.T, tp *topology, prefix string) *pair {
	t.Helper()
	global := fmt.Sprintf(`keygate {
		store redis {
			%s
			prefix %s
			timeout 250ms
		}
		master_key %s
	}`, tp.store, prefix, testMasterKey)
	p := &pair{cluster: &cluster{t: t, prefix: prefix}, tp: tp}
	for i := range 2 {
		openPort := testcaddy.FreePort(t)
		tmpl := fmt.Sprintf(`{
	admin {admin}
	%s
}
http://127.0.0.1:{gw} {
	keygate {
		identity_headers all
		rate_limit_headers both
		tenant acme
		limit 1000000 1m
		on_store_error fail_closed
	}
	reverse_proxy {up}
}
http://127.0.0.1:%d {
	keygate {
		identity_headers all
		rate_limit_headers both
		tenant acme
		limit 1000000 1m
		on_store_error fail_open
	}
	reverse_proxy {up}
}
http://127.0.0.1:{api} {
	keygate_admin
}
`, global, openPort)
		e := startGateway(t, tmpl, newUpstream(t), testcaddy.Options{})
		p.open[i] = fmt.Sprintf("http://127.0.0.1:%d", openPort)
		if i == 0 {
			e.bootstrap()
			p.a = e
		} else {
			e.adminKey, e.adminID = p.a.adminKey, p.a.adminID
			p.b = e
		}
	}
	p.waitSubscribers(2)
	return p
}

// channel is the invalidation channel of the pair's store.
func (p *pair) channel() string {
	return redisstore.New(nil, redisstore.Options{Prefix: p.prefix}).Channel()
}

// waitSubscribers waits until n subscriptions are on the nodes that may
// serve them (see topology.subscribers).
func (p *pair) waitSubscribers(n int64) {
	p.t.Helper()
	ch := p.channel()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var got int64
		var err error
		for _, node := range p.tp.subscribers(ch) {
			if node == nil || !node.Alive() {
				continue
			}
			var v any
			if v, err = node.Do("pubsub", "numsub", ch); err == nil {
				if r, _ := v.([]any); len(r) == 2 {
					n, _ := r[1].(int64)
					got += n
				}
			}
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%d subscribers on %s (err %v), want %d", got, ch, err, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loadResult is what the load saw during a failover.
type loadResult struct {
	mu       sync.Mutex
	counts   map[string]int // "<route> <status>" → count
	first503 time.Time      // first and last 503 of the fail_closed route
	last503  time.Time
	bad      []string // unexpected answers
}

func (r *loadResult) record(route string, status int, at time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.bad = append(r.bad, fmt.Sprintf("%s: %v", route, err))
		return
	}
	r.counts[route+" "+strconv.Itoa(status)]++
	switch {
	case status == http.StatusOK:
	case status == http.StatusServiceUnavailable && route == "closed":
		if r.first503.IsZero() {
			r.first503 = at
		}
		r.last503 = at
	default:
		if len(r.bad) < 20 {
			r.bad = append(r.bad, fmt.Sprintf("%s route: %d at %s", route, status, at.Format("15:04:05.000")))
		}
	}
}

// failoverUnderLoad runs steady load from 24 users through both nodes and
// both routes, runs failover, and checks that no answer is ever 401 or 500,
// that 503s come only from the fail_closed route and only between the start
// of the failover and shortly after it completed, and that service returns
// by itself. Then it checks that a user created (and acknowledged) before
// the failover is still there and that a revocation made after it reaches
// both nodes within a second.
func failoverUnderLoad(t *testing.T, p *pair, what string, failover func()) {
	t.Helper()
	const users = 24
	exp := time.Now().Add(time.Hour)
	var keysOf []string
	for i := range users {
		_, _, key := p.a.newUserKey("acme", fmt.Sprintf("load-%s-%d", strings.ReplaceAll(what, " ", "-"), i), exp)
		keysOf = append(keysOf, key)
	}
	// Acknowledged before the failover; checked after it.
	survivorID, survivorKeyID, survivorKey := p.a.newUserKey("acme", "survivor-"+strings.ReplaceAll(what, " ", "-"), exp)

	res := &loadResult{counts: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range 8 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				node := i % 2
				route, base := "closed", p.nodes()[node].gateway
				if (i/2)%2 == 1 {
					route, base = "open", p.open[node]
				}
				req, _ := http.NewRequest(http.MethodGet, base+"/x", nil)
				req.Header.Set("X-Api-Key", keysOf[i%users])
				resp, err := client.Do(req)
				at := time.Now()
				if err == nil {
					resp.Body.Close()
					res.record(route, resp.StatusCode, at, nil)
				} else {
					res.record(route, 0, at, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	began := time.Now()
	failover()
	ended := time.Now()
	// Service must return by itself: wait for 2 s without a 503.
	deadline := ended.Add(15 * time.Second)
	for {
		time.Sleep(200 * time.Millisecond)
		res.mu.Lock()
		last := res.last503
		res.mu.Unlock()
		if time.Since(last) > 2*time.Second && time.Since(ended) > 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("%s: still 503s 15 s after the failover completed", what)
		}
	}
	close(stop)
	wg.Wait()

	window := "none"
	if !res.first503.IsZero() {
		window = fmt.Sprintf("%v from %v after the failover began", res.last503.Sub(res.first503).Round(time.Millisecond),
			res.first503.Sub(began).Round(time.Millisecond))
	}
	t.Logf("%s: failover took %v; answers %v; fail_closed 503 window: %s",
		what, ended.Sub(began).Round(time.Millisecond), res.counts, window)
	if len(res.bad) > 0 {
		t.Errorf("%s: unexpected answers: %v", what, res.bad)
	}
	// 503s only while the store was failing over, plus the time the nodes
	// take to notice it is back (the breaker's cool-down, the client's
	// reconnect): 3 s.
	if !res.first503.IsZero() && (res.first503.Before(began) || res.last503.After(ended.Add(3*time.Second))) {
		t.Errorf("%s: 503s from %v to %v outside the failover (%v to %v, + 3 s)", what,
			res.first503.Format("15:04:05.000"), res.last503.Format("15:04:05.000"), began.Format("15:04:05.000"), ended.Format("15:04:05.000"))
	}

	// The write acknowledged before the failover survived it, and a
	// revocation made now reaches both nodes within a second.
	p.waitSubscribers(2)
	for _, e := range p.nodes() {
		if got := status(e, survivorKey); got != http.StatusOK {
			t.Fatalf("%s: key created before the failover: %d on %s", what, got, e.gateway)
		}
	}
	p.warm(survivorKey)
	start := time.Now()
	p.a.api(http.MethodDelete, "/v1/users/"+survivorID+"/keys/"+survivorKeyID, nil, http.StatusOK)
	took := p.await(survivorKey, http.StatusUnauthorized, start, propagationBound)
	t.Logf("%s: after the failover, a revocation on node A was refused by A after %v, by B after %v", what, took[0], took[1])
}

// overAdmission is load from two limiters (batching and leasing, as the
// gateway runs them) on two clients against one key with a limit of 2000
// per minute, started just before a failover: it measures how many
// requests are accepted beyond the limit in that minute (increments
// acknowledged by the old master but not replicated, leases counted there).
type overAdmission struct {
	t                        *testing.T
	start                    time.Time
	allowed, refused, failed atomic.Int64
	limiters                 []ratelimit.Limiter
	stop                     chan struct{}
	wg                       sync.WaitGroup
}

const overLimit = 2000

// startOverAdmission starts the load on user's limiter key and lets it run
// for half a second.
func startOverAdmission(t *testing.T, tp *topology, user string) *overAdmission {
	key := ratelimit.Key("acme", user)
	t.Helper()
	o := &overAdmission{t: t, start: time.Now(), stop: make(chan struct{})}
	for w := range 8 {
		if w < 2 {
			l := ratelimit.NewRedis(tp.client(t), ratelimit.RedisOptions{Prefix: "keygate:over:", Batch: true, Lease: 64})
			t.Cleanup(func() { l.Close() })
			o.limiters = append(o.limiters, l)
		}
	}
	for w := range 8 {
		l := o.limiters[w%2]
		o.wg.Go(func() {
			for {
				select {
				case <-o.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				d, err := l.Allow(ctx, key, overLimit, time.Minute)
				cancel()
				switch {
				case err != nil:
					if o.failed.Add(1)%500 == 1 {
						o.t.Logf("over-admission load: %v after %v", err, time.Since(o.start).Round(time.Millisecond))
					}
				case d.Allowed:
					o.allowed.Add(1)
				default:
					o.refused.Add(1)
				}
				// About 700 a second: the quota lasts across the failover.
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	return o
}

// finish keeps the load on until the limit is reached again (at most 20 s,
// well within the window's minute), stops it, and reports.
func (o *overAdmission) finish() string {
	for o.allowed.Load() < overLimit && time.Since(o.start) < 20*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // what the limiters still hand out
	close(o.stop)
	o.wg.Wait()
	if time.Since(o.start) >= time.Minute {
		o.t.Fatal("over-admission measurement outlived the window")
	}
	over := max(o.allowed.Load()-overLimit, 0)
	o.t.Logf("over-admission: %d accepted beyond a limit of %d", over, overLimit)
	return fmt.Sprintf("%d accepted beyond a limit of %d (%d refused, %d errors)",
		over, overLimit, o.refused.Load(), o.failed.Load())
}

// measureWait reports what waiting for a replica (WAIT 1) adds to a store
// write on a topology with replicas.
func measureWait(t *testing.T, tp *topology) {
	// A generous timeout: this measures, it does not test deadlines.
	client := tp.clientTimeout(t, time.Second)
	ctx := context.Background()
	lat := func(replicaWait time.Duration) (p50, p99 time.Duration) {
		opts := tp.opts
		opts.Prefix = "keygate:wait" + strconv.FormatInt(int64(replicaWait), 36) + ":"
		opts.Timeout = time.Second
		opts.ReplicaWait = replicaWait
		s := redisstore.NewStore(client, opts, keys.StoreOptions{})
		defer s.Close()
		if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "test"); err != nil {
			t.Fatal(err)
		}
		var ds []time.Duration
		for i := range 200 {
			start := time.Now()
			if _, err := s.CreateUser(ctx, keys.User{Name: fmt.Sprintf("w%d", i), Type: keys.UserService, Role: keys.RoleMember, PrimaryTenant: "acme"}, "test"); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds[len(ds)/2], ds[len(ds)*99/100]
	}
	off50, off99 := lat(-1)
	on50, on99 := lat(0)
	t.Logf("%s: CreateUser without WAIT p50 %v p99 %v; with WAIT 1 p50 %v p99 %v", tp.name, off50, off99, on50, on99)
}

// TestTopologySentinelEvents: two keygate nodes deliver webhooks from a
// Sentinel group (min-replicas-to-write 1) while users are created through
// both, and the master is failed over twice with deliveries pending and in
// flight (the receiver takes 50 ms per request): SENTINEL FAILOVER, then
// killing the master. Every user the admin API acknowledged is there
// afterwards, its events reached the receiver (at least once; deduped by
// webhook-id, once), signed, and no delivery is left pending or failed.
func TestTopologySentinelEvents(t *testing.T) {
	tp, s := sentinelTopology(t)
	rc := newHookReceiver(t)
	rc.delay.Store(int64(50 * time.Millisecond))
	store := fmt.Sprintf("store redis {\n\t\t\t%s\n\t\t\tprefix keygate:ev:\n\t\t\ttimeout 250ms\n\t\t}", tp.store)
	a := startEventsEnv(t, store, "timeout 2s\n\t\t\tlease 4s", testcaddy.Options{})
	a.bootstrap()
	b := startEventsEnv(t, store, "timeout 2s\n\t\t\tlease 4s", testcaddy.Options{})
	b.adminKey, b.adminID = a.adminKey, a.adminID
	hook := a.webhook(rc, "acme")

	// Load: users created through both nodes, about 20 a second; only the
	// acknowledged ones (201) count.
	var mu sync.Mutex
	var acked []string
	ackedAt := map[string]time.Time{}
	refused := map[int]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w, node := range []*eventsEnv{a, b} {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"name":"fo-%d-%d","primaryTenant":"acme"}`, w, i)
				req, _ := http.NewRequest(http.MethodPost, node.adminURL+"/v1/users", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+node.adminKey)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					refused[0]++
					mu.Unlock()
					continue
				}
				var out struct {
					Data struct {
						ID string `json:"id"`
					} `json:"data"`
				}
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				mu.Lock()
				if resp.StatusCode == http.StatusCreated && err == nil && out.Data.ID != "" {
					acked = append(acked, out.Data.ID)
					ackedAt[out.Data.ID] = time.Now()
				} else {
					refused[resp.StatusCode]++
				}
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	// count is how many of the webhook's deliveries are in status (-1
	// while the admin API cannot tell).
	count := func(status string) int {
		code, _, raw := a.raw(http.MethodGet, "/v1/webhooks/"+hook+"/deliveries?size=1&status="+status, a.adminKey, nil, nil)
		var env struct {
			Total int `json:"total"`
		}
		if code != http.StatusOK || json.Unmarshal(raw, &env) != nil {
			return -1
		}
		return env.Total
	}
	pending := func() int { return count("PENDING") }
	// Fail over with deliveries pending: wait until some are.
	awaitPending := func(what string) {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if n := pending(); n > 0 {
				t.Logf("%s: %d deliveries pending or in flight", what, n)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no delivery pending", what)
			}
		}
	}
	// Without min-replicas-to-write, SENTINEL FAILOVER loses writes: the
	// old master, its replica promoted away, reports none (ROLE), so
	// keygate does not WAIT, and acknowledges writes its demotion then
	// wipes (8 to 18 users per run in this test). With it the old master
	// refuses them (503). See README, "What holds during a failover".
	setMinReplicas := func(n *redistopo.Node, v string) {
		if _, err := n.Do("config", "set", "min-replicas-to-write", v); err != nil {
			t.Fatal(err)
		}
	}
	setMinReplicas(s.Master, "1")
	setMinReplicas(s.Replica, "1")
	time.Sleep(time.Second)
	awaitPending("before SENTINEL FAILOVER")
	foStart := time.Now()
	t.Logf("SENTINEL FAILOVER promoted the replica in %v", s.Failover())
	foEnd := time.Now()
	time.Sleep(time.Second)
	awaitPending("before killing the master")
	// Killing the master leaves one data node: it must take writes
	// without a replica.
	setMinReplicas(s.Replica, "0")
	killStart := time.Now()
	t.Logf("the sentinels promoted the replica %v after the master was killed", s.KillMaster())
	killEnd := time.Now()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	mu.Lock()
	users := slices.Clone(acked)
	t.Logf("%d users acknowledged, refused: %v", len(users), refused)
	mu.Unlock()
	if len(users) < 20 {
		t.Fatalf("only %d users acknowledged", len(users))
	}
	// Every acknowledged user is there, and its user.created delivered.
	var kept []string
	for _, id := range users {
		code, _, _ := a.raw(http.MethodGet, "/v1/users/"+id, a.adminKey, nil, nil)
		switch code {
		case http.StatusOK:
			kept = append(kept, id)
		case http.StatusNotFound:
			at := ackedAt[id]
			t.Errorf("the store lost an acknowledged write: user %s was created (201) %v after SENTINEL FAILOVER began (it took %v), "+
				"%v after the kill began (it took %v), and is gone",
				id, at.Sub(foStart).Round(time.Millisecond), foEnd.Sub(foStart).Round(time.Millisecond),
				at.Sub(killStart).Round(time.Millisecond), killEnd.Sub(killStart).Round(time.Millisecond))
		default:
			t.Fatalf("GET user %s: %d", id, code)
		}
	}
	missing := func() (out []string) {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		got := map[string]bool{}
		for _, ev := range rc.events {
			if ev["type"] == "user.created" {
				got[fmt.Sprint(ev["subject"])] = true
			}
		}
		for _, id := range kept {
			if !got["users/"+id] {
				out = append(out, id)
			}
		}
		return out
	}
	for deadline := time.Now().Add(60 * time.Second); len(missing()) > 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the user.created of users the store has never arrived: %v", missing())
		}
	}
	for deadline := time.Now().Add(30 * time.Second); pending() != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries still pending", pending())
		}
	}
	if n := count("FAILED"); n != 0 {
		t.Fatalf("%d deliveries failed", n)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	dups := 0
	for _, n := range rc.raw {
		dups += n - 1
	}
	if rc.bad != 0 {
		t.Errorf("%d deliveries failed verification", rc.bad)
	}
	t.Logf("%d events arrived (each acknowledged user's user.created among them), %d repeated attempts deduped by webhook-id",
		len(rc.raw), dups)
}
