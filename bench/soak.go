package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
)

// node is one keygate process of the soak and scale runs: a gateway site
// for tenant bench, the admin API, and Caddy's admin endpoint (metrics).
type node struct {
	proc                *process
	gateway, api, admin string // base URLs (admin: host:port)
	started             time.Duration
}

// startNode starts a keygate process on the Redis at addr under prefix and
// waits until its gateway answers; started is how long that took.
func startNode(bin, dir, name, addr, prefix, upstream string) (*node, error) {
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%[1]d
	auto_https off
	persist_config off
	metrics
	keygate {
		store redis {
			address %[4]s
			prefix %[5]s
		}
		master_key %[6]s
	}
}
http://127.0.0.1:%[2]d {
	keygate {
		tenant bench
		schemes access_key
		limit 1000000000
		on_store_error fail_closed
	}
	reverse_proxy %[7]s
}
http://127.0.0.1:%[3]d {
	keygate_admin
}
`, ports[0], ports[1], ports[2], addr, prefix, benchMasterKey, upstream)
	ndir := filepath.Join(dir, name)
	if err := os.MkdirAll(ndir, 0o700); err != nil {
		return nil, err
	}
	cfPath := filepath.Join(ndir, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(cf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfPath, "--adapter", "caddyfile")
	cmd.Dir = ndir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+ndir, "XDG_CONFIG_HOME="+ndir, "HOME="+ndir)
	n := &node{gateway: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), api: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		admin: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	t0 := time.Now()
	p, err := start(name, cmd, filepath.Join(ndir, "caddy.log"))
	if err != nil {
		return nil, err
	}
	n.proc = p
	if err := waitHTTP(p, n.gateway+"/", 60*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w; log in %s", err, filepath.Join(ndir, "caddy.log"))
	}
	n.started = time.Since(t0)
	return n, nil
}

// benchEnv is a private redis-server with a store prefix, the bench
// tenant, an admin user's key and an upstream.
type benchEnv struct {
	dir      string
	bin      string
	redis    *process
	client   *redis.Client
	addr     string
	prefix   string
	adminKey string
	upstream string
	closers  []func()
}

func (e *benchEnv) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// setupEnv builds keygate, starts a private redis-server and creates the
// bench tenant and a superadmin with a key.
func setupEnv(ctx context.Context, cfg config) (*benchEnv, error) {
	e := &benchEnv{prefix: "kgbench:" + randomHex(6) + ":"}
	dir, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return nil, err
	}
	e.dir = dir
	if cfg.keep {
		fmt.Println("temporary directory:", dir)
	} else {
		e.closers = append(e.closers, func() { os.RemoveAll(dir) })
	}
	fmt.Println("building ./cmd/keygate …")
	if e.bin, err = buildKeygate(dir); err != nil {
		return e, err
	}
	rp, addr, err := startRedis(dir, "")
	if err != nil {
		return e, err
	}
	e.redis, e.addr = rp, addr
	e.closers = append(e.closers, rp.stop)
	e.client = redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128})
	e.closers = append(e.closers, func() { e.client.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := e.client.Ping(pctx).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return e, fmt.Errorf("private redis-server on %s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	store := redisstore.NewStore(e.client, redisstore.Options{Prefix: e.prefix, Timeout: 5 * time.Second}, keys.StoreOptions{})
	if _, err := store.CreateTenant(ctx, keys.Tenant{ID: benchTenant, Name: "Bench"}, "bench"); err != nil {
		return e, fmt.Errorf("creating tenant: %w", err)
	}
	u, err := store.CreateUser(ctx, keys.User{Name: "bench-admin", Type: keys.UserTechnical, Role: keys.RoleAdmin,
		PrimaryTenant: benchTenant, Superadmin: true}, "bench")
	if err == nil {
		_, _, err = store.PutPermission(ctx, keys.Permission{UserID: u.ID, TenantID: benchTenant,
			Role: keys.RoleAdmin, Status: keys.PermissionActive}, "bench")
	}
	if err == nil {
		var k keys.Key
		e.adminKey, k = keys.NewAccessKey(keys.NewHasher(nil), u.ID, benchTenant, "admin", time.Now().Add(24*time.Hour))
		_, err = store.CreateKey(ctx, k, "bench")
	}
	if err != nil {
		return e, fmt.Errorf("creating the admin user: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return e, err
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = up.Serve(ln) }()
	e.upstream = ln.Addr().String()
	e.closers = append(e.closers, func() { up.Close() })
	return e, nil
}

// apiCall calls the admin API of n with the admin key; it returns the
// status and the decoded data member.
func (e *benchEnv) apiCall(n *node, method, path string, body any) (int, json.RawMessage, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+e.adminKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPatch || method == http.MethodDelete {
		req.Header.Set("If-Match", "*")
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &env)
	if env.Data == nil {
		env.Data = b
	}
	return resp.StatusCode, env.Data, nil
}

// gatewayStatus is n's answer to key.
func gatewayStatus(n *node, key string) int {
	req, _ := http.NewRequest(http.MethodGet, n.gateway+"/soak", nil)
	req.Header.Set("X-Api-Key", key)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return -1
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// sample is one 10-second point of the soak series.
type sample struct {
	at                   time.Duration
	rss                  [2]int64 // KiB
	goroutines           [2]int
	sockets              [2]int
	redisMem             int64
	redisClients         int
	requests, unexpected uint64
	p99                  time.Duration
	changes              int
}

// procRSS returns the resident set of pid in KiB.
func procRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			v, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return v
		}
	}
	return -1
}

// procSockets counts the open sockets of pid.
func procSockets(pid int) int {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// goroutines reads go_goroutines from Caddy's metrics.
func goroutines(admin string) int {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return int(v)
		}
	}
	return -1
}

// runSoak: two nodes, cfg.users users, steady load on both plus an admin
// change every second, sampled every 10 s.
func runSoak(ctx context.Context, cfg config) error {
	e, err := setupEnv(ctx, cfg)
	defer e.close()
	if err != nil {
		return err
	}
	const churnUsers = 64
	fmt.Printf("seeding %d users (+%d for admin changes) into a private redis-server …\n", cfg.users, churnUsers)
	t0 := time.Now()
	users, err := bulkSeed(ctx, e.client, e.prefix, benchTenant, cfg.users+churnUsers, 16, 1, nil)
	if err != nil {
		return err
	}
	fmt.Printf("seeded in %v\n", time.Since(t0).Round(time.Millisecond))
	churn, steady := users[:churnUsers], users[churnUsers:]
	creds := make([]credential, len(steady))
	for i, u := range steady {
		creds[i] = credential{apiKey: u.key}
	}
	var nodes [2]*node
	for i := range nodes {
		if nodes[i], err = startNode(e.bin, e.dir, fmt.Sprintf("node%d", i+1), e.addr, e.prefix, e.upstream); err != nil {
			return err
		}
		defer nodes[i].proc.stop()
	}
	fmt.Printf("two nodes up; soak for %v: %d connections of steady load per node, an admin change every second\n", cfg.soak, cfg.conns)

	soakCtx, cancel := context.WithTimeout(ctx, cfg.soak)
	defer cancel()

	// Admin changes, one a second, on the churn users, alternating nodes:
	// create a key, check that both nodes accept it; revoke it, check both
	// refuse it within a second; disable the user; enable it again.
	var mu sync.Mutex
	changes, unexpectedAdmin := 0, []string{}
	adminDone := make(chan struct{})
	go func() {
		defer close(adminDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var keyID, key string
		for i := 0; ; i++ {
			select {
			case <-soakCtx.Done():
				return
			case <-tick.C:
			}
			n := nodes[i%2]
			u := churn[(i/4)%len(churn)]
			var problem string
			switch i % 4 {
			case 0:
				st, data, err := e.apiCall(n, http.MethodPost, "/v1/users/"+u.id+"/keys", map[string]any{
					"name": "churn-" + strconv.Itoa(i), "expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "tenant": benchTenant})
				var k struct{ ID, Key string }
				_ = json.Unmarshal(data, &k)
				keyID, key = k.ID, k.Key
				if err != nil || st != http.StatusCreated {
					problem = fmt.Sprintf("create key: %d %v %s", st, err, data)
				} else if waitBoth(nodes, key, http.StatusOK) != nil {
					problem = "new key not accepted by both nodes within 1s"
				}
			case 1:
				st, data, err := e.apiCall(n, http.MethodDelete, "/v1/users/"+u.id+"/keys/"+keyID, nil)
				if err != nil || st != http.StatusOK {
					problem = fmt.Sprintf("revoke key: %d %v %s", st, err, data)
				} else if err := waitBoth(nodes, key, http.StatusUnauthorized); err != nil {
					problem = "revoked key: " + err.Error()
				}
			case 2, 3:
				status := map[int]string{2: "INACTIVE", 3: "ACTIVE"}[i%4]
				st, data, err := e.apiCall(n, http.MethodPatch, "/v1/users/"+u.id, map[string]any{"status": status})
				if err != nil || st != http.StatusOK {
					problem = fmt.Sprintf("user %s: %d %v %s", status, st, err, data)
				}
			}
			mu.Lock()
			changes++
			if problem != "" {
				unexpectedAdmin = append(unexpectedAdmin, problem)
			}
			mu.Unlock()
		}
	}()

	var series []sample
	start := time.Now()
	fmt.Printf("%6s %10s %10s %6s %6s %7s %7s %11s %8s %9s %8s %8s %7s\n", "t", "rss1 KiB", "rss2 KiB", "gor1", "gor2",
		"socks1", "socks2", "redis mem", "clients", "requests", "p99", "unexp", "changes")
	for soakCtx.Err() == nil {
		win := min(10*time.Second, time.Until(start.Add(cfg.soak)))
		if win < time.Second {
			break
		}
		var res [2]*loadResult
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() { res[i] = runLoad(nodes[i].gateway+"/soak", creds, false, cfg.conns, win) })
		}
		wg.Wait()
		s := sample{at: time.Since(start).Round(time.Second)}
		var lat hist
		for i, n := range nodes {
			s.rss[i] = procRSS(n.proc.pid())
			s.goroutines[i] = goroutines(n.admin)
			s.sockets[i] = procSockets(n.proc.pid())
			s.requests += res[i].requests
			for st, c := range res[i].byStatus {
				if st != http.StatusOK {
					s.unexpected += c
				}
			}
			s.unexpected += res[i].errors
			lat.merge(&res[i].lat)
		}
		s.p99 = lat.quantile(.99)
		for i := range nodes {
			for st, c := range res[i].byStatus {
				if st != http.StatusOK {
					fmt.Printf("  node%d: %d × status %d\n", i+1, c, st)
				}
			}
			if res[i].errors > 0 {
				fmt.Printf("  node%d: %d transport errors\n", i+1, res[i].errors)
			}
		}
		mem, _ := strconv.ParseInt(redisInfoField(ctx, e.client, "memory", "used_memory"), 10, 64)
		s.redisMem = mem
		s.redisClients, _ = strconv.Atoi(redisInfoField(ctx, e.client, "clients", "connected_clients"))
		mu.Lock()
		s.changes = changes
		mu.Unlock()
		series = append(series, s)
		fmt.Printf("%6v %10d %10d %6d %6d %7d %7d %11d %8d %9d %8v %8d %7d\n", s.at, s.rss[0], s.rss[1], s.goroutines[0],
			s.goroutines[1], s.sockets[0], s.sockets[1], s.redisMem, s.redisClients, s.requests,
			s.p99.Round(100*time.Microsecond), s.unexpected, s.changes)
	}
	cancel()
	<-adminDone
	var total, unexpected uint64
	for _, s := range series {
		total += s.requests
		unexpected += s.unexpected
	}
	fmt.Printf("soak: %v, %d requests, %d unexpected statuses on the steady load, %d admin changes, %d unexpected admin outcomes\n",
		time.Since(start).Round(time.Second), total, unexpected, changes, len(unexpectedAdmin))
	for _, p := range unexpectedAdmin[:min(len(unexpectedAdmin), 10)] {
		fmt.Println("  admin:", p)
	}
	if len(series) >= 3 {
		first, last := series[1], series[len(series)-1] // the first window includes the warm-up of the caches
		fmt.Printf("drift from the 2nd sample to the last: rss %+d/%+d KiB, goroutines %+d/%+d, sockets %+d/%+d, redis memory %+d B\n",
			last.rss[0]-first.rss[0], last.rss[1]-first.rss[1], last.goroutines[0]-first.goroutines[0],
			last.goroutines[1]-first.goroutines[1], last.sockets[0]-first.sockets[0], last.sockets[1]-first.sockets[1],
			last.redisMem-first.redisMem)
	}
	if unexpected > 0 || len(unexpectedAdmin) > 0 {
		return fmt.Errorf("soak: %d unexpected statuses, %d unexpected admin outcomes", unexpected, len(unexpectedAdmin))
	}
	return nil
}

// waitBoth polls both nodes until each answers key with want, at most 1 s.
func waitBoth(nodes [2]*node, key string, want int) error {
	deadline := time.Now().Add(time.Second)
	for _, n := range nodes {
		for {
			got := gatewayStatus(n, key)
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s answered %d, want %d, after 1s", n.gateway, got, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// runScale seeds cfg.scale users into a private redis-server and measures
// seed time, Redis memory per user, a node's start-up, cold and warm key
// lookups, and a late page of GET /v1/users.
func runScale(ctx context.Context, cfg config) error {
	e, err := setupEnv(ctx, cfg)
	defer e.close()
	if err != nil {
		return err
	}
	before, _ := strconv.ParseInt(redisInfoField(ctx, e.client, "memory", "used_memory"), 10, 64)
	n := cfg.scale
	fmt.Printf("seeding %d users (user, permission, access key each, through the store's code, pipelined) …\n", n)
	t0 := time.Now()
	users, err := bulkSeed(ctx, e.client, e.prefix, benchTenant, n, 96, max(n/2000, 1), func(done int) {
		fmt.Printf("  %d users after %v\n", done, time.Since(t0).Round(time.Second))
	})
	if err != nil {
		return err
	}
	seedTime := time.Since(t0)
	after, _ := strconv.ParseInt(redisInfoField(ctx, e.client, "memory", "used_memory"), 10, 64)
	dbsize, _ := e.client.DBSize(ctx).Result()
	fmt.Printf("seeded %d users in %v (%.0f users/s); Redis used_memory %d → %d B: %.0f B per user; %d keys\n",
		n, seedTime.Round(time.Millisecond), float64(n)/seedTime.Seconds(), before, after, float64(after-before)/float64(n), dbsize)

	nd, err := startNode(e.bin, e.dir, "node1", e.addr, e.prefix, e.upstream)
	if err != nil {
		return err
	}
	defer nd.proc.stop()
	fmt.Printf("node start-up (exec to first gateway answer): %v\n", nd.started.Round(time.Millisecond))

	measure := func(what string) error {
		var lat []time.Duration
		bad := map[int]int{}
		for _, u := range users {
			t := time.Now()
			st := gatewayStatus(nd, u.key)
			lat = append(lat, time.Since(t))
			if st != http.StatusOK {
				bad[st]++
			}
		}
		slices.Sort(lat)
		q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		fmt.Printf("%s key lookups through the gateway (%d users, one at a time): p50 %v p99 %v max %v; non-200: %v\n",
			what, len(lat), q(.5).Round(time.Microsecond), q(.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond), bad)
		if len(bad) > 0 {
			return fmt.Errorf("%s lookups: non-200 answers %v", what, bad)
		}
		return nil
	}
	if err := measure("cold"); err != nil {
		return err
	}
	if err := measure("warm"); err != nil {
		return err
	}

	const size = 100
	for _, page := range []int{1, n / size / 2, n/size - 1, n / size} {
		if page < 1 {
			continue
		}
		var took []time.Duration
		var st int
		var data json.RawMessage
		for range 5 {
			t := time.Now()
			st, data, err = e.apiCall(nd, http.MethodGet, fmt.Sprintf("/v1/users?page=%d&size=%d", page, size), nil)
			took = append(took, time.Since(t))
			if err != nil || st != http.StatusOK {
				return fmt.Errorf("GET /v1/users?page=%d: %d %v %.200s", page, st, err, data)
			}
		}
		slices.Sort(took)
		var got []json.RawMessage
		_ = json.Unmarshal(data, &got)
		fmt.Printf("GET /v1/users?page=%d&size=%d: median %v (min %v, max %v) over 5, %d users on the page\n",
			page, size, took[2].Round(time.Microsecond), took[0].Round(time.Microsecond), took[4].Round(time.Microsecond), len(got))
	}
	fmt.Printf("node RSS after the lookups: %d KiB; Redis %s\n", procRSS(nd.proc.pid()), redisInfoField(ctx, e.client, "server", "redis_version"))
	return nil
}
