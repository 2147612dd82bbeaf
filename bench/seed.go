package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/redisstore"
)

// benchTenant is the tenant every seeded user holds an ACTIVE permission in.
const benchTenant = "bench"

// seedPlan says how many users to create and how.
type seedPlan struct {
	users   int // users, one access key each
	signed  int // of which the first `signed` also get a signing secret
	limited int // of which the last `limited` have no requestLimit of their own
	// bigLimit is the requestLimit of the other users: high enough that
	// nothing is ever rejected.
	bigLimit int64
}

// seeded is what the load generator needs of the seeded store.
type seeded struct {
	keys    []credential // every user's access key
	signers []credential // the users with a signing secret
}

// seed writes the tenant, users, permissions, keys and secrets straight
// into the Redis store under prefix (the same store code the gateway uses,
// with no pepper, so the hashes match), with workers in parallel.
func seed(ctx context.Context, client redis.UniversalClient, addr, prefix string, sealer *keys.Sealer, plan seedPlan, workers int) (*seeded, error) {
	store := redisstore.NewStore(client, redisstore.Options{Addrs: []string{addr}, Prefix: prefix, Timeout: 2 * time.Second}, keys.StoreOptions{})
	// Not closed: Close would close the shared client.
	if _, err := store.CreateTenant(ctx, keys.Tenant{ID: benchTenant, Name: "Bench"}, "bench"); err != nil {
		return nil, fmt.Errorf("creating tenant: %w", err)
	}
	hasher := keys.NewHasher(nil)
	out := &seeded{keys: make([]credential, plan.users), signers: make([]credential, plan.signed)}
	expires := time.Now().Add(24 * time.Hour)

	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= plan.users || ctx.Err() != nil {
					return
				}
				if err := seedUser(ctx, store, hasher, sealer, plan, i, expires, out); err != nil {
					errs <- fmt.Errorf("seeding user %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	// APPLICATION users sign and hold no access key (the default credential
	// policy): the key scenarios use the SERVICE users only.
	out.keys = slices.DeleteFunc(out.keys, func(c credential) bool { return c.apiKey == "" })
	return out, ctx.Err()
}

func seedUser(ctx context.Context, store keys.Store, hasher *keys.Hasher, sealer *keys.Sealer, plan seedPlan, i int, expires time.Time, out *seeded) error {
	limit := plan.bigLimit
	if i >= plan.users-plan.limited {
		limit = 0 // the route's default applies
	}
	typ := keys.UserService
	if i < plan.signed {
		typ = keys.UserApplication
	}
	u, err := store.CreateUser(ctx, keys.User{
		Name: fmt.Sprintf("bench-%05d", i), Type: typ, Role: keys.RoleMember,
		PrimaryTenant: benchTenant, RequestLimit: limit,
	}, "bench")
	if err != nil {
		return err
	}
	if _, _, err := store.PutPermission(ctx, keys.Permission{
		UserID: u.ID, TenantID: benchTenant, Role: keys.RoleMember, Status: keys.PermissionActive,
	}, "bench"); err != nil {
		return err
	}
	if i >= plan.signed {
		plain, k := keys.NewAccessKey(hasher, u.ID, benchTenant, "bench", expires)
		if _, err := store.CreateKey(ctx, k, "bench"); err != nil {
			return err
		}
		out.keys[i] = credential{apiKey: plain}
	} else {
		value := keys.NewSigningSecret()
		id := keys.NewID()
		if _, err := store.CreateSecret(ctx, keys.Secret{
			ID: id, UserID: u.ID, Name: "bench", Status: keys.SecretActive,
			Sealed: sealer.Seal([]byte(value), keys.SecretAAD(u.ID, id)),
		}, "bench"); err != nil {
			return err
		}
		raw, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			return err
		}
		out.signers[i] = credential{userID: u.ID, secret: raw}
	}
	return nil
}
