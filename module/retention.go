package module

import (
	"context"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
)

// RetentionConfig says how long keygate keeps users' history and the
// admin API's activity log; the purge sweep (purge_interval) removes what
// is older. A negative duration keeps entries forever (the Caddyfile's
// "forever").
type RetentionConfig struct {
	// History is how long history entries are kept. Default: forever
	// (as long as the user; a purged user's history goes with it).
	History caddy.Duration `json:"history,omitempty"`
	// Activity is how long activity log entries are kept. Default: 90
	// days (seed 003's log retention time).
	Activity caddy.Duration `json:"activity,omitempty"`
}

// retention returns the configured retention with its defaults.
func (a *App) retention() admin.Retention {
	r := admin.Retention{Activity: admin.DefaultActivityRetention}
	if c := a.Retention; c != nil {
		if c.History != 0 {
			r.History = time.Duration(c.History)
		}
		if c.Activity != 0 {
			r.Activity = time.Duration(c.Activity)
		}
	}
	return r
}

// sweepRetention removes the history and activity entries past retention.
func (a *App) sweepRetention(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	h, n, err := admin.PurgeExpired(sctx, a.shared.store, time.Now(), a.retention())
	if err != nil {
		a.logger.Warn("purging history and activity past retention", zap.Error(err))
	}
	if h > 0 || n > 0 {
		a.logger.Info("purged history and activity past retention", zap.Int("history", h), zap.Int("activity", n))
	}
}

// validateRetention refuses a retention shorter than a minute (a typo such
// as 90s for 90d would throw the logs away).
func (c *RetentionConfig) validate() error {
	if c == nil {
		return nil
	}
	for name, d := range map[string]caddy.Duration{"history": c.History, "activity": c.Activity} {
		if d > 0 && time.Duration(d) < time.Minute {
			return fmt.Errorf("retention %s %v: must be at least 1m (or forever)", name, time.Duration(d))
		}
	}
	return nil
}
