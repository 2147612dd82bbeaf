package module

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/keys/filestore"
	"github.com/keygate/keygate/keys/redisstore"
	"github.com/keygate/keygate/ratelimit"
)

// stores shares open stores between configurations, so a reload neither
// reopens the bbolt file (which the old config still holds locked) nor
// dials Redis again. Entries are reference-counted by Caddy's usage pool.
var stores = caddy.NewUsagePool()

// sharedStore is one open store and, for Redis, its client, with the
// in-process limiter and replay cache, whose state must survive reloads like
// the store's (a reload must not hand out fresh quota or make a used
// signature usable again).
type sharedStore struct {
	store  keys.Store
	redis  redisClient
	local  *ratelimit.Local
	replay auth.ReplayGuard

	mu        sync.Mutex
	resolvers map[*keys.Resolver]struct{} // the caches of the configs using this store
	// wakers are the event dispatchers to wake after a change.
	wakers map[*events.Dispatcher]struct{}
}

// Destruct closes the store when the last configuration using it is gone.
func (s *sharedStore) Destruct() error {
	var errs []error
	if s.local != nil {
		errs = append(errs, s.local.Close())
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.redis != nil {
		errs = append(errs, s.redis.Close())
	}
	return errors.Join(errs...)
}

// poolKey identifies a store by what makes it the same store.
func poolKey(sc StoreConfig) string {
	if sc.Backend == "file" {
		return "file\x00" + sc.Path
	}
	return strings.Join([]string{"redis", strings.Join(sc.Addresses, ","), sc.MasterName, sc.Username,
		sc.Password, strconv.Itoa(sc.DB), strconv.FormatBool(sc.TLS), sc.TLSCA, sc.TLSCert, sc.TLSKey,
		sc.TLSServerName, sc.Prefix, time.Duration(sc.Timeout).String()}, "\x00")
}

// acquireStore opens the store sc names, or takes another hold on it.
func acquireStore(sc StoreConfig) (*sharedStore, string, error) {
	key := poolKey(sc)
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := openStore(sc)
		if err != nil {
			return nil, err
		}
		s.local = ratelimit.NewLocal(ratelimit.LocalOptions{})
		if s.redis != nil {
			s.replay = auth.NewRedisReplayGuard(s.redis, sc.Prefix, time.Duration(sc.Timeout))
		} else {
			s.replay = auth.NewMemoryReplayGuard(sc.ReplayCache)
		}
		return s, nil
	})
	if err != nil {
		return nil, "", err
	}
	return val.(*sharedStore), key, nil
}

// openStore opens the store without pooling (the CLI uses it directly).
func openStore(sc StoreConfig) (*sharedStore, error) {
	s := &sharedStore{resolvers: make(map[*keys.Resolver]struct{})}
	sopts := keys.StoreOptions{OnCommit: s.committed}
	switch sc.Backend {
	case "redis":
		opts, err := redisOptions(sc)
		if err != nil {
			return nil, err
		}
		s.redis = redisstore.NewClient(opts)
		s.store = redisstore.NewStore(s.redis, opts, sopts)
	default:
		st, err := filestore.NewStore(sc.Path, filestore.Options{Timeout: time.Second}, sopts)
		if err != nil {
			if errors.Is(err, filestore.ErrLocked) {
				return nil, fmt.Errorf("%s is in use by another process (a running keygate?): %w", sc.Path, err)
			}
			return nil, err
		}
		s.store = st
	}
	return s, nil
}

// committed drops what a change made through this process touched from
// this process's caches before the change's call returns, so an admin API
// call is followed at once by the gateway on the same node (other nodes
// follow through pub/sub).
func (s *sharedStore) committed(inv keys.Invalidation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for r := range s.resolvers {
		r.Invalidate(inv)
	}
	for d := range s.wakers {
		d.Wake()
	}
}

// attach and detach register a config's resolver for committed.
func (s *sharedStore) attach(r *keys.Resolver) {
	s.mu.Lock()
	s.resolvers[r] = struct{}{}
	s.mu.Unlock()
}

func (s *sharedStore) detach(r *keys.Resolver) {
	s.mu.Lock()
	delete(s.resolvers, r)
	s.mu.Unlock()
}

// redisOptions builds the client options of sc, reading its TLS files.
func redisOptions(sc StoreConfig) (redisstore.Options, error) {
	tc, err := redisTLS(sc)
	if err != nil {
		return redisstore.Options{}, err
	}
	return redisstore.Options{
		Addrs:      sc.Addresses,
		MasterName: sc.MasterName,
		Username:   sc.Username,
		Password:   sc.Password,
		DB:         sc.DB,
		TLS:        sc.TLS,
		TLSConfig:  tc,
		Prefix:     sc.Prefix,
		Timeout:    time.Duration(sc.Timeout),
	}, nil
}

// redisTLS is the TLS configuration of the tls_* options, or nil when none
// is set (then TLS, if on, verifies against the system roots).
func redisTLS(sc StoreConfig) (*tls.Config, error) {
	if sc.TLSCA == "" && sc.TLSCert == "" && sc.TLSKey == "" && sc.TLSServerName == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: sc.TLSServerName}
	if sc.TLSCA != "" {
		pem, err := os.ReadFile(sc.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("store redis: reading tls_ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("store redis: tls_ca %s holds no PEM certificate", sc.TLSCA)
		}
	}
	if (sc.TLSCert == "") != (sc.TLSKey == "") {
		return nil, errors.New("store redis: tls_cert and tls_key go together")
	}
	if sc.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(sc.TLSCert, sc.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("store redis: loading tls_cert and tls_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
