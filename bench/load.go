package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha512"
	"encoding/base64"
	"io"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds: 64 sub-buckets
// per power of two (about 1.5% resolution), bounded memory.
type hist struct {
	counts [64 * 48]uint64
	n      uint64
}

func bucketOf(ns int64) int {
	if ns < 128 {
		return max(int(ns), 0)
	}
	e := bits.Len64(uint64(ns)) - 7
	return min(64*e+int(uint64(ns)>>e), 64*48-1)
}

// valueOf is the middle of bucket i.
func valueOf(i int) time.Duration {
	if i < 128 {
		return time.Duration(i)
	}
	e := i/64 - 1
	m := i - 64*e
	return time.Duration(m<<e + (1<<e)/2)
}

func (h *hist) add(d time.Duration) {
	h.counts[bucketOf(int64(d))]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the q-quantile (0 < q ≤ 1).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	want := uint64(q*float64(h.n) + 0.5)
	want = max(want, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= want {
			return valueOf(i)
		}
	}
	return valueOf(len(h.counts) - 1)
}

// credential is what one simulated client sends.
type credential struct {
	apiKey string // access key
	userID string // wallee MAC user id
	secret []byte // wallee MAC key (base64-decoded secret)
}

// loadResult is the outcome of one load run.
type loadResult struct {
	requests uint64
	byStatus map[int]uint64
	errors   uint64
	elapsed  time.Duration
	lat      hist
}

// runLoad sends GET url from conns keep-alive connections for d, each
// request with a credential picked at random from creds; it stops by
// itself after d.
func runLoad(url string, creds []credential, signed bool, conns int, d time.Duration) *loadResult {
	tr := &http.Transport{
		MaxConnsPerHost:     conns,
		MaxIdleConnsPerHost: conns,
		MaxIdleConns:        conns,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()

	path := pathOf(url)
	results := make([]*loadResult, conns)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conns {
		res := &loadResult{byStatus: map[int]uint64{}}
		results[w] = res
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			mac := newMACSigner()
			for ctx.Err() == nil {
				c := &creds[rng.IntN(len(creds))]
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				if signed {
					mac.sign(req, c, path)
				} else {
					req.Header["X-Api-Key"] = []string{c.apiKey}
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						res.errors++
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat := time.Since(t0)
				if ctx.Err() != nil {
					break // cut off by the deadline: not a complete sample
				}
				res.lat.add(lat)
				res.requests++
				res.byStatus[resp.StatusCode]++
			}
		}()
	}
	wg.Wait()
	total := &loadResult{byStatus: map[int]uint64{}, elapsed: time.Since(start)}
	for _, r := range results {
		total.requests += r.requests
		total.errors += r.errors
		total.lat.merge(&r.lat)
		for k, v := range r.byStatus {
			total.byStatus[k] += v
		}
	}
	return total
}

func pathOf(url string) string {
	// url is http://127.0.0.1:port/path
	n := 0
	for i := range len(url) {
		if url[i] == '/' {
			n++
			if n == 3 {
				return url[i:]
			}
		}
	}
	return "/"
}

// macSigner signs requests as the wallee SDKs do (x-mac-*, HMAC-SHA512
// over "1|userid|timestamp|METHOD|path"), one per worker goroutine.
type macSigner struct {
	buf []byte
}

func newMACSigner() *macSigner { return &macSigner{} }

func (s *macSigner) sign(req *http.Request, c *credential, path string) {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	s.buf = append(s.buf[:0], "1|"...)
	s.buf = append(s.buf, c.userID...)
	s.buf = append(s.buf, '|')
	s.buf = append(s.buf, ts...)
	s.buf = append(s.buf, "|GET|"...)
	s.buf = append(s.buf, path...)
	m := hmac.New(sha512.New, c.secret)
	m.Write(s.buf)
	req.Header["X-Mac-Version"] = []string{"1"}
	req.Header["X-Mac-Userid"] = []string{c.userID}
	req.Header["X-Mac-Timestamp"] = []string{ts}
	req.Header["X-Mac-Value"] = []string{base64.StdEncoding.EncodeToString(m.Sum(nil))}
}
