package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
)

// TestLayoutCeiling measures what the one-hash-tag layout costs the shard
// that holds the whole store: Redis memory per user (a SERVICE user with an
// ACTIVE permission, one access key, and their history and indexes), the
// admin write rate (users created per second, 8 writers), and a cold key
// lookup, on a private redis-server. It uses KEYGATE_LAYOUT_USERS users
// (default 2000, so CI stays quick) and logs the figures with their
// extrapolation to one million users; see the package doc, "One hash tag".
func TestLayoutCeiling(t *testing.T) {
	users := 2000
	if v := os.Getenv("KEYGATE_LAYOUT_USERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 100 {
			t.Fatalf("KEYGATE_LAYOUT_USERS=%q: want a number >= 100", v)
		}
		users = n
	}
	srv := testredis.StartServer(t)
	client := srv.Client()
	s := redisstore.NewStore(client, redisstore.Options{Timeout: time.Second}, keys.StoreOptions{})
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	if _, err := s.CreateTenant(ctx, keys.Tenant{ID: "acme", Name: "Acme"}, "test"); err != nil {
		t.Fatal(err)
	}
	usedMemory := func() int64 {
		info, err := client.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		t.Fatal("no used_memory in INFO")
		return 0
	}
	before := usedMemory()
	h := keys.NewHasher(nil)
	exp := time.Now().Add(24 * time.Hour)
	keyIDs := make([]string, users)
	start := time.Now()
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < users; i += writers {
				u, err := s.CreateUser(ctx, keys.User{Name: fmt.Sprintf("user-%07d", i), Type: keys.UserService,
					Role: keys.RoleMember, PrimaryTenant: "acme"}, "test")
				if err != nil {
					errs <- err
					return
				}
				_, k := keys.NewAccessKey(h, u.ID, "acme", "k", exp)
				if k, err = s.CreateKey(ctx, k, "test"); err != nil {
					errs <- err
					return
				}
				keyIDs[i] = k.ID
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seed := time.Since(start)
	perUser := float64(usedMemory()-before) / float64(users)

	// Cold lookups: what a node's cache miss costs (a node loads nothing
	// at start; it reads each key on its first use).
	var lat []time.Duration
	for i := 0; i < users; i += max(1, users/1000) {
		t0 := time.Now()
		if _, err := s.GetKey(ctx, keyIDs[i]); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	rate := float64(users) / seed.Seconds()
	t.Logf("%d users: %.0f bytes of Redis memory per user (→ %.2f GB for 1 M users on the one shard); "+
		"%.0f users created per second (user + key, %d writers; 1 M users in %.0f min); cold key lookup p50 %v p99 %v",
		users, perUser, perUser*1e6/1e9, rate, writers, 1e6/rate/60, lat[len(lat)/2], lat[len(lat)*99/100])
}
