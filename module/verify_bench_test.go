package module_test

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// BenchmarkVerifyLatency measures POST /v1/verify beside a request through
// the gateway with the same key, one call at a time over loopback, on the
// file store and on Redis, and reports p50 and p99 in microseconds:
//
//	go test -run '^$' -bench BenchmarkVerifyLatency -benchtime 3000x ./module/
func BenchmarkVerifyLatency(b *testing.B) {
	for _, store := range []string{"file", "redis"} {
		b.Run(store, func(b *testing.B) {
			global := ""
			if store == "redis" {
				_, prefix := testredis.Client(b)
				global = signedRedisGlobal(testredis.Options(b).Addr, prefix)
			}
			e := startEnv(b, global, "")
			_, _, key := e.newUserKey("acme", "bench", time.Now().Add(time.Hour))
			body := []byte(`{"key":"` + key + `"}`)
			do := func(req *http.Request) int {
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			verify := func() int {
				req, _ := http.NewRequest(http.MethodPost, e.adminURL+"/v1/verify", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+e.adminKey)
				req.Header.Set("Content-Type", "application/json")
				return do(req)
			}
			gateway := func() int {
				req, _ := http.NewRequest(http.MethodGet, e.gateway+"/x", nil)
				req.Header.Set("X-Api-Key", key)
				return do(req)
			}
			for name, call := range map[string]func() int{"verify": verify, "gateway": gateway} {
				b.Run(name, func(b *testing.B) {
					for range 50 { // warm caches and connections
						call()
					}
					lat := make([]time.Duration, 0, b.N)
					b.ResetTimer()
					for range b.N {
						start := time.Now()
						if st := call(); st != http.StatusOK {
							b.Fatalf("%s: %d", name, st)
						}
						lat = append(lat, time.Since(start))
					}
					b.StopTimer()
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				})
			}
		})
	}
}
