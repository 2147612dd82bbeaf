// Package caddyfile adapts keygate's Caddyfile syntax: the `keygate` global
// option and the `keygate`, `keygate_admin`, `keygate_token` and
// `keygate_jwks` directives. It builds
// module/ types from tokens; module/ never imports it.
package caddyfile

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/module"
	"github.com/keygate/keygate/ratelimit"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("keygate", parseGlobal)
	httpcaddyfile.RegisterHandlerDirective("keygate", parseKeygate)
	httpcaddyfile.RegisterDirectiveOrder("keygate", httpcaddyfile.After, "basic_auth")
	httpcaddyfile.RegisterHandlerDirective("keygate_auth", parseForwardAuth)
	httpcaddyfile.RegisterDirectiveOrder("keygate_auth", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("keygate_admin", parseAdmin)
	httpcaddyfile.RegisterDirectiveOrder("keygate_admin", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("keygate_token", parseToken)
	httpcaddyfile.RegisterDirectiveOrder("keygate_token", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("keygate_jwks", parseJWKS)
	httpcaddyfile.RegisterDirectiveOrder("keygate_jwks", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("keygate_leaks", parseLeaks)
	httpcaddyfile.RegisterDirectiveOrder("keygate_leaks", httpcaddyfile.Before, "respond")
}

// parseGlobal sets up the keygate app from the global option. Syntax:
//
//	keygate {
//		store file [<path>] [{
//			replay_cache <entries>
//		}]
//		store redis {
//			address <host:port>...
//			master_name <name>
//			username <user>
//			password <password>
//			db <n>
//			tls
//			tls_ca <pem file>
//			tls_cert <pem file>
//			tls_key <pem file>
//			tls_server_name <name>
//			prefix <string>
//			timeout <duration>
//			lease <slots>
//		}
//		master_key <base64 of 32 bytes>
//		pepper <secret>
//		legacy_hashes all|strong|none
//		purge_interval <duration>
//		signed_body_buffer <size>
//		signed_body_per_client <size>
//		auth_failures <rate> <burst> | off {
//			size <n>
//		}
//		cache {
//			ttl <duration>
//			negative_ttl <duration>
//			size <n>
//		}
//		token {
//			throttle <rate> <burst> | off
//			issuer <string>
//			audience <string>
//			lifetime <duration>
//			algorithm RS256|EdDSA
//			rotate <duration>
//		}
//		credentials {
//			TECHNICAL|SERVICE|APPLICATION access_key|token|signature...|none
//		}
//		retention {
//			history <duration>|forever
//			activity <duration>|forever
//		}
//		events {
//			off
//			source <uri-reference>
//			expiry_reminders <duration>...
//			scan_interval <duration>
//			ratelimit_thresholds <percent>...
//			auth_failures <count> <window>
//			retry <initial> <max> <give_up>
//			timeout <duration>
//			lease <duration>
//			poll <duration>
//			retention <duration>
//			allow_private_addresses
//			allow_loopback
//			smtp {
//				address <host:port>
//				username <user>
//				password <password>
//				from <address>
//				security starttls|tls|none
//				ca <pem file>
//			}
//			leak_report_key <key identifier> <pem file>
//		}
//	}
func parseGlobal(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(module.App)
	if existing != nil {
		return nil, d.Err("the keygate global option may appear only once")
	}
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "store":
			if app.Store != nil {
				return nil, d.Err("store already specified")
			}
			sc, err := parseStore(d)
			if err != nil {
				return nil, err
			}
			app.Store = sc
		case "master_key":
			if err := oneArg(d, &app.MasterKey); err != nil {
				return nil, err
			}
		case "pepper":
			if err := oneArg(d, &app.Pepper); err != nil {
				return nil, err
			}
		case "legacy_hashes":
			if err := oneArg(d, &app.LegacyHashes); err != nil {
				return nil, err
			}
			if !slices.Contains([]string{"all", "strong", "none"}, app.LegacyHashes) {
				return nil, d.Errf("legacy_hashes: '%s' must be all, strong or none", app.LegacyHashes)
			}
		case "purge_interval":
			if err := durationArg(d, &app.PurgeInterval); err != nil {
				return nil, err
			}
		case "cache":
			if app.Cache != nil {
				return nil, d.Err("cache already specified")
			}
			app.Cache = new(module.CacheConfig)
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "ttl":
					if err := durationArg(d, &app.Cache.TTL); err != nil {
						return nil, err
					}
				case "negative_ttl":
					if err := durationArg(d, &app.Cache.NegativeTTL); err != nil {
						return nil, err
					}
				case "size":
					if err := intArg(d, &app.Cache.Size); err != nil {
						return nil, err
					}
				default:
					return nil, d.Errf("unrecognized cache option '%s'", d.Val())
				}
			}
		case "signed_body_buffer":
			n, err := sizeArg(d)
			if err != nil {
				return nil, err
			}
			app.SignedBodyBuffer = n
		case "signed_body_per_client":
			n, err := sizeArg(d)
			if err != nil {
				return nil, err
			}
			app.SignedBodyPerClient = n
		case "auth_failures":
			if app.AuthFailures != nil {
				return nil, d.Err("auth_failures already specified")
			}
			tc, err := parseThrottle(d, "auth_failures")
			if err != nil {
				return nil, err
			}
			app.AuthFailures = tc
		case "token":
			if app.Token != nil {
				return nil, d.Err("token already specified")
			}
			tc, err := parseTokenOptions(d)
			if err != nil {
				return nil, err
			}
			app.Token = tc
		case "credentials":
			if app.Credentials != nil {
				return nil, d.Err("credentials already specified")
			}
			creds, err := parseCredentials(d)
			if err != nil {
				return nil, err
			}
			app.Credentials = creds
		case "retention":
			if app.Retention != nil {
				return nil, d.Err("retention already specified")
			}
			app.Retention = new(module.RetentionConfig)
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			err := eachOption(d, "retention: ", func(opt string) error {
				switch opt {
				case "history":
					return retentionArg(d, &app.Retention.History)
				case "activity":
					return retentionArg(d, &app.Retention.Activity)
				}
				return d.Errf("unrecognized retention option '%s'", opt)
			})
			if err != nil {
				return nil, err
			}
		case "events":
			if app.Events != nil {
				return nil, d.Err("events already specified")
			}
			ec, err := parseEvents(d)
			if err != nil {
				return nil, err
			}
			app.Events = ec
		default:
			return nil, d.Errf("unrecognized keygate option '%s'", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "keygate", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseEvents reads the events block of the global option.
func parseEvents(d *caddyfile.Dispenser) (*module.EventsConfig, error) {
	ec := new(module.EventsConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] && opt != "leak_report_key" {
			return nil, d.Errf("events: %s already specified", opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "off", "allow_private_addresses", "allow_loopback":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			switch opt {
			case "off":
				ec.Off = true
			case "allow_private_addresses":
				ec.AllowPrivateAddresses = true
			default:
				ec.AllowLoopback = true
			}
		case "source":
			err = oneArg(d, &ec.Source)
		case "expiry_reminders":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			for _, a := range args {
				v, perr := caddy.ParseDuration(a)
				if perr != nil || v <= 0 {
					return nil, d.Errf("events expiry_reminders: '%s' is not a positive duration (e.g. 14d)", a)
				}
				ec.ExpiryReminders = append(ec.ExpiryReminders, caddy.Duration(v))
			}
		case "ratelimit_thresholds":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			for _, a := range args {
				n, perr := strconv.Atoi(strings.TrimSuffix(a, "%"))
				if perr != nil || n < 1 || n > 100 {
					return nil, d.Errf("events ratelimit_thresholds: '%s' is not a percentage between 1 and 100", a)
				}
				ec.RateLimitThresholds = append(ec.RateLimitThresholds, n)
			}
			if !slices.IsSorted(ec.RateLimitThresholds) {
				return nil, d.Err("events ratelimit_thresholds: list them in ascending order")
			}
		case "auth_failures":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("events auth_failures: want <count> <window>, such as 20 1m")
			}
			n, perr := strconv.Atoi(args[0])
			w, werr := caddy.ParseDuration(args[1])
			if perr != nil || n < 1 || werr != nil || w <= 0 {
				return nil, d.Errf("events auth_failures: '%s %s' is not a positive count and duration", args[0], args[1])
			}
			ec.AuthFailures = &module.FailureBurstConfig{Threshold: n, Window: caddy.Duration(w)}
		case "retry":
			args := d.RemainingArgs()
			if len(args) != 3 {
				return nil, d.Err("events retry: want <initial> <max> <give_up>, such as 5s 1h 24h")
			}
			var ds [3]caddy.Duration
			for i, a := range args {
				v, perr := caddy.ParseDuration(a)
				if perr != nil || v <= 0 {
					return nil, d.Errf("events retry: '%s' is not a positive duration", a)
				}
				ds[i] = caddy.Duration(v)
			}
			if ds[0] > ds[1] {
				return nil, d.Err("events retry: the initial delay exceeds the maximum")
			}
			ec.RetryInitial, ec.RetryMax, ec.GiveUp = ds[0], ds[1], ds[2]
		case "scan_interval":
			err = durationArg(d, &ec.ScanInterval)
		case "timeout":
			err = durationArg(d, &ec.Timeout)
		case "lease":
			err = durationArg(d, &ec.Lease)
		case "poll":
			err = durationArg(d, &ec.Poll)
		case "retention":
			err = durationArg(d, &ec.Retention)
		case "smtp":
			ec.SMTP, err = parseSMTP(d)
		case "leak_report_key":
			var k module.LeakReportKey
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Err("events leak_report_key: want <key identifier> <pem file>")
			}
			k.ID, k.File = args[0], args[1]
			ec.LeakReportKeys = append(ec.LeakReportKeys, k)
		default:
			return nil, d.Errf("unrecognized events option '%s'", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	return ec, nil
}

// parseSMTP reads the smtp block of the events option.
func parseSMTP(d *caddyfile.Dispenser) (*module.SMTPConfig, error) {
	sc := new(module.SMTPConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	err := eachOption(d, "smtp ", func(opt string) error {
		switch opt {
		case "address":
			return oneArg(d, &sc.Address)
		case "username":
			return oneArg(d, &sc.Username)
		case "password":
			return oneArg(d, &sc.Password)
		case "from":
			return oneArg(d, &sc.From)
		case "ca":
			return oneArg(d, &sc.CA)
		case "security":
			if err := oneArg(d, &sc.Security); err != nil {
				return err
			}
			if !slices.Contains([]string{"starttls", "tls", "none"}, sc.Security) {
				return d.Errf("smtp security: '%s' must be starttls, tls or none", sc.Security)
			}
			return nil
		}
		return d.Errf("unrecognized smtp option '%s'", opt)
	})
	if err != nil {
		return nil, err
	}
	if sc.Address == "" || sc.From == "" {
		return nil, d.Err("events smtp: address and from are required")
	}
	return sc, nil
}

// parseLeaks sets up the leak report endpoint (GitHub secret scanning).
// Syntax:
//
//	keygate_leaks [<matcher>]
func parseLeaks(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	if err := noOptions(h.Dispenser, "keygate_leaks takes no options (see the keygate global option's events block)"); err != nil {
		return nil, err
	}
	return new(module.LeakHandler), nil
}

func parseStore(d *caddyfile.Dispenser) (*module.StoreConfig, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	sc := &module.StoreConfig{Backend: d.Val()}
	switch sc.Backend {
	case "file":
		if d.NextArg() {
			sc.Path = d.Val()
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "replay_cache":
				if err := intArg(d, &sc.ReplayCache); err != nil {
					return nil, err
				}
				if sc.ReplayCache <= 0 {
					return nil, d.Errf("replay_cache: must be a positive number of entries")
				}
			default:
				return nil, d.Errf("unrecognized store file option '%s'", d.Val())
			}
		}
	case "redis":
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "address":
				args := d.RemainingArgs()
				if len(args) == 0 {
					return nil, d.ArgErr()
				}
				sc.Addresses = append(sc.Addresses, args...)
			case "master_name":
				if err := oneArg(d, &sc.MasterName); err != nil {
					return nil, err
				}
			case "username":
				if err := oneArg(d, &sc.Username); err != nil {
					return nil, err
				}
			case "password":
				if err := oneArg(d, &sc.Password); err != nil {
					return nil, err
				}
			case "db":
				if err := intArg(d, &sc.DB); err != nil {
					return nil, err
				}
			case "tls":
				if d.NextArg() {
					return nil, d.ArgErr()
				}
				sc.TLS = true
			case "tls_ca":
				if err := oneArg(d, &sc.TLSCA); err != nil {
					return nil, err
				}
			case "tls_cert":
				if err := oneArg(d, &sc.TLSCert); err != nil {
					return nil, err
				}
			case "tls_key":
				if err := oneArg(d, &sc.TLSKey); err != nil {
					return nil, err
				}
			case "tls_server_name":
				if err := oneArg(d, &sc.TLSServerName); err != nil {
					return nil, err
				}
			case "prefix":
				if err := oneArg(d, &sc.Prefix); err != nil {
					return nil, err
				}
			case "timeout":
				if err := durationArg(d, &sc.Timeout); err != nil {
					return nil, err
				}
			case "lease":
				var n int
				if err := intArg(d, &n); err != nil {
					return nil, err
				}
				sc.Lease = &n
			default:
				return nil, d.Errf("unrecognized redis store option '%s'", d.Val())
			}
		}
		if len(sc.Addresses) == 0 {
			return nil, d.Err("store redis needs at least one address")
		}
		if (sc.TLSCert == "") != (sc.TLSKey == "") {
			return nil, d.Err("store redis: tls_cert and tls_key go together")
		}
	default:
		return nil, d.Errf("unknown store '%s': use file or redis", sc.Backend)
	}
	return sc, nil
}

// sizeArg reads one positive size: bytes, or a unit such as 10MiB or 1MB.
func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	var v string
	if err := oneArg(d, &v); err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<40 {
		return 0, d.Errf("%s: '%s' is not a positive size (bytes, or e.g. 10MiB)", d.Val(), v)
	}
	return int64(n), nil
}

// identityHeaderNames are the names identity_headers accepts.
var identityHeaderNames = []string{"user_id", "user_name", "user_type", "tenant", "role", "customer_roles", "key_id", "scheme", "access_control_entities", "scope", "all", "none"}

// parseKeygate sets up the gateway handler. Syntax:
//
//	keygate [<matcher>] {
//		tenant <id|placeholder>
//		schemes <scheme>...
//		key_header <name>
//		key_query <name>
//		foreign_keys
//		require_role <role>...
//		require_ace <entity>...
//		limit <n> [<window>]
//		max_limit <n>
//		on_store_error fail_closed|fail_open
//		max_skew <duration>
//		replay_protection on|all|off
//		sigv4_region <region>
//		sigv4_service <service>
//		sigv4_max_expires <duration>
//		sigv4_undeclared_payload refuse|read
//		require_covered <header|host>...
//		max_signed_body <size>
//		header_prefix <prefix>
//		identity_headers <user_id|user_name|user_type|tenant|role|customer_roles|key_id|scheme|access_control_entities|scope|all|none>...
//		rate_limit_headers ietf|legacy|both|none
//		keep_credentials
//		keep_method_override
//	}
func parseKeygate(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := h.Dispenser
	hd := new(module.Handler)
	d.Next() // directive name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	err := eachOption(d, "", func(opt string) error {
		var err error
		switch opt {
		case "tenant":
			err = oneArg(d, &hd.Tenant)
		case "schemes":
			hd.Schemes = d.RemainingArgs()
			if len(hd.Schemes) == 0 {
				return d.ArgErr()
			}
			for _, name := range hd.Schemes {
				if _, err := auth.ParseScheme(name); err != nil {
					return d.Errf("schemes: '%s' is not a scheme: use %s", name, schemeList())
				}
			}
		case "key_header":
			err = oneArg(d, &hd.KeyHeader)
		case "key_query":
			err = oneArg(d, &hd.KeyQuery)
		case "foreign_keys":
			if d.NextArg() {
				return d.ArgErr()
			}
			hd.ForeignKeys = true
		case "require_role":
			hd.RequireRoles = d.RemainingArgs()
			if len(hd.RequireRoles) == 0 {
				return d.ArgErr()
			}
		case "require_ace":
			hd.RequireACEs = d.RemainingArgs()
			if len(hd.RequireACEs) == 0 {
				return d.ArgErr()
			}
		case "limit":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			n, perr := strconv.ParseInt(args[0], 10, 64)
			if perr != nil || n < 0 {
				return d.Errf("limit: '%s' is not a non-negative integer", args[0])
			}
			hd.Limit = n
			if len(args) == 2 {
				w, perr := caddy.ParseDuration(args[1])
				if perr != nil || w <= 0 {
					return d.Errf("limit window: '%s' is not a positive duration", args[1])
				}
				hd.Window = caddy.Duration(w)
			}
		case "max_limit":
			var n int
			err = intArg(d, &n)
			hd.MaxLimit = int64(n)
		case "on_store_error":
			err = oneArg(d, &hd.OnStoreError)
			if err == nil && hd.OnStoreError != "fail_closed" && hd.OnStoreError != "fail_open" {
				return d.Errf("on_store_error: '%s' must be fail_closed or fail_open", hd.OnStoreError)
			}
		case "max_skew":
			err = durationArg(d, &hd.MaxSkew)
		case "replay_protection":
			err = oneArg(d, &hd.ReplayProtection)
			if err == nil && hd.ReplayProtection != "on" && hd.ReplayProtection != "all" && hd.ReplayProtection != "off" {
				return d.Errf("replay_protection: '%s' must be on, all or off", hd.ReplayProtection)
			}
		case "sigv4_region":
			err = oneArg(d, &hd.SigV4Region)
		case "sigv4_service":
			err = oneArg(d, &hd.SigV4Service)
		case "sigv4_max_expires":
			err = durationArg(d, &hd.SigV4MaxExpires)
		case "sigv4_undeclared_payload":
			err = oneArg(d, &hd.SigV4UndeclaredPayload)
			if err == nil && hd.SigV4UndeclaredPayload != "refuse" && hd.SigV4UndeclaredPayload != "read" {
				return d.Errf("sigv4_undeclared_payload: '%s' must be refuse or read", hd.SigV4UndeclaredPayload)
			}
		case "require_covered":
			hd.RequireCovered = d.RemainingArgs()
			if len(hd.RequireCovered) == 0 {
				return d.ArgErr()
			}
			for _, name := range hd.RequireCovered {
				n := strings.ToLower(name)
				if n != "host" && n != "@authority" && (strings.HasPrefix(n, "@") || strings.ContainsAny(n, "()\"")) {
					return d.Errf("require_covered: '%s' must be a header name, host or @authority", name)
				}
			}
		case "max_signed_body":
			hd.MaxSignedBody, err = sizeArg(d)
		case "header_prefix":
			err = oneArg(d, &hd.HeaderPrefix)
		case "identity_headers":
			hd.IdentityHeaders = d.RemainingArgs()
			if len(hd.IdentityHeaders) == 0 {
				return d.ArgErr()
			}
			for _, name := range hd.IdentityHeaders {
				if !slices.Contains(identityHeaderNames, name) {
					return d.Errf("identity_headers: '%s' must be one of %s", name, strings.Join(identityHeaderNames, ", "))
				}
			}
		case "rate_limit_headers":
			err = oneArg(d, &hd.RateLimitHeaders)
			if err == nil && !slices.Contains([]string{"ietf", "legacy", "both", "none"}, hd.RateLimitHeaders) {
				return d.Errf("rate_limit_headers: '%s' must be ietf, legacy, both or none", hd.RateLimitHeaders)
			}
		case "keep_credentials":
			if d.NextArg() {
				return d.ArgErr()
			}
			hd.KeepCredentials = true
		case "keep_method_override":
			if d.NextArg() {
				return d.ArgErr()
			}
			hd.KeepMethodOverride = true
		default:
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if hd.Tenant == "" {
		return nil, d.Err("keygate: tenant is required")
	}
	return hd, nil
}

// parseForwardAuth sets up the forward-auth handler; it takes the options
// of the keygate directive:
//
//	keygate_auth [<matcher>] {
//		tenant <id|placeholder>
//		…
//	}
func parseForwardAuth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hd, err := parseKeygate(h)
	if err != nil {
		return nil, err
	}
	return &module.ForwardAuth{Handler: *hd.(*module.Handler)}, nil
}

// parseAdmin sets up the admin API handler. Syntax:
//
//	keygate_admin [<matcher>]
func parseAdmin(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	if err := noOptions(h.Dispenser, "keygate_admin takes no options"); err != nil {
		return nil, err
	}
	return new(module.AdminHandler), nil
}

// noOptions consumes a directive that takes neither arguments (besides its
// matcher, already consumed by Caddy) nor a block.
func noOptions(d *caddyfile.Dispenser, blockErr string) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err(blockErr)
	}
	return nil
}

// parseTokenOptions reads the token block of the global option.
func parseTokenOptions(d *caddyfile.Dispenser) (*module.TokenConfig, error) {
	tc := new(module.TokenConfig)
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	err := eachOption(d, "token ", func(opt string) error {
		var err error
		switch opt {
		case "issuer":
			err = oneArg(d, &tc.Issuer)
		case "audience":
			err = oneArg(d, &tc.Audience)
		case "lifetime":
			err = durationArg(d, &tc.Lifetime)
		case "rotate":
			err = durationArg(d, &tc.Rotate)
		case "throttle":
			tc.Throttle, err = parseThrottle(d, "token throttle")
		case "algorithm":
			err = oneArg(d, &tc.Algorithm)
			if err == nil && tc.Algorithm != "RS256" && tc.Algorithm != "EdDSA" {
				return d.Errf("token algorithm: '%s' must be RS256 or EdDSA", tc.Algorithm)
			}
		default:
			return d.Errf("unrecognized token option '%s'", opt)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// parseToken sets up the token endpoint (OAuth2 client credentials).
// Syntax:
//
//	keygate_token [<matcher>]
func parseToken(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	if err := noOptions(h.Dispenser, "keygate_token takes no options (see the keygate global option's token block)"); err != nil {
		return nil, err
	}
	return new(module.TokenHandler), nil
}

// parseJWKS sets up the JWKS endpoint. Syntax:
//
//	keygate_jwks [<matcher>] {
//		max_age <duration>
//	}
func parseJWKS(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	d := h.Dispenser
	d.Next()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	jh := new(module.JWKSHandler)
	err := eachOption(d, "", func(opt string) error {
		if opt != "max_age" {
			return d.Errf("unrecognized subdirective '%s'", opt)
		}
		return durationArg(d, &jh.MaxAge)
	})
	if err != nil {
		return nil, err
	}
	return jh, nil
}

// retentionArg reads a retention: a positive duration (days as e.g.
// 2160h), or forever.
func retentionArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	if s == "forever" {
		*dst = -1
		return nil
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return d.Errf("retention: '%s' is not a positive duration or forever", s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// parseCredentials reads the credentials block: one line per user type
// with the credential kinds it may use ("none" for none). Values are
// checked when the app is provisioned.
func parseCredentials(d *caddyfile.Dispenser) (map[string][]string, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	out := map[string][]string{}
	err := eachOption(d, "credentials: ", func(typ string) error {
		kinds := []string{}
		for d.NextArg() {
			if v := d.Val(); v != "none" {
				kinds = append(kinds, v)
			}
		}
		if len(kinds) == 0 && d.Val() != "none" {
			return d.Errf("credentials: %s needs access_key, token, signature or none", typ)
		}
		// The same check as at provision, here with the line number.
		policy := keys.CredentialPolicy{keys.UserType(typ): make([]keys.CredentialKind, len(kinds))}
		for i, k := range kinds {
			policy[keys.UserType(typ)][i] = keys.CredentialKind(k)
		}
		if err := policy.Validate(); err != nil {
			return d.Err(err.Error())
		}
		out[typ] = kinds
		return nil
	})
	return out, err
}

// schemeList names every scheme the schemes option takes.
func schemeList() string {
	var names []string
	for s := auth.AccessKey; ; s++ {
		if _, err := auth.ParseScheme(s.String()); err != nil || s.String() == "" {
			break
		}
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}

// eachOption calls fn for every option of the block at d, refusing an
// option given twice (what prefixes the option's name in that error).
func eachOption(d *caddyfile.Dispenser, what string, fn func(opt string) error) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return d.Errf("%s%s already specified", what, opt)
		}
		seen[opt] = true
		if err := fn(opt); err != nil {
			return err
		}
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func intArg(d *caddyfile.Dispenser, dst *int) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return d.Errf("%s: '%s' is not a non-negative integer", d.Val(), s)
	}
	*dst = n
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return d.Errf("'%s' is not a positive duration", s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// parseThrottle reads a per-client-IP throttle: `<rate> <burst>`, with an
// optional block (`size <n>`), or `off`. The rate is checked here so that
// a typo is reported with its line.
func parseThrottle(d *caddyfile.Dispenser, what string) (*module.ThrottleConfig, error) {
	args := d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		if d.NextBlock(d.Nesting()) {
			return nil, d.Errf("%s off takes no block", what)
		}
		return &module.ThrottleConfig{Off: true}, nil
	}
	if len(args) != 2 {
		return nil, d.Errf("%s: want <rate> <burst> or off, such as %s 60/1m 100", what, what)
	}
	if _, err := ratelimit.ParseRate(args[0]); err != nil {
		return nil, d.Errf("%s: %v", what, err)
	}
	burst, err := strconv.Atoi(args[1])
	if err != nil || burst < 1 {
		return nil, d.Errf("%s burst: '%s' is not a positive integer", what, args[1])
	}
	tc := &module.ThrottleConfig{Rate: args[0], Burst: burst}
	err = eachOption(d, what+" ", func(opt string) error {
		if opt != "size" {
			return d.Errf("unrecognized %s option '%s'", what, opt)
		}
		if err := intArg(d, &tc.Size); err != nil {
			return err
		}
		if tc.Size == 0 {
			return d.Errf("%s size: must be positive", what)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return tc, nil
}
