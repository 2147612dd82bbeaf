// Command bench compares keygate with bare Caddy on the same upstream:
// it builds ./cmd/keygate, uses the Redis at REDIS_URL (or starts its own
// redis-server on a spare port when none answers), seeds 10,000 users with
// one access key each under a fresh key prefix, starts one Caddy process
// with five sites and a small upstream, and loads each scenario in turn,
// over several repeats with the order rotated, with a bounded load
// generator on 127.0.0.1:
//
//	bare     Caddy reverse_proxy, no keygate
//	headers  Caddy reverse_proxy doing keygate's default header work without
//	         keygate: the credential header removed, the 3 identity headers
//	         (X-Auth-User-Id, -Tenant, -Role) added to the upstream request
//	         and the 2 RateLimit fields to the response (Caddy's
//	         request_header and header), as a control for what those headers
//	         alone cost the proxy, the upstream and the client
//	key      keygate, access key + exact Redis per-user limit (fail_closed,
//	         never reached), a key of the 10,000 users at random per request
//	hot      the key route with a single user's key: one hot key
//	signed   keygate, wallee MAC (HMAC-SHA512) signed requests + the same limit
//	limited  keygate, access key, ~10% of the requests over their user's limit
//
// It prints requests/s, p50, p99, Caddy CPU-µs per request (from
// /proc/<pid>/stat), Redis CPU-µs per request, the new upstream
// connections Caddy opened per 1,000 requests (the upstream counts the
// connections it accepts), and the ratios to bare Caddy and to the headers
// control, each the median of the ratios within a repeat (paired: both
// scenarios ran minutes apart at most), then (with -profile) a pprof top
// of Caddy under the key scenario. With -pin, Caddy runs on CPU 0 and the
// harness (load generator and upstream) and a private redis-server on the
// others, so that the gateway's core does the gateway's work only.
//
// Usage:
//
//	go run ./bench [-duration 10s] [-warmup 5s] [-conns 64] [-repeats 3] [-users 10000] [-pin -own-redis]
//
// Every process it starts is stopped by PID; its keys are deleted at the end.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
)

// benchMasterKey seals the seeded signing secrets (32 ASCII bytes:
// a benchmark fixture, never a real key).
const benchMasterKey = "YmVuY2htYXJrLW1hc3Rlci1rZXktMzItYnl0ZXMhISE="

type config struct {
	duration, warmup time.Duration
	conns, repeats   int
	users            int
	profile          time.Duration
	keygateOpts      string
	keep             bool
	ownRedis         bool
	pin              bool
	only             string
	globalOpts       string
	// soak and scale select the other modes (see runSoak, runScale).
	soak  time.Duration
	scale int
}

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of each measured run")
	flag.DurationVar(&cfg.warmup, "warmup", 5*time.Second, "unmeasured load before each run (long enough for quota leases to form: they are sized by a few seconds of each user's traffic)")
	flag.IntVar(&cfg.conns, "conns", 64, "concurrent keep-alive connections")
	flag.IntVar(&cfg.repeats, "repeats", 3, "interleaved repeats of every scenario")
	flag.IntVar(&cfg.users, "users", 10000, "seeded users (one access key each)")
	flag.DurationVar(&cfg.profile, "profile", 10*time.Second, "CPU profile length of Caddy under the key scenario (0: none)")
	flag.StringVar(&cfg.keygateOpts, "keygate-opts", "", "extra lines for the keygate global option block (e.g. a limiter batching option, when the module has one)")
	flag.BoolVar(&cfg.ownRedis, "own-redis", false, "start a private redis-server even when REDIS_URL answers (Redis CPU then counts keygate's calls only)")
	flag.BoolVar(&cfg.pin, "pin", false, "run Caddy on CPU 0 and everything else (harness, upstream, a private redis-server) on the other CPUs; implies -own-redis")
	flag.StringVar(&cfg.only, "only", "", "comma-separated scenarios to run (bare and headers always run: the ratios need them)")
	flag.StringVar(&cfg.globalOpts, "global-opts", "", "extra lines for Caddy's global option block (e.g. a log block)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (Caddyfile, logs, profile)")
	flag.DurationVar(&cfg.soak, "soak", 0, "instead of the comparison: soak two nodes for this long (with -users, -conns), sampling every 10 s")
	flag.IntVar(&cfg.scale, "scale", 0, "instead of the comparison: seed this many users and measure seed time, memory, start-up, cold lookups and late pages")
	flag.Parse()
	if cfg.duration <= 0 || cfg.conns <= 0 || cfg.repeats <= 0 || cfg.users < 10 {
		fmt.Fprintln(os.Stderr, "bench: -duration, -conns, -repeats must be positive and -users at least 10")
		os.Exit(2)
	}
	if cfg.pin {
		cfg.ownRedis = true
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch {
	case cfg.soak > 0:
		err = runSoak(ctx, cfg)
	case cfg.scale > 0:
		err = runScale(ctx, cfg)
	default:
		err = run(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// scenario is one site of the Caddy process under load.
type scenario struct {
	name   string
	port   int
	signed bool
	creds  []credential
	// results of every repeat
	runs []runStats
}

type runStats struct {
	load *loadResult
	// upstreamConns is how many connections the upstream accepted.
	upstreamConns int64
	caddyCPU      time.Duration
	redisCPU      time.Duration
	redisOK       bool
	hits          float64
	misses        float64
	allowed       float64
	leased        float64
	metricsOK     bool
}

func run(ctx context.Context, cfg config) error {
	tmp, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return err
	}
	if cfg.keep {
		fmt.Println("temporary directory:", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}

	fmt.Println("building ./cmd/keygate …")
	bin, err := buildKeygate(tmp)
	if err != nil {
		return err
	}
	var gatewayCPUs, restCPUs string
	if cfg.pin {
		if gatewayCPUs, restCPUs, err = cpuSplit(); err != nil {
			return err
		}
		if err := pinSelf(restCPUs); err != nil {
			return err
		}
		fmt.Printf("pinned: Caddy on CPU %s; harness, upstream and redis-server on CPU %s\n", gatewayCPUs, restCPUs)
	}

	// Redis: REDIS_URL (default local 6379), else a private redis-server.
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return fmt.Errorf("REDIS_URL %q: %w", url, err)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err = client.Ping(pctx).Err()
	cancel()
	if cfg.ownRedis && err == nil {
		err = errors.New("-own-redis")
	}
	if err != nil {
		fmt.Printf("not using the Redis at %s (%v): starting a private redis-server\n", opt.Addr, err)
		rp, addr, err := startRedis(tmp, restCPUs)
		if err != nil {
			return err
		}
		defer rp.stop()
		client.Close()
		opt = &redis.Options{Addr: addr}
		client = redis.NewClient(opt)
		deadline := time.Now().Add(10 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := client.Ping(pctx).Err()
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("private redis-server on %s: %w", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	prefix := "kgbench:" + randomHex(6) + ":"
	defer deletePrefix(client, prefix)
	redisVersion := redisInfoField(ctx, client, "server", "redis_version")

	// Seed 10,000 users before Caddy starts.
	raw, err := keys.ParseMasterKey(benchMasterKey)
	if err != nil {
		return err
	}
	sealer, err := keys.NewSealer(raw)
	if err != nil {
		return err
	}
	plan := seedPlan{users: cfg.users, signed: max(cfg.users/10, 1), limited: cfg.users / 10, bigLimit: 1_000_000_000}
	fmt.Printf("seeding %d users (%d with a signing secret, %d limited on the limited route) under %s …\n",
		plan.users, plan.signed, plan.limited, prefix)
	t0 := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	data, err := seed(sctx, client, opt.Addr, prefix, sealer, plan, 16)
	cancel()
	if err != nil {
		return err
	}
	fmt.Printf("seeded in %v\n", time.Since(t0).Round(time.Millisecond))

	// Upstream: a tiny Go HTTP server answering 200 "ok", counting the
	// connections Caddy opens to it.
	rawLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ln := &countingListener{Listener: rawLn}
	upSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok\n")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = upSrv.Serve(ln) }()
	defer upSrv.Close()

	all := []*scenario{
		{name: "bare", creds: data.keys},
		{name: "headers", creds: data.keys},
		{name: "key", creds: data.keys},
		{name: "hot", creds: data.keys[:1]},
		{name: "signed", creds: data.signers, signed: true},
		{name: "limited", creds: data.keys},
	}
	port := map[string]int{}
	for _, s := range all {
		site := s.name
		if site == "hot" {
			site = "key" // the key route, with one key
		}
		if port[site] == 0 {
			if port[site], err = freePort(); err != nil {
				return err
			}
		}
		s.port = port[site]
	}
	scen, err := selectScenarios(all, cfg.only)
	if err != nil {
		return err
	}
	adminPort, err := freePort()
	if err != nil {
		return err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", adminPort)
	caddyfile := fmt.Sprintf(`{
	admin %[1]s
	auto_https off
	persist_config off
	metrics
	%[12]s
	keygate {
		store redis {
			address %[2]s
			prefix %[3]s
		}
		master_key %[4]s
		%[5]s
	}
}
http://127.0.0.1:%[6]d {
	reverse_proxy %[10]s
}
http://127.0.0.1:%[7]d {
	keygate {
		tenant bench
		schemes access_key
		limit 1000000000
		on_store_error fail_closed
	}
	reverse_proxy %[10]s
}
http://127.0.0.1:%[8]d {
	keygate {
		tenant bench
		schemes wallee_mac
		limit 1000000000
		on_store_error fail_closed
	}
	reverse_proxy %[10]s
}
http://127.0.0.1:%[9]d {
	keygate {
		tenant bench
		schemes access_key
		limit 1
		on_store_error fail_closed
	}
	reverse_proxy %[10]s
}
http://127.0.0.1:%[11]d {
	request_header -X-Api-Key
	request_header X-Auth-User-Id 123456789012345
	request_header X-Auth-Tenant bench
	request_header X-Auth-Role MEMBER
	header RateLimit-Policy "\"user\";q=1000000000;w=120"
	header RateLimit "\"user\";r=999999990;t=120"
	reverse_proxy %[10]s
}
`, admin, opt.Addr, prefix, benchMasterKey, cfg.keygateOpts,
		port["bare"], port["key"], port["signed"], port["limited"], ln.Addr().String(), port["headers"], cfg.globalOpts)
	if opt.Password != "" || opt.Username != "" || opt.DB != 0 {
		return errors.New("REDIS_URL with a password, user or db is not supported by the harness")
	}
	cfPath := filepath.Join(tmp, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	cmd := pinned(gatewayCPUs, bin, "run", "--config", cfPath, "--adapter", "caddyfile")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+tmp, "XDG_CONFIG_HOME="+tmp, "HOME="+tmp)
	caddy, err := start("keygate", cmd, filepath.Join(tmp, "caddy.log"))
	if err != nil {
		return err
	}
	defer caddy.stop()
	for _, s := range all {
		if err := waitHTTP(caddy, s.url(), 30*time.Second); err != nil {
			return fmt.Errorf("%w; log in %s (use -keep)", err, filepath.Join(tmp, "caddy.log"))
		}
	}

	// Warm the caches: every key once through the key route, every signer
	// through the signed route.
	fmt.Println("warming caches …")
	if err := warm(byName(all, "key"), byName(all, "signed"), cfg.conns); err != nil {
		return err
	}

	fmt.Printf("load: %d connections, %v per run after %v warm-up, %d repeats, order rotated\n",
		cfg.conns, cfg.duration, cfg.warmup, cfg.repeats)
	for r := range cfg.repeats {
		for i := range scen {
			s := scen[(i+r)%len(scen)]
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if cfg.warmup > 0 {
				runLoad(s.url(), s.creds, s.signed, cfg.conns, cfg.warmup)
			}
			st := measure(ctx, s, caddy.pid(), client, admin, ln, cfg)
			s.runs = append(s.runs, st)
			fmt.Printf("  repeat %d %-8s %8.0f req/s  p50 %-9v p99 %-9v caddy %5.1f µs/req  upstream conns %5.1f/1000  statuses %v errors %d\n",
				r+1, s.name, rps(st.load), st.load.lat.quantile(.5).Round(time.Microsecond),
				st.load.lat.quantile(.99).Round(time.Microsecond), perReq(st.caddyCPU, st.load.requests),
				perThousand(st.upstreamConns, st.load.requests), st.load.byStatus, st.load.errors)
		}
	}

	printTable(os.Stdout, scen)
	printMachine(os.Stdout, redisVersion)

	if key := byName(scen, "key"); cfg.profile > 0 && key != nil {
		if err := profile(ctx, key, bin, admin, tmp, cfg); err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
		}
	}
	return nil
}

func (s *scenario) url() string { return fmt.Sprintf("http://127.0.0.1:%d/bench", s.port) }

// selectScenarios returns the scenarios named in only (all when empty),
// always with bare first and headers second.
func selectScenarios(all []*scenario, only string) ([]*scenario, error) {
	if only == "" {
		return all, nil
	}
	out := []*scenario{all[0], all[1]}
	for name := range strings.SplitSeq(only, ",") {
		s := byName(all, strings.TrimSpace(name))
		if s == nil {
			return nil, fmt.Errorf("-only: no scenario %q", name)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func byName(scen []*scenario, name string) *scenario {
	for _, s := range scen {
		if s.name == name {
			return s
		}
	}
	return nil
}

func measure(ctx context.Context, s *scenario, pid int, rc redis.UniversalClient, admin string, up *countingListener, cfg config) runStats {
	var st runStats
	k0, mok0 := scrape(admin)
	r0, rerr0 := redisCPU(ctx, rc)
	c0, _ := procCPU(pid)
	u0 := up.accepted.Load()
	st.load = runLoad(s.url(), s.creds, s.signed, cfg.conns, cfg.duration)
	st.upstreamConns = up.accepted.Load() - u0
	c1, _ := procCPU(pid)
	r1, rerr1 := redisCPU(ctx, rc)
	k1, mok1 := scrape(admin)
	st.caddyCPU = c1 - c0
	st.redisCPU, st.redisOK = r1-r0, rerr0 == nil && rerr1 == nil
	st.hits, st.misses, st.metricsOK = k1.hits-k0.hits, k1.misses-k0.misses, mok0 && mok1
	st.allowed, st.leased = k1.allowed-k0.allowed, k1.leased-k0.leased
	return st
}

// warm sends one request per credential of the key and signed scenarios.
func warm(key, signed *scenario, conns int) error {
	for _, s := range []*scenario{key, signed} {
		work := make(chan int)
		errs := make(chan error, conns)
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns}}
		for range conns {
			go func() {
				mac := newMACSigner()
				var first error
				for i := range work {
					// A loaded box may time out a store read (503): retry a few times.
					var err error
					for range 3 {
						req, _ := http.NewRequest(http.MethodGet, s.url(), nil)
						if s.signed {
							mac.sign(req, &s.creds[i], "/bench")
						} else {
							req.Header.Set("X-Api-Key", s.creds[i].apiKey)
						}
						var resp *http.Response
						if resp, err = client.Do(req); err != nil {
							continue
						}
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == http.StatusOK {
							break
						}
						err = fmt.Errorf("%s: warm-up request answered %d", s.name, resp.StatusCode)
					}
					if first == nil {
						first = err
					}
				}
				errs <- first
			}()
		}
		for i := range s.creds {
			work <- i
		}
		close(work)
		for range conns {
			if err := <-errs; err != nil {
				return err
			}
		}
	}
	return nil
}

// kgMetrics are the keygate counters the harness reads.
type kgMetrics struct {
	hits, misses    float64 // cache lookups
	allowed, leased float64 // limiter: allowed, and of those from a lease
}

// scrape reads keygate's counters from the admin endpoint's /metrics.
func scrape(admin string) (kgMetrics, bool) {
	var m kgMetrics
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return m, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return m, false
	}
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(line, "caddy_keygate_") {
			continue
		}
		var v float64
		f := strings.Fields(line)
		fmt.Sscan(f[len(f)-1], &v)
		switch {
		case strings.HasPrefix(line, `caddy_keygate_cache_lookups_total{result="hit"}`):
			m.hits = v
		case strings.HasPrefix(line, `caddy_keygate_cache_lookups_total{result="miss"}`):
			m.misses = v
		case strings.HasPrefix(line, `caddy_keygate_ratelimit_decisions_total{decision="allowed"}`):
			m.allowed = v
		case strings.HasPrefix(line, `caddy_keygate_ratelimit_leased_total `):
			m.leased = v
		}
	}
	return m, true
}

func rps(l *loadResult) float64 { return float64(l.requests) / l.elapsed.Seconds() }

func perThousand(x int64, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return 1000 * float64(x) / float64(n)
}

func perReq(d time.Duration, n uint64) float64 {
	if n == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(n)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func printTable(w io.Writer, scen []*scenario) {
	type row struct {
		rpsMed, rpsMin, rpsMax float64
		p50, p99               time.Duration
		cpu, redis             float64
		redisOK                bool
		missPct, leasedPct     float64
		metricsOK              bool
		non2xx                 float64
		conns                  float64
	}
	rows := make([]row, len(scen))
	for i, s := range scen {
		var all hist
		var rs []float64
		var cpu, rcpu time.Duration
		var n, bad uint64
		var conns int64
		var hits, misses, allowed, leased float64
		r := row{redisOK: true, metricsOK: true}
		for _, st := range s.runs {
			rs = append(rs, rps(st.load))
			all.merge(&st.load.lat)
			cpu += st.caddyCPU
			rcpu += st.redisCPU
			conns += st.upstreamConns
			r.redisOK = r.redisOK && st.redisOK
			r.metricsOK = r.metricsOK && st.metricsOK
			n += st.load.requests
			hits += st.hits
			misses += st.misses
			allowed += st.allowed
			leased += st.leased
			for code, c := range st.load.byStatus {
				if code < 200 || code > 299 {
					bad += c
				}
			}
		}
		r.rpsMed, r.rpsMin, r.rpsMax = median(rs), slices.Min(rs), slices.Max(rs)
		r.p50, r.p99 = all.quantile(.5), all.quantile(.99)
		r.cpu, r.redis = perReq(cpu, n), perReq(rcpu, n)
		r.conns = perThousand(conns, n)
		if hits+misses > 0 {
			r.missPct = 100 * misses / (hits + misses)
		}
		if allowed > 0 {
			r.leasedPct = 100 * leased / allowed
		}
		if n > 0 {
			r.non2xx = 100 * float64(bad) / float64(n)
		}
		rows[i] = r
	}
	// scen[0] is bare and scen[1] the headers control (selectScenarios).
	base, ctl := rows[0], rows[1]
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treq/s (median)\tmin–max\tp50\tp99\tCaddy CPU-µs/req\tΔ CPU-µs vs bare\tΔ vs headers\tRedis CPU-µs/req\tupstream conns/1000\tcache miss %\tleased %\tnon-2xx %\t× bare (paired)\t× headers (paired)\t")
	for i, s := range scen {
		r := rows[i]
		redisCol := fmt.Sprintf("%.1f", r.redis)
		if !r.redisOK {
			redisCol = "n/a"
		}
		missCol, leasedCol := fmt.Sprintf("%.2f", r.missPct), fmt.Sprintf("%.1f", r.leasedPct)
		if i < 2 || !r.metricsOK {
			missCol, leasedCol = "–", "–"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f–%.0f\t%v\t%v\t%.1f\t%+.1f\t%+.1f\t%s\t%.1f\t%s\t%s\t%.1f\t%.3f\t%.3f\t\n",
			s.name, r.rpsMed, r.rpsMin, r.rpsMax, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond),
			r.cpu, r.cpu-base.cpu, r.cpu-ctl.cpu, redisCol, r.conns, missCol, leasedCol, r.non2xx,
			pairedRatio(s, scen[0]), pairedRatio(s, scen[1]))
	}
	tw.Flush()
}

// pairedRatio is the median over the repeats of s's req/s divided by
// ref's in the same repeat.
func pairedRatio(s, ref *scenario) float64 {
	var xs []float64
	for i := range min(len(s.runs), len(ref.runs)) {
		if d := rps(ref.runs[i].load); d > 0 {
			xs = append(xs, rps(s.runs[i].load)/d)
		}
	}
	if len(xs) == 0 {
		return 0
	}
	return median(xs)
}

func printMachine(w io.Writer, redisVersion string) {
	model := "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "unknown"
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		mem = strings.Join(strings.Fields(line)[1:], " ")
	}
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(data))[:3], " ")
	}
	gov, _ := exec.Command("go", "version").Output()
	fmt.Fprintf(w, "\nmachine: %d CPUs (%s), MemTotal %s, load average %s, %s, Redis %s\n",
		numCPU(), model, mem, load, strings.TrimSpace(string(gov)), redisVersion)
}

// numCPU is the machine's CPU count (not the harness's affinity: under
// -pin the harness runs on fewer).
func numCPU() int {
	data, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	// A list such as "0-1" or "0,2-3".
	n := 0
	for part := range strings.SplitSeq(strings.TrimSpace(string(data)), ",") {
		lo, hi, found := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if found {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || b < a {
			return runtime.NumCPU()
		}
		n += b - a + 1
	}
	return n
}

func redisInfoField(ctx context.Context, c redis.UniversalClient, section, field string) string {
	info, err := c.Info(ctx, section).Result()
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && k == field {
			return v
		}
	}
	return "unknown"
}

// profile captures a CPU profile of Caddy while s runs under load and
// prints the top entries.
func profile(ctx context.Context, s *scenario, bin, admin, dir string, cfg config) error {
	fmt.Printf("\nprofiling Caddy for %v under the %s scenario …\n", cfg.profile, s.name)
	done := make(chan *loadResult, 1)
	go func() { done <- runLoad(s.url(), s.creds, s.signed, cfg.conns, cfg.profile+2*time.Second) }()
	time.Sleep(time.Second)
	client := &http.Client{Timeout: cfg.profile + 30*time.Second}
	resp, err := client.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(cfg.profile.Seconds())))
	if err != nil {
		<-done
		return err
	}
	defer resp.Body.Close()
	prof, err := io.ReadAll(resp.Body)
	<-done
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("pprof endpoint: %s: %s", resp.Status, bytes.TrimSpace(prof))
	}
	path := filepath.Join(dir, "cpu.pprof")
	if err := os.WriteFile(path, prof, 0o600); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=30", bin, path)
	out, err := cmd.CombinedOutput()
	fmt.Printf("%s", out)
	if err != nil {
		return err
	}
	cmd = exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=40", bin, path)
	out, err = cmd.CombinedOutput()
	fmt.Printf("\ncumulative:\n%s", out)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
