package module

import (
	"reflect"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// The warnings keygate logs once per start about the HTTP servers that
// carry its routes: access logs that would write credentials, and servers
// on which a client can trickle a signed body for as long as it likes.

// startWarnings runs the warnings over the config's HTTP servers.
func (a *App) startWarnings() {
	if a.ctx.Context == nil {
		return
	}
	app, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	httpApp, ok := app.(*caddyhttp.App)
	if !ok {
		return
	}
	names := make([]string, 0, len(httpApp.Servers))
	for name := range httpApp.Servers {
		names = append(names, name)
	}
	slices.Sort(names)
	logs, logsKnown := configuredLogs(a.ctx)
	for _, name := range names {
		srv := httpApp.Servers[name]
		a.warnReadTimeouts(name, srv)
		a.warnCredentialLogging(name, srv, logs, logsKnown)
	}
}

// warnReadTimeouts warns about a server with a keygate gateway route and
// neither a read_body timeout nor a minimum read rate: Caddy's defaults
// (read_header and read_body_idle 1m) let a client that sends a byte a
// minute keep a signed upload, and its share of signed_body_buffer, open
// for as long as it keeps sending.
func (a *App) warnReadTimeouts(name string, srv *caddyhttp.Server) {
	if srv.ReadTimeout > 0 || srv.ReadMinRate > 0 || len(keygateSites(srv, isGateway)) == 0 {
		return
	}
	a.logger.Warn("a server with keygate routes has no read_body timeout: a client can trickle a signed upload "+
		"and hold its share of signed_body_buffer for as long as it keeps sending; set "+
		"`servers { timeouts { read_header 10s read_body 1m } }` (see the README, \"Signed uploads\")",
		zap.String("server", name), zap.Strings("listen", srv.Listen))
}

// warnCredentialLogging warns, per site (host) of a server with a keygate
// route, when its access log is written by a log that does not use the
// keygate format: Caddy would write X-Api-Key, ?api_key=, Signature and
// X-Mac-Value in clear. (Caddy's own filter encoder can do the same job;
// this cannot see into it, so the warning says so.) When the logging
// configuration cannot be read (logsKnown false), it warns about every
// site with access logs unless some log uses the keygate format.
func (a *App) warnCredentialLogging(name string, srv *caddyhttp.Server, logs []customLog, logsKnown bool) {
	if srv.Logs == nil {
		return
	}
	warn := func(host, logger string) {
		if host == "" {
			host = "*"
		}
		a.logger.Warn("access logs of a site with keygate routes do not use the keygate format: keygate credentials "+
			"(X-Api-Key, ?api_key=, Signature, X-Mac-Value, …) would be logged in clear; "+
			"use `log { format keygate }` in that site (or filter those fields yourself)",
			zap.String("server", name), zap.Strings("listen", srv.Listen), zap.String("host", host),
			zap.String("logger", logger), zap.Bool("log_credentials", srv.Logs.ShouldLogCredentials))
	}
	warned := map[string]bool{}
	for _, site := range keygateSites(srv, carriesCredentials) {
		hosts := site
		if hosts == nil {
			hosts = []string{""} // any host: the hosts no other logger claims
		}
		for _, host := range hosts {
			for _, logger := range accessLoggers(srv.Logs, host) {
				if warned[host] {
					break
				}
				if !logsKnown {
					if !logEncoderInUse() {
						warned[host] = true
						warn(host, logger)
					}
					continue
				}
				for _, l := range logs {
					if !l.keygate && l.accepts(logger) {
						warned[host] = true
						warn(host, logger)
						break
					}
				}
			}
		}
	}
}

// isGateway reports whether h is a keygate handler that reads signed
// bodies (keygate; keygate_auth gets none).
func isGateway(h caddyhttp.MiddlewareHandler) bool {
	_, ok := h.(*Handler)
	return ok
}

// carriesCredentials reports whether h is a keygate handler whose requests
// carry keygate credentials in headers or the query.
func carriesCredentials(h caddyhttp.MiddlewareHandler) bool {
	switch h.(type) {
	case *Handler, *ForwardAuth:
		return true
	}
	return false
}

// keygateSites returns, for each top-level route of srv that leads to a
// handler want reports (directly or through subroutes), the hosts its
// matchers accept: nil for a route that accepts any host.
func keygateSites(srv *caddyhttp.Server, want func(caddyhttp.MiddlewareHandler) bool) [][]string {
	var sites [][]string
	for _, rt := range srv.Routes {
		if routeLeadsTo(rt, want, 0) {
			sites = append(sites, routeHosts(rt))
		}
	}
	return sites
}

// routeLeadsTo reports whether rt or one of its subroutes has a handler
// want reports.
func routeLeadsTo(rt caddyhttp.Route, want func(caddyhttp.MiddlewareHandler) bool, depth int) bool {
	if depth > 32 {
		return false
	}
	for _, h := range rt.Handlers {
		if want(h) {
			return true
		}
		if sr, ok := h.(*caddyhttp.Subroute); ok {
			for _, sub := range sr.Routes {
				if routeLeadsTo(sub, want, depth+1) {
					return true
				}
			}
		}
	}
	return false
}

// routeHosts returns the hosts of rt's host matchers; nil when a matcher
// set has none (the route matches any host).
func routeHosts(rt caddyhttp.Route) []string {
	if len(rt.MatcherSets) == 0 {
		return nil
	}
	var hosts []string
	for _, set := range rt.MatcherSets {
		found := false
		for _, m := range set {
			if mh, ok := m.(*caddyhttp.MatchHost); ok {
				hosts = append(hosts, *mh...)
				found = true
			}
		}
		if !found {
			return nil
		}
	}
	return hosts
}

// accessLoggers returns the full names of the loggers that write the
// access log of requests to host ("" for a host no logger_names entry
// claims), as Caddy picks them; none when host is not logged.
func accessLoggers(slc *caddyhttp.ServerLogConfig, host string) []string {
	host = strings.ToLower(host)
	names, mapped := []string(nil), false
	if host != "" {
		if ns, ok := slc.LoggerNames[host]; ok {
			names, mapped = ns, true
		} else {
			for pattern, ns := range slc.LoggerNames {
				if matchWildcard(host, pattern) {
					names, mapped = ns, true
					break
				}
			}
		}
		if !mapped {
			for _, skip := range slc.SkipHosts {
				if matchWildcard(host, skip) {
					return nil
				}
			}
		}
	}
	if !mapped {
		if slc.SkipUnmappedHosts {
			return nil
		}
		names = []string{slc.DefaultLoggerName}
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		full := "http.log.access"
		if n != "" {
			full += "." + n
		}
		out = append(out, full)
	}
	return out
}

// matchWildcard reports whether host matches pattern, in which a "*"
// label stands for any one label (as Caddy matches logger_names and
// skip_hosts).
func matchWildcard(host, pattern string) bool {
	if host == pattern {
		return true
	}
	hl, pl := strings.Split(host, "."), strings.Split(pattern, ".")
	if len(hl) != len(pl) {
		return false
	}
	for i := range hl {
		if pl[i] != "*" && pl[i] != hl[i] {
			return false
		}
	}
	return true
}

// customLog is what the warnings need of one of Caddy's configured logs.
type customLog struct {
	include, exclude []string
	keygate          bool // written with the keygate format
}

// accepts reports whether the log writes entries of the logger name, by
// Caddy's include/exclude rules: the longest matching namespace wins.
func (l customLog) accepts(name string) bool {
	if len(l.include) == 0 && len(l.exclude) == 0 {
		return true
	}
	n := name + "."
	accept, reject := 0, 0
	for _, ns := range l.include {
		if strings.HasPrefix(n, ns+".") && len(ns) > accept {
			accept = len(ns)
		}
	}
	if len(l.include) > 0 && accept == 0 {
		return false
	}
	for _, ns := range l.exclude {
		if ns == "*" {
			return false
		}
		if strings.HasPrefix(n, ns+".") && len(ns) > reject {
			reject = len(ns)
		}
	}
	return accept > reject || (len(l.include) == 0 && reject == 0)
}

// logEncoderType is the dynamic type of a keygate log encoder.
var logEncoderType = reflect.TypeFor[*LogEncoder]()

// configuredLogs reads the logs of the running configuration: which
// loggers each writes and whether it uses the keygate format. Caddy does
// not expose its logging configuration to modules, so this reads it with
// reflection (read only); ok is false when that fails (a Caddy whose
// internals differ), and the caller falls back to a coarser check.
// TestAccessLogsEverySpelling keeps it working with the Caddy keygate is
// built with (its per-site warning needs it).
func configuredLogs(ctx caddy.Context) (logs []customLog, ok bool) {
	defer func() {
		if recover() != nil {
			logs, ok = nil, false
		}
	}()
	cfg := reflect.ValueOf(&ctx).Elem().FieldByName("cfg")
	if !cfg.IsValid() || cfg.Kind() != reflect.Pointer || cfg.IsNil() {
		return nil, false
	}
	lg := cfg.Elem().FieldByName("Logging")
	if !lg.IsValid() || lg.Kind() != reflect.Pointer || lg.IsNil() {
		return nil, false
	}
	m := lg.Elem().FieldByName("Logs")
	if !m.IsValid() || m.Kind() != reflect.Map {
		return nil, false
	}
	strs := func(v reflect.Value) []string {
		out := make([]string, v.Len())
		for i := range out {
			out[i] = v.Index(i).String()
		}
		return out
	}
	it := m.MapRange()
	for it.Next() {
		cl := it.Value()
		if cl.Kind() != reflect.Pointer || cl.IsNil() {
			return nil, false
		}
		cl = cl.Elem()
		inc, exc, enc := cl.FieldByName("Include"), cl.FieldByName("Exclude"), cl.FieldByName("encoder")
		if !inc.IsValid() || !exc.IsValid() || !enc.IsValid() || enc.Kind() != reflect.Interface {
			return nil, false
		}
		l := customLog{include: strs(inc), exclude: strs(exc)}
		l.keygate = !enc.IsNil() && enc.Elem().Type() == logEncoderType
		logs = append(logs, l)
	}
	return logs, len(logs) > 0
}
